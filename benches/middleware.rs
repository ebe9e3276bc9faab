//! Per-request cost of the session middleware, through the whole tower stack
//! (no socket): a handler with no session, a read of two attributes, and a
//! read of two attributes plus a counter increment (one persisted commit).
//!
//! Run with: `cargo bench --bench middleware`

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{header, Request};
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use sessionmesh::http::{Session, SessionLayer};
use sessionmesh::{Config, Node};
use tower::ServiceExt;

async fn read(session: Session) -> String {
    let a = session
        .get::<String>("a")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let b = session
        .get::<i64>("b")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    format!("{a}{b}")
}

async fn read_write(session: Session) -> Result<String, sessionmesh::Error> {
    let a = session.get::<String>("a").await?.unwrap_or_default();
    let b = session.get::<i64>("b").await?.unwrap_or_default();
    let n = session.increment("n", 1).await?;
    Ok(format!("{a}{b}{n}"))
}

async fn seed(node: &Node) -> String {
    let app = Router::new()
        .route(
            "/",
            get(|s: Session| async move {
                s.insert("a", "alpha").await?;
                s.insert("b", 2).await
            }),
        )
        .layer(SessionLayer::new(node.clone()));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = rt.block_on(Node::open(Config::new(dir.path()))).unwrap();
    let cookie = rt.block_on(seed(&node));
    let bare = Router::new().route("/", get(|| async { "alpha2" }));
    let layer = SessionLayer::new(node.clone());
    let reads = Router::new().route("/", get(read)).layer(layer.clone());
    let writes = Router::new().route("/", get(read_write)).layer(layer);

    let mut group = c.benchmark_group("request");
    for (name, app) in [
        ("no_session", &bare),
        ("read_2_attrs", &reads),
        ("read_2_attrs_incr", &writes),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = Request::get("/")
                        .header(header::COOKIE, &cookie)
                        .body(Body::empty())
                        .unwrap();
                    let res = app.clone().oneshot(req).await.unwrap();
                    assert!(res.status().is_success());
                });
            });
        });
    }
    group.finish();
    rt.block_on(node.shutdown()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
