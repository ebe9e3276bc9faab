//! The demo app of docs/ARCHITECTURE.md ("The demo contract"), shared by
//! `examples/peer.rs` and the integration tests (which include this file with
//! `#[path]`).

use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use sessionmesh::http::{Session, SessionLayer};
use sessionmesh::{Error, Node};

/// The demo's routes over `node`. The cookie is not `Secure`, because the
/// demo serves plain HTTP on loopback.
pub(crate) fn app(node: Node) -> Router {
    STARTED.get_or_init(Instant::now);
    let layer = SessionLayer::new(node.clone()).with_secure(false);
    Router::new()
        .route("/", get(|| async { Html(STATUS_PAGE) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/session", get(read_all))
        .route("/session/cycle", post(cycle))
        .route("/session/invalidate", post(invalidate))
        .route("/session/{key}", put(insert).delete(remove))
        .route("/session/{key}/incr", post(incr))
        .layer(layer)
        .route("/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// The status page: this node, its peers, and the visitor's session with
/// buttons to write it (its script reads `/cluster` and `/session`).
const STATUS_PAGE: &str = include_str!("status.html");

/// When the demo app was first built in this process (its uptime).
static STARTED: OnceLock<Instant> = OnceLock::new();

/// An error as the demo answers it.
struct Failure(StatusCode, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Doc(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(code, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

async fn read_all(session: Session) -> Result<Json<Value>, Failure> {
    let entries = session.entries().await?;
    Ok(Json(Value::Object(entries.into_iter().collect())))
}

async fn insert(
    session: Session,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<StatusCode, Failure> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    session.insert(&key, value).await?;
    session.save().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(session: Session, Path(key): Path<String>) -> Result<StatusCode, Failure> {
    session.remove_value(&key).await?;
    session.save().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn incr(
    session: Session,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Failure> {
    let by = parse_by(&body).map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    session.increment(&key, by).await?;
    // Commit now so the answer is the merged total across concurrent requests.
    session.save().await?;
    let total = session.get::<i64>(&key).await?.unwrap_or(0);
    Ok(Json(json!(total)))
}

async fn cycle(session: Session) -> Result<StatusCode, Failure> {
    session.cycle_id().await?;
    session.save().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invalidate(session: Session) -> Result<StatusCode, Failure> {
    session.invalidate().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, sessionmesh::metrics::CONTENT_TYPE)],
        node.metrics().await,
    )
}

async fn cluster(State(node): State<Node>) -> Json<Value> {
    Json(cluster_json(&node).await)
}

/// The amount of `POST /session/{key}/incr`: 1 for an empty body, else the
/// `by` of `{"by": n}`.
pub(crate) fn parse_by(body: &[u8]) -> Result<i64, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(1);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    v.get("by")
        .and_then(Value::as_i64)
        .ok_or_else(|| "expected {\"by\": <integer>}".to_owned())
}

/// `GET /cluster`'s body: this node's peer id, its connected peers, and the
/// sessions it stores; its listen addresses, uptime, each peer's last
/// push lag, and the fingerprint of its live sessions (equal on nodes that
/// have converged).
pub(crate) async fn cluster_json(node: &Node) -> Value {
    let peer_id = node
        .peer_id()
        .map_or_else(|| node.node_id().to_string(), |p| p.to_string());
    let lags = node.peer_lags().await;
    let peers: Vec<String> = lags.iter().map(|(p, _)| p.to_string()).collect();
    let peer_lags_ms: serde_json::Map<String, Value> = lags
        .iter()
        .map(|(p, lag)| (p.to_string(), json!(lag.map(|l| l.as_secs_f64() * 1e3))))
        .collect();
    let addresses: Vec<String> = node
        .listen_addrs()
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    let uptime_s = STARTED.get().map_or(0, |t| t.elapsed().as_secs());
    let fingerprint = node
        .fingerprint()
        .await
        .ok()
        .map(|f| json!({"sessions": f.sessions, "hash": format!("{:016x}", f.hash)}));
    json!({
        "peer_id": peer_id,
        "peers": peers,
        "sessions": node.session_count(),
        "addresses": addresses,
        "uptime_s": uptime_s,
        "peer_lags_ms": peer_lags_ms,
        "fingerprint": fingerprint,
    })
}
