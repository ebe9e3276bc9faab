//! The demo app of docs/ARCHITECTURE.md ("The demo contract") written with
//! actix-web and actix-session's own API, on a sessionmesh store: the
//! one-line switch from another store.
//!
//! Run with:
//!
//! ```text
//! cargo run --release --features actix --example actix_peer -- \
//!     --http 127.0.0.1:8081 --data ./data/actix-a
//! ```
//!
//! The cookie is encrypted by actix-session with a key derived from the
//! cluster key, so every node of a cluster reads every node's cookies.
//! `POST /session/{key}/incr` is a read-modify-write here (actix-session has
//! no counters). The store declares the key `n` a counter
//! (`MeshStore::with_counters`), so concurrent increments of `n` add up on
//! any nodes; those of other keys do not.

#[allow(dead_code)]
mod demo;
mod support;

use std::process::ExitCode;

use actix_session::{Session, SessionMiddleware};
use actix_web::web::{self, Bytes, Data, Path};
use actix_web::{App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use sessionmesh::adapters::actix::{self as mesh, MeshStore, TokenMiddleware};
use sessionmesh::Node;
use support::Args;

fn bad_request(msg: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": msg }))
}

fn failed(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::InternalServerError().json(json!({ "error": e.to_string() }))
}

async fn read_all(session: Session) -> HttpResponse {
    HttpResponse::Ok().json(Value::Object(mesh::entries(&session).into_iter().collect()))
}

async fn insert(
    node: Data<Node>,
    session: Session,
    key: Path<String>,
    body: Bytes,
) -> HttpResponse {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(&format!("body is not JSON: {e}")),
    };
    if mesh::would_exceed(&node, &session, &key, &value) {
        return HttpResponse::PayloadTooLarge()
            .json(json!({ "error": "session over its size limit" }));
    }
    match session.insert(key.as_str(), value) {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => failed(e),
    }
}

async fn remove(session: Session, key: Path<String>) -> HttpResponse {
    session.remove(&key);
    HttpResponse::NoContent().finish()
}

async fn incr(session: Session, key: Path<String>, body: Bytes) -> HttpResponse {
    let by = match demo::parse_by(&body) {
        Ok(by) => by,
        Err(e) => return bad_request(&e),
    };
    let current = match session.get::<Value>(&key) {
        Ok(None) => 0,
        Ok(Some(v)) => match v.as_i64() {
            Some(n) => n,
            None => return bad_request(&format!("{key} is not an integer")),
        },
        Err(e) => return failed(e),
    };
    let total = current + by;
    match session.insert(key.as_str(), total) {
        Ok(()) => HttpResponse::Ok().json(total),
        Err(e) => failed(e),
    }
}

async fn cycle(session: Session) -> HttpResponse {
    session.renew();
    HttpResponse::NoContent().finish()
}

async fn invalidate(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::NoContent().finish()
}

async fn cluster(node: Data<Node>) -> HttpResponse {
    HttpResponse::Ok().json(demo::cluster_json(&node).await)
}

fn main() -> ExitCode {
    support::init_tracing();
    match support::args() {
        Ok(args) => support::exit("actix_peer", run(&args)),
        Err(code) => code,
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // The node runs on a tokio runtime of its own; actix-web on its system.
    let rt = tokio::runtime::Runtime::new()?;
    let node = rt.block_on(Node::open(args.config()))?;
    rt.block_on(async { support::log_events(&node) });
    let listener = std::net::TcpListener::bind(args.http)?;
    rt.block_on(support::announce(&node, listener.local_addr()?));
    // One cookie key for the whole cluster, kept across restarts.
    let key = MeshStore::new(node.clone()).cookie_key()?;
    let app_node = node.clone();
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let sessions = SessionMiddleware::builder(
                MeshStore::new(app_node.clone()).with_counters(["n"]),
                key.clone(),
            )
            .cookie_name("id".to_owned())
            .cookie_secure(false)
            .build();
            App::new()
                .app_data(Data::new(app_node.clone()))
                .route("/healthz", web::get().to(|| async { "ok" }))
                .route("/cluster", web::get().to(cluster))
                .service(
                    web::scope("")
                        .wrap(sessions)
                        // The session token beside actix-session's cookie (the
                        // last `wrap` runs outermost).
                        .wrap(TokenMiddleware::new().with_secure(false))
                        .route("/session", web::get().to(read_all))
                        .route("/session/cycle", web::post().to(cycle))
                        .route("/session/invalidate", web::post().to(invalidate))
                        .route("/session/{key}", web::put().to(insert))
                        .route("/session/{key}", web::delete().to(remove))
                        .route("/session/{key}/incr", web::post().to(incr)),
                )
        })
        .workers(2)
        .listen(listener)?
        .run()
        .await
    })?;
    rt.block_on(node.shutdown())?;
    Ok(())
}
