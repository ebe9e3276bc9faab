//! The demo app of docs/ARCHITECTURE.md ("The demo contract") written with
//! tower-sessions' own API, on a sessionmesh store: the one-line switch from
//! `MemoryStore`.
//!
//! Run with:
//!
//! ```text
//! cargo run --release --features tower-sessions --example tower_sessions_peer -- \
//!     --http 127.0.0.1:8081 --data ./data/ts-a
//! ```
//!
//! `POST /session/{key}/incr` is a read-modify-write here (tower-sessions has
//! no counters). The store declares the key `n` a counter
//! (`MeshStore::with_counters`), so concurrent increments of `n` add up on
//! any nodes; those of other keys do not.

#[allow(dead_code)]
mod demo;
mod support;

use std::process::ExitCode;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use sessionmesh::adapters::tower_sessions::{self as mesh, MeshStore, TokenLayer};
use sessionmesh::Node;
use support::Args;
use tower_sessions::{Session, SessionManagerLayer};

struct Failure(StatusCode, String);

impl From<tower_sessions::session::Error> for Failure {
    fn from(e: tower_sessions::session::Error) -> Self {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn app(node: Node) -> Router {
    // The one line: `SessionManagerLayer::new(MemoryStore::default())` before.
    let layer = SessionManagerLayer::new(MeshStore::new(node.clone()).with_counters(["n"]))
        .with_secure(false);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/session", get(read_all))
        .route("/session/cycle", post(cycle))
        .route("/session/invalidate", post(invalidate))
        .route("/session/{key}", put(insert).delete(remove))
        .route("/session/{key}/incr", post(incr))
        .layer(layer)
        // The session token beside tower-sessions' cookie: a user sees their
        // own writes on every node.
        .layer(TokenLayer::new().with_secure(false))
        .route(
            "/cluster",
            get(|State(node): State<Node>| async move { Json(demo::cluster_json(&node).await) }),
        )
        .with_state(node)
}

async fn read_all(session: Session) -> Result<Json<Value>, Failure> {
    let entries = mesh::entries(&session).await?;
    Ok(Json(Value::Object(entries.into_iter().collect())))
}

async fn insert(
    State(node): State<Node>,
    session: Session,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<StatusCode, Failure> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    if mesh::would_exceed(&node, &session, &key, &value).await? {
        return Err(Failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "session over its size limit".into(),
        ));
    }
    session.insert(&key, value).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(session: Session, Path(key): Path<String>) -> Result<StatusCode, Failure> {
    session.remove_value(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn incr(
    session: Session,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Failure> {
    let by = demo::parse_by(&body).map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    let current = match session.get_value(&key).await? {
        None => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| Failure(StatusCode::BAD_REQUEST, format!("{key} is not an integer")))?,
    };
    let total = current + by;
    session.insert(&key, total).await?;
    Ok(Json(json!(total)))
}

async fn cycle(session: Session) -> Result<StatusCode, Failure> {
    session.cycle_id().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invalidate(session: Session) -> Result<StatusCode, Failure> {
    session.flush().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tokio::main]
async fn main() -> ExitCode {
    support::init_tracing();
    match support::args() {
        Ok(args) => support::exit("tower_sessions_peer", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::open(args.config()).await?;
    support::log_events(&node);
    let listener = tokio::net::TcpListener::bind(args.http).await?;
    support::announce(&node, listener.local_addr()?).await;
    axum::serve(listener, app(node.clone()))
        .with_graceful_shutdown(support::stop_signal())
        .await?;
    node.shutdown().await?;
    Ok(())
}
