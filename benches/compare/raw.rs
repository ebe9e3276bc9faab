//! The latency of a read on another node right after the same user's write
//! (what the session token costs when it matters, and whether a read ever
//! misses the write).

use std::time::{Duration, Instant};

use sessionmesh::net::Replication;
use sessionmesh::Node;

use crate::repl::{connect, node};

/// A user writes on A and at once reads on B, `samples` times, through
/// HTTP with the cookies A and B set (the session token among them).
/// Returns the read latencies and how many reads missed the write.
pub(crate) async fn read_after_write(samples: usize) -> (Vec<Duration>, usize) {
    use axum::extract::Path;
    use axum::routing::{get, put};
    use sessionmesh::http::{Session, SessionLayer};
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(node(d.path(), Replication::Async).await);
    }
    connect(&nodes.iter().collect::<Vec<_>>()).await;
    let app = |node: Node| {
        axum::Router::new()
            .route(
                "/set/{v}",
                put(|s: Session, Path(v): Path<i64>| async move {
                    s.insert("k", v).await?;
                    Ok::<_, sessionmesh::Error>("set")
                }),
            )
            .route(
                "/get",
                get(|s: Session| async move {
                    Ok::<_, sessionmesh::Error>(s.get::<i64>("k").await?.unwrap_or(-1).to_string())
                }),
            )
            .layer(SessionLayer::new(node).with_secure(false))
    };
    let (a, server_a) = crate::throughput::serve(app(nodes[0].clone())).await;
    let (b, server_b) = crate::throughput::serve(app(nodes[1].clone())).await;
    let http = reqwest::Client::new();
    let mut jar = crate::throughput::Jar::default();
    let (mut out, mut misses) = (Vec::with_capacity(samples), 0);
    for i in 0..samples {
        let set = http
            .put(format!("http://{a}/set/{i}"))
            .header(reqwest::header::COOKIE, jar.header())
            .send()
            .await
            .unwrap();
        jar.keep(&set);
        let t0 = Instant::now();
        let got = http
            .get(format!("http://{b}/get"))
            .header(reqwest::header::COOKIE, jar.header())
            .send()
            .await
            .unwrap();
        jar.keep(&got);
        let text = got.text().await.unwrap();
        out.push(t0.elapsed());
        if text != i.to_string() {
            misses += 1;
        }
    }
    server_a.abort();
    server_b.abort();
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
    (out, misses)
}
