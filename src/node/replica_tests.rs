//! The receiving side of replication on a real RocksDB: malformed peer
//! messages, sessions dead on arrival, deferred pushes.

use super::tests::{insert, open};
use super::*;
use crate::{Clock, Config, ManualClock, NodeId, SessionId};

#[tokio::test]
async fn malformed_peer_messages_are_refused_without_harm() {
    use crate::net::{DigestEntry, Handler, PeerId, Pushed, Request, Response, SyncItem};
    use serde_bytes::{ByteArray, ByteBuf};
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    let id = SessionId::random();
    node.create(&id, &[insert("k", "1")]).await.unwrap();
    let key = ByteArray::new(*id.doc_key().as_bytes());
    let peer = PeerId::random();
    let garbage = [
        vec![],
        vec![0x42],
        vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
        vec![0xff; 300],
    ];
    for bytes in &garbage {
        for req in [
            Request::Push {
                items: vec![Pushed {
                    key,
                    changes: ByteBuf::from(bytes.clone()),
                }],
            },
            Request::Sync {
                items: vec![SyncItem {
                    key,
                    msg: ByteBuf::from(bytes.clone()),
                    first: true,
                }],
            },
            Request::Push {
                items: vec![Pushed {
                    key: ByteArray::new([9; 16]),
                    changes: ByteBuf::from(bytes.clone()),
                }],
            },
        ] {
            let resp = node.inner.on_request(peer, req);
            assert!(
                match &resp {
                    Response::Refused { .. } => true,
                    Response::Acks { acks } => acks.iter().all(|a| !a.applied),
                    Response::Sync { items } => items.iter().all(|i| i.refused.is_some()),
                    _ => false,
                },
                "{resp:?}"
            );
        }
    }
    let bogus = DigestEntry {
        key: ByteArray::new([1; 16]),
        heads: 5,
    };
    let req = Request::Digest {
        from: ByteBuf::from(vec![0xff; 40]),
        to: ByteBuf::new(),
        entries: vec![bogus],
    };
    assert!(matches!(
        node.inner.on_request(peer, req),
        Response::Differ { .. }
    ));
    // The session is intact and nothing foreign was stored.
    assert_eq!(node.load(&id).await.unwrap().unwrap().attributes["k"], 1);
    assert_eq!(node.session_count(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_session_dead_on_arrival_is_not_kept() {
    use crate::doc::SessionDoc;
    use crate::net::{Handler, PeerId, Pushed, Request};
    use automerge::ActorId;
    use serde_bytes::{ByteArray, ByteBuf};
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    let node = Node::open(Config::new(dir.path()).with_clock(clock.clone()))
        .await
        .unwrap();
    let peer = PeerId::random();
    let push = |doc: &mut SessionDoc| {
        let key = ByteArray::new(*SessionId::random().doc_key().as_bytes());
        Request::Push {
            items: vec![Pushed {
                key,
                changes: ByteBuf::from(doc.save_after(&[])),
            }],
        }
    };
    let remote = NodeId::random();
    // Invalidated before it ever reached us.
    let mut ended = SessionDoc::new(ActorId::random(), remote, clock.now_ms(), 60_000, 0);
    ended.invalidate().unwrap();
    ended.commit();
    node.inner.on_request(peer, push(&mut ended));
    // Last used long ago: expired (what a node away past the GC horizon holds).
    let mut stale = SessionDoc::new(ActorId::random(), remote, 1_000, 60_000, 0);
    stale.insert("k", &1).unwrap();
    stale.commit();
    node.inner.on_request(peer, push(&mut stale));
    assert_eq!(node.session_count(), 0);
    // A live one is kept.
    let mut live = SessionDoc::new(ActorId::random(), remote, clock.now_ms(), 60_000, 0);
    live.insert("k", &1).unwrap();
    live.commit();
    node.inner.on_request(peer, push(&mut live));
    assert_eq!(node.session_count(), 1);
    node.shutdown().await.unwrap();
}

/// Hands `chunk` to `node` as a peer's push; returns its ack.
fn push_chunk(node: &Node, key: crate::DocKey, chunk: Vec<u8>) -> crate::net::Ack {
    use crate::net::{Handler, PeerId, Pushed, Request, Response};
    use serde_bytes::{ByteArray, ByteBuf};
    let req = Request::Push {
        items: vec![Pushed {
            key: ByteArray::new(*key.as_bytes()),
            changes: ByteBuf::from(chunk),
        }],
    };
    let Response::Acks { acks } = node.inner.on_request(PeerId::random(), req) else {
        panic!("a push is answered with acks");
    };
    acks[0]
}

/// Makes one change to `doc` with `f` and pushes it to `node`.
fn push_change(
    node: &Node,
    key: crate::DocKey,
    doc: &mut crate::doc::SessionDoc,
    f: impl FnOnce(&mut crate::doc::SessionDoc),
) -> crate::net::Ack {
    let heads = doc.heads();
    f(doc);
    doc.commit();
    push_chunk(node, key, doc.save_after(&heads))
}

/// A remote session document, created and committed, and its first chunk.
fn remote_session(clock: &ManualClock) -> (crate::doc::SessionDoc, Vec<u8>) {
    let node = NodeId::random();
    let mut doc = crate::doc::SessionDoc::new(
        automerge::ActorId::random(),
        node,
        clock.now_ms(),
        30 * 60_000,
        0,
    );
    doc.commit();
    let chunk = doc.save_after(&[]);
    (doc, chunk)
}

#[tokio::test]
async fn deferred_pushes_are_durable_visible_and_digested_like_applied_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let id = SessionId::random();
    let key = id.doc_key();
    let counter = NodeId::random();
    let (mut source, first) = remote_session(&clock);
    {
        let node = open(dir.path(), &clock).await;
        assert!(push_chunk(&node, key, first).applied);
        // More than one deferral batch, and past the compaction threshold (4).
        for i in 1..=70 {
            let ack = push_change(&node, key, &mut source, |d| {
                d.insert("n", &i).unwrap();
                d.increment("c", 1, counter).unwrap();
            });
            assert!(ack.applied && !ack.missing_deps, "push {i}: {ack:?}");
        }
        // What anti-entropy compares equals the sender's, applied or not.
        let digest = node.inner.db.digest(&[], None, clock.now_ms(), 10).unwrap();
        assert_eq!(digest, vec![(key, source.heads_hash())]);
        let view = node.load(&id).await.unwrap().unwrap();
        assert_eq!(view.attributes["n"], 70);
        assert_eq!(view.attributes["c"], 70);
        for i in 71..=75 {
            assert!(push_change(&node, key, &mut source, |d| d.insert("n", &i).unwrap()).applied);
        }
        node.shutdown().await.unwrap();
    }
    // Deferred and never read before the restart: on disk all the same.
    let node = open(dir.path(), &clock).await;
    let view = node.load(&id).await.unwrap().unwrap();
    assert_eq!(view.attributes["n"], 75);
    assert_eq!(view.attributes["c"], 70);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_push_that_releases_a_queued_change_applies_both() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let id = SessionId::random();
    let key = id.doc_key();
    let (mut source, first) = remote_session(&clock);
    let node = open(dir.path(), &clock).await;
    push_chunk(&node, key, first);
    push_change(&node, key, &mut source, |d| d.insert("a", &1).unwrap());
    // The second change is held back; the third arrives first.
    let heads = source.heads();
    source.insert("b", &2).unwrap();
    source.commit();
    let second = source.save_after(&heads);
    let ack = push_change(&node, key, &mut source, |d| d.insert("c", &3).unwrap());
    assert!(!ack.applied && ack.missing_deps);
    // The second follows the replica's heads exactly, yet must not be
    // deferred: it releases the queued third.
    assert!(push_chunk(&node, key, second).applied);
    let view = node.load(&id).await.unwrap().unwrap();
    assert_eq!(view.attributes.len(), 3, "{:?}", view.attributes);
    node.shutdown().await.unwrap();
    drop(node);
    let node = open(dir.path(), &clock).await;
    let view = node.load(&id).await.unwrap().unwrap();
    assert_eq!(
        view.attributes.len(),
        3,
        "after reopen: {:?}",
        view.attributes
    );
    node.shutdown().await.unwrap();
}
