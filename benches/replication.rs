//! Replication figures over real TCP on 127.0.0.1, nodes in this process:
//!
//! - lag: three nodes, `Replication::Async`; one write on A at a time, timed
//!   from the moment A's commit returns until B serves the new value
//!   (p50, p99, max over the samples);
//! - convergence: two nodes share N sessions, are partitioned, each writes
//!   its own key into every session, and the partition heals; timed from
//!   the heal until both nodes serve both keys in every session.
//!
//! Run with: `cargo bench --bench replication` (`-- --quick` for a short run).
//! Writes `target/bench/replication.json`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sessionmesh::doc::Op;
use sessionmesh::net::{self, Replication};
use sessionmesh::{Config, Node, SessionId};

const KEY: [u8; 32] = [9; 32];

async fn node(dir: &std::path::Path) -> Node {
    let net = net::Config::new(KEY)
        .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .with_replication(Replication::Async)
        .with_anti_entropy_interval(Duration::from_secs(3_600));
    Node::open(Config::new(dir).with_network(net))
        .await
        .unwrap()
}

async fn connect(nodes: &[&Node]) {
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            a.add_peer(b.listen_addrs().await[0].clone()).await.unwrap();
        }
    }
    for a in nodes {
        while a.peers().await.len() < nodes.len() - 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn insert(key: &str, value: usize) -> Op {
    Op::Insert {
        key: key.into(),
        json: value.to_string(),
    }
}

/// The `per_mille`-th value of `sorted` (nearest rank).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let i = (sorted.len() - 1) * per_mille / 1_000;
    sorted[i]
}

async fn lag(samples: usize) -> Vec<Duration> {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(node(d.path()).await);
    }
    connect(&nodes.iter().collect::<Vec<_>>()).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut out = Vec::with_capacity(samples);
    let mut id = SessionId::random();
    for i in 0..samples {
        // A fresh session every 50 writes keeps histories session-sized.
        if i % 50 == 0 {
            id = SessionId::random();
            a.create(&id, &[insert("k", i)]).await.unwrap();
            while b.load(&id).await.unwrap().is_none() {
                tokio::task::yield_now().await;
            }
            continue;
        }
        a.commit(&id, &[insert("k", i)]).await.unwrap().unwrap();
        let t0 = Instant::now();
        loop {
            let seen = b
                .load(&id)
                .await
                .unwrap()
                .and_then(|v| v.attributes.get("k").cloned());
            if seen == Some(i.into()) {
                break;
            }
            tokio::task::yield_now().await;
        }
        out.push(t0.elapsed());
    }
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
    out
}

async fn convergence(sessions: usize) -> Duration {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path()).await;
    let b = node(dirs[1].path()).await;
    connect(&[&a, &b]).await;
    let ids: Vec<SessionId> = (0..sessions).map(|_| SessionId::random()).collect();
    for id in &ids {
        a.create(id, &[insert("base", 0)]).await.unwrap();
    }
    while b.session_count() < sessions {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (pa, pb) = (a.peer_id().unwrap(), b.peer_id().unwrap());
    a.set_blocked(pb, true).await.unwrap();
    b.set_blocked(pa, true).await.unwrap();
    while !a.peers().await.is_empty() || !b.peers().await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, id) in ids.iter().enumerate() {
        a.commit(id, &[insert("left", i)]).await.unwrap().unwrap();
        b.commit(id, &[insert("right", i)]).await.unwrap().unwrap();
    }
    let t0 = Instant::now();
    a.set_blocked(pb, false).await.unwrap();
    b.set_blocked(pa, false).await.unwrap();
    // Only B redials (A was told about B); anti-entropy runs on connection.
    loop {
        let mut done = true;
        'check: for n in [&a, &b] {
            for id in &ids {
                let v = n.load(id).await.unwrap().unwrap();
                if !(v.attributes.contains_key("left") && v.attributes.contains_key("right")) {
                    done = false;
                    break 'check;
                }
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    took
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (samples, sessions) = if quick { (300, 1_000) } else { (2_000, 1_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut lags = rt.block_on(lag(samples));
    lags.sort();
    let (p50, p99, max) = (
        percentile(&lags, 500),
        percentile(&lags, 990),
        lags[lags.len() - 1],
    );
    let conv = rt.block_on(convergence(sessions));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "replication lag, 3 nodes, {} writes: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        lags.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "convergence after heal, 2 nodes, {sessions} diverged sessions: {:.3} s",
        conv.as_secs_f64()
    );
    let json = serde_json::json!({
        "replication_lag_ms": {"p50": ms(p50), "p99": ms(p99), "max": ms(max), "samples": lags.len()},
        "convergence_s": {"sessions": sessions, "seconds": conv.as_secs_f64()},
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("replication.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
