//! Node behaviour on a real RocksDB in a temp dir, with an injected clock.

use std::time::Duration;

use super::*;
use crate::doc::{ExpiryMode, Op};
use crate::{Clock, Config, Error, ManualClock, SessionId, SessionView};

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
async fn tombstones_are_forgotten_after_the_gc_horizon_and_the_sessions_deadline() {
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
    // Past the horizon, but not past the session's own absolute deadline
    // (24 h by default): a copy somewhere could still be live, so the
    // tombstone stays.
    clock.advance(61 * MIN);
    assert_eq!(node.sweep().await.unwrap().forgotten, 0);
    clock.advance(24 * 60 * MIN);
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
