//! Node behaviour on a real RocksDB in a temp dir, with an injected clock.

use std::time::Duration;

use super::*;
use crate::doc::{ExpiryMode, Op};
use crate::{Clock, Config, Error, ManualClock, NodeId, SessionId};

const MIN: Duration = Duration::from_secs(60);

fn insert(key: &str, json: &str) -> Op {
    Op::Insert {
        key: key.into(),
        json: json.into(),
    }
}

async fn open(dir: &std::path::Path, clock: &ManualClock) -> Node {
    let config = Config::new(dir)
        .with_clock(clock.clone())
        .with_max_idle(30 * MIN)
        .with_absolute_timeout(24 * 60 * MIN)
        .with_compact_every(4)
        .with_tombstone_grace(Duration::ZERO);
    Node::open(config).await.unwrap()
}

#[tokio::test]
async fn sessions_survive_reopen_including_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let id = SessionId::random();
    {
        let node = open(dir.path(), &clock).await;
        node.create(&id, &[insert("user", "\"ada\"")])
            .await
            .unwrap();
        for i in 0..10 {
            let ops = [
                insert(&format!("k{i}"), &i.to_string()),
                Op::Increment {
                    key: "n".into(),
                    by: 2,
                },
            ];
            node.commit(&id, &ops).await.unwrap().unwrap();
        }
        node.shutdown().await.unwrap();
        assert!(matches!(node.load(&id).await, Err(Error::Shutdown)));
    }
    let node = open(dir.path(), &clock).await;
    assert_eq!(node.session_count(), 1);
    let view = node.load(&id).await.unwrap().unwrap();
    assert_eq!(view.attributes["user"], "ada");
    assert_eq!(view.attributes["k9"], 9);
    assert_eq!(view.attributes["n"], 20);
    // Writing after a restart works: the new process writes as a new actor.
    node.commit(&id, &[insert("after", "true")])
        .await
        .unwrap()
        .unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_expiry_with_an_injected_clock_and_touch_keeps_active_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let node = open(dir.path(), &clock).await;
    let id = SessionId::random();
    node.create(&id, &[insert("a", "1")]).await.unwrap();
    // Accessed every 20 minutes for two hours: never idle for 30.
    for _ in 0..6 {
        clock.advance(20 * MIN);
        assert!(node.load(&id).await.unwrap().is_some());
    }
    clock.advance(31 * MIN);
    assert_eq!(node.load(&id).await.unwrap(), None);
    // The sweeper turns it into a tombstone; the id never comes back.
    let report = node.sweep().await.unwrap();
    assert_eq!(report.tombstoned, 1);
    assert_eq!(node.session_count(), 0);
    assert!(matches!(
        node.create(&id, &[]).await,
        Err(Error::IdCollision)
    ));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn absolute_expiry_ends_even_an_active_session() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let node = open(dir.path(), &clock).await;
    let id = SessionId::random();
    node.create(&id, &[]).await.unwrap();
    for _ in 0..80 {
        clock.advance(20 * MIN);
        if node.load(&id).await.unwrap().is_none() {
            break;
        }
    }
    assert!(clock.now_ms() <= 24 * 3_600_000 + 20 * 60_000);
    assert_eq!(node.load(&id).await.unwrap(), None);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn tombstones_are_forgotten_after_the_gc_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let node = Node::open(
        Config::new(dir.path())
            .with_clock(clock.clone())
            .with_tombstone_grace(Duration::ZERO)
            .with_gc_horizon(60 * MIN),
    )
    .await
    .unwrap();
    let id = SessionId::random();
    node.create(&id, &[]).await.unwrap();
    node.commit(&id, &[Op::Invalidate]).await.unwrap();
    assert_eq!(node.load(&id).await.unwrap(), None);
    assert_eq!(node.sweep().await.unwrap().tombstoned, 1);
    clock.advance(61 * MIN);
    assert_eq!(node.sweep().await.unwrap().forgotten, 1);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotation_moves_attributes_and_kills_the_old_id() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let node = open(dir.path(), &clock).await;
    let old = SessionId::random();
    node.create(
        &old,
        &[
            insert("user", "\"ada\""),
            Op::Increment {
                key: "n".into(),
                by: 3,
            },
        ],
    )
    .await
    .unwrap();
    let new = SessionId::random();
    let view = node
        .rotate(&old, &new, &[insert("role", "\"admin\"")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.attributes.len(), 3);
    assert_eq!(node.load(&old).await.unwrap(), None);
    assert_eq!(node.commit(&old, &[insert("x", "1")]).await.unwrap(), None);
    let view = node.load(&new).await.unwrap().unwrap();
    assert_eq!(view.attributes["n"], 3);
    assert_eq!(view.attributes["role"], "admin");
    // Counters stay counters after rotation.
    let view = node
        .commit(
            &new,
            &[Op::Increment {
                key: "n".into(),
                by: 1,
            }],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.attributes["n"], 4);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn over_the_size_limit_is_a_typed_error_and_nothing_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path()).with_max_session_bytes(1_000))
        .await
        .unwrap();
    let id = SessionId::random();
    node.create(&id, &[insert("small", "1")]).await.unwrap();
    let big = format!("\"{}\"", "x".repeat(2_000));
    let err = node
        .commit(&id, &[insert("a", "2"), insert("big", &big)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 1_000, .. }), "{err}");
    let view = node.load(&id).await.unwrap().unwrap();
    assert_eq!(view.attributes.len(), 1, "a partial request must not land");
    // The node keeps serving.
    node.commit(&id, &[insert("b", "3")])
        .await
        .unwrap()
        .unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_operation_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    let id = SessionId::random();
    node.create(&id, &[insert("name", "\"x\"")]).await.unwrap();
    let ops = [
        insert("a", "1"),
        Op::Increment {
            key: "name".into(),
            by: 1,
        },
    ];
    assert!(matches!(node.commit(&id, &ops).await, Err(Error::Doc(_))));
    assert!(!node
        .load(&id)
        .await
        .unwrap()
        .unwrap()
        .attributes
        .contains_key("a"));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn set_expiry_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let node = open(dir.path(), &clock).await;
    let id = SessionId::random();
    node.create(
        &id,
        &[Op::SetExpiry {
            mode: ExpiryMode::Inactivity,
            max_idle_ms: 5_000,
            absolute_ms: 0,
        }],
    )
    .await
    .unwrap();
    let view = node.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (view.expiry, view.max_idle_ms, view.absolute_expiry_ms),
        (ExpiryMode::Inactivity, 5_000, 0)
    );
    clock.advance(Duration::from_secs(6));
    assert_eq!(node.load(&id).await.unwrap(), None);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    assert!(matches!(
        Node::open(Config::new(dir.path())).await,
        Err(Error::Store(_))
    ));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_durability_on_a_multi_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::random();
    {
        let config = Config::new(dir.path()).with_durability(crate::Durability::Fsync);
        let node = Node::open(config).await.unwrap();
        node.create(&id, &[insert("k", "1")]).await.unwrap();
        node.commit(&id, &[insert("k", "2")])
            .await
            .unwrap()
            .unwrap();
        // Dropped without shutdown: the fsynced WAL is all there is.
    }
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    assert_eq!(node.load(&id).await.unwrap().unwrap().attributes["k"], 2);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_background_sweeper_collects_dead_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let config = Config::new(dir.path())
        .with_clock(clock.clone())
        .with_sweep_interval(Duration::from_millis(20))
        .with_tombstone_grace(Duration::ZERO);
    let node = Node::open(config).await.unwrap();
    let id = SessionId::random();
    node.create(&id, &[]).await.unwrap();
    node.commit(&id, &[Op::Invalidate]).await.unwrap();
    for _ in 0..200 {
        if node.session_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.session_count(), 0, "the sweeper never ran");
    node.shutdown().await.unwrap();
}

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

#[tokio::test]
async fn an_increment_past_the_counter_range_is_refused_and_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let node = open(dir.path(), &clock).await;
    let id = SessionId::random();
    let incr = |key: &str, by: i64| Op::Increment {
        key: key.into(),
        by,
    };
    node.create(&id, &[insert("n", &i64::MAX.to_string())])
        .await
        .unwrap();
    let overflow = |r: Result<Option<SessionView>, Error>| {
        matches!(r, Err(Error::Doc(crate::doc::Error::Overflow { .. })))
    };
    assert!(overflow(node.commit(&id, &[incr("n", 1)]).await));
    // Within one commit, increments add up before the check.
    assert!(overflow(
        node.commit(&id, &[incr("m", i64::MAX - 1), incr("m", 2)])
            .await
    ));
    // After a clear, a key counts from zero.
    node.commit(&id, &[Op::Clear, incr("n", 5)]).await.unwrap();
    let view = node.load(&id).await.unwrap().unwrap();
    assert_eq!(view.attributes.len(), 1);
    assert_eq!(view.attributes["n"], 5);
    node.shutdown().await.unwrap();
}
