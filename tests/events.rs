//! Lifecycle events on two nodes: each create, rotation, invalidation and
//! expiry is reported once as `Local` where it happened and once as
//! `Replicated` on the other node (expiry: by each node's own sweeper).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionmesh::doc::Op;
use sessionmesh::events::{Event, EventKind, Origin};
use sessionmesh::net::{self, Replication};
use sessionmesh::{Config, DocKey, Node, SessionId};

/// Every event a node reports, counted by (session, kind, origin).
type Seen = Arc<Mutex<BTreeMap<(DocKey, String, String), usize>>>;

fn record(node: &Node) -> Seen {
    let seen: Seen = Arc::default();
    let mut rx = node.subscribe();
    let into = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok(Event {
            session,
            kind,
            origin,
            ..
        }) = rx.recv().await
        {
            let key = (session, format!("{kind:?}"), format!("{origin:?}"));
            *into.lock().unwrap().entry(key).or_default() += 1;
        }
    });
    seen
}

async fn open(dir: &std::path::Path) -> Node {
    let net = net::Config::new(common::KEY)
        .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .with_replication(Replication::Async);
    let config = Config::new(dir)
        .with_max_idle(Duration::from_millis(500))
        .with_tombstone_grace(Duration::ZERO)
        .with_network(net);
    Node::open(config).await.unwrap()
}

fn entry(key: DocKey, kind: EventKind, origin: Origin) -> ((DocKey, String, String), usize) {
    ((key, format!("{kind:?}"), format!("{origin:?}")), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lifecycle_event_is_reported_once_where_it_happened_and_where_it_arrived() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(da.path()).await, open(db.path()).await);
    common::mesh(&[&a, &b]).await;
    let (on_a, on_b) = (record(&a), record(&b));

    // Created on A, rotated on A, the successor invalidated on B; another
    // session left to expire.
    let (first, second, idle) = (
        SessionId::random(),
        SessionId::random(),
        SessionId::random(),
    );
    a.create(&first, &[]).await.unwrap();
    a.create(&idle, &[]).await.unwrap();
    common::eventually("both sessions on B", || async {
        b.load(&first).await.unwrap().is_some() && b.load(&idle).await.unwrap().is_some()
    })
    .await;
    a.rotate(&first, &second, &[]).await.unwrap().unwrap();
    common::eventually("the rotation on B", || async {
        b.load(&second).await.unwrap().is_some()
    })
    .await;
    assert!(b
        .commit(&second, &[Op::Invalidate])
        .await
        .unwrap()
        .is_none());
    common::eventually("the logout on A", || async {
        a.load(&second).await.unwrap().is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for node in [&a, &b] {
        assert_eq!(node.sweep().await.unwrap().tombstoned, 3);
    }

    let (first, second, idle) = (first.doc_key(), second.doc_key(), idle.doc_key());
    let rotated = EventKind::Rotated { to: second };
    let expected = |here: Origin, there: Origin| -> BTreeMap<_, _> {
        [
            entry(first, EventKind::Created, here),
            entry(idle, EventKind::Created, here),
            entry(second, EventKind::Created, here),
            entry(first, rotated, here),
            entry(second, EventKind::Invalidated, there),
            entry(idle, EventKind::Expired, Origin::Local),
        ]
        .into_iter()
        .collect()
    };
    let want_a = expected(Origin::Local, Origin::Replicated);
    let want_b = expected(Origin::Replicated, Origin::Local);
    common::eventually("every event seen", || async {
        *on_a.lock().unwrap() == want_a && *on_b.lock().unwrap() == want_b
    })
    .await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
