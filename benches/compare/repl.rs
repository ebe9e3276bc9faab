//! Replication figures shared by the `replication` and `compare` benches:
//! lag write-on-A to visible-on-B, and convergence after a partition heals.

use std::time::{Duration, Instant};

use sessionmesh::doc::Op;
use sessionmesh::net::{self, Replication};
use sessionmesh::{Config, Node, SessionId};

const KEY: [u8; 32] = [9; 32];

pub(crate) async fn node(dir: &std::path::Path, replication: Replication) -> Node {
    let net = net::Config::new(KEY)
        .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .with_replication(replication)
        .with_anti_entropy_interval(Duration::from_secs(3_600));
    Node::open(Config::new(dir).with_network(net))
        .await
        .unwrap()
}

pub(crate) async fn connect(nodes: &[&Node]) {
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
pub(crate) fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let i = (sorted.len() - 1) * per_mille / 1_000;
    sorted[i]
}

pub(crate) async fn lag(samples: usize) -> Vec<Duration> {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(node(d.path(), Replication::Async).await);
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

pub(crate) async fn convergence(sessions: usize) -> Duration {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), Replication::Async).await;
    let b = node(dirs[1].path(), Replication::Async).await;
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
    // A session seen converged on a node stays so. The check waits on one
    // unconverged session at a time and moves on as soon as it converged,
    // so it reads each document about once: every read competes with the
    // sync for the two cores and the document cache.
    let mut waiting: Vec<(&Node, SessionId)> = [&a, &b]
        .into_iter()
        .flat_map(|n| ids.iter().map(move |id| (n, *id)))
        .collect();
    while let Some((n, id)) = waiting.last() {
        let v = n.load(id).await.unwrap().unwrap();
        if v.attributes.contains_key("left") && v.attributes.contains_key("right") {
            waiting.pop();
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let took = t0.elapsed();
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    took
}
