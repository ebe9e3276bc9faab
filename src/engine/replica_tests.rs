//! The receiving side of replication on a real RocksDB, through the
//! engine: sessions dead on arrival, deferred pushes.

use std::time::Duration;

use automerge::ActorId;

use super::*;
use crate::store::LineageId;
const FIRST: LineageId = LineageId::FIRST;
use crate::doc::{Op, SessionDoc};
use crate::{Clock, Config, DocKey, ManualClock, NodeId, SessionId};

const MIN: Duration = Duration::from_secs(60);

/// A node's settings for these tests: compaction every 4 commits, no
/// tombstone grace.
pub(super) fn config(dir: &std::path::Path, clock: &ManualClock) -> Config {
    Config::new(dir)
        .with_clock(clock.clone())
        .with_max_idle(30 * MIN)
        .with_absolute_timeout(24 * 60 * MIN)
        .with_compact_every(4)
        .with_tombstone_grace(Duration::ZERO)
}

pub(super) fn open(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    Engine::open(config(dir, clock), None).unwrap()
}

/// The live session `key` as a request would see it.
pub(super) fn live(engine: &Engine, key: DocKey) -> Option<SessionView> {
    match engine.load(key, None).unwrap().0 {
        Loaded::Live(view) | Loaded::Behind(view) => Some(view),
        Loaded::Gone | Loaded::Expired | Loaded::Missing => None,
    }
}

pub(super) fn insert(key: &str, json: &str) -> Op {
    Op::Insert {
        key: key.into(),
        json: json.into(),
    }
}

/// Makes one change to `doc` with `f`; returns its chunk.
pub(super) fn change(doc: &mut SessionDoc, f: impl FnOnce(&mut SessionDoc)) -> Vec<u8> {
    let heads = doc.heads();
    f(doc);
    doc.commit();
    doc.save_after(&heads)
}

/// A remote session document, created and committed, and its first chunk.
pub(super) fn remote_session(clock: &ManualClock) -> (SessionDoc, Vec<u8>) {
    let mut doc = SessionDoc::new(
        ActorId::random(),
        NodeId::random(),
        clock.now_ms(),
        30 * 60_000,
        0,
    );
    doc.commit();
    let chunk = doc.save_after(&[]);
    (doc, chunk)
}

#[test]
fn a_session_dead_on_arrival_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    let engine = Engine::open(Config::new(dir.path()).with_clock(clock.clone()), None).unwrap();
    let remote = NodeId::random();
    let push = |doc: &mut SessionDoc| {
        let key = SessionId::random().doc_key();
        engine.apply_push(key, FIRST, &doc.save_after(&[]))
    };
    // Invalidated before it ever reached us.
    let mut ended = SessionDoc::new(ActorId::random(), remote, clock.now_ms(), 60_000, 0);
    ended.invalidate().unwrap();
    ended.commit();
    // Not kept, so not acknowledged: a sync write must not count it.
    assert_eq!(push(&mut ended), Applied::No);
    // Last used long ago: expired (what a node away past the GC horizon holds).
    let mut stale = SessionDoc::new(ActorId::random(), remote, 1_000, 60_000, 0);
    stale.insert("k", &1).unwrap();
    stale.commit();
    assert_eq!(push(&mut stale), Applied::No);
    assert_eq!(engine.session_count(), 0);
    // A live one is kept.
    let mut live = SessionDoc::new(ActorId::random(), remote, clock.now_ms(), 60_000, 0);
    live.insert("k", &1).unwrap();
    live.commit();
    assert_eq!(push(&mut live), Applied::Yes);
    assert_eq!(engine.session_count(), 1);
    engine.close(true).unwrap();
}

#[test]
fn deferred_pushes_are_durable_visible_and_digested_like_applied_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let key = SessionId::random().doc_key();
    let counter = NodeId::random();
    let (mut source, first) = remote_session(&clock);
    {
        let engine = open(dir.path(), &clock);
        assert_eq!(engine.apply_push(key, FIRST, &first), Applied::Yes);
        // More than one deferral batch, and past the compaction threshold (4).
        for i in 1..=70 {
            let chunk = change(&mut source, |d| {
                d.insert("n", &i).unwrap();
                d.increment("c", 1, counter).unwrap();
            });
            assert_eq!(
                engine.apply_push(key, FIRST, &chunk),
                Applied::Yes,
                "push {i}"
            );
        }
        // What anti-entropy compares equals the sender's, applied or not.
        let digest = engine.digest(&[], None, 10).unwrap();
        assert_eq!(digest, vec![(key, source.heads_hash())]);
        let view = live(&engine, key).unwrap();
        assert_eq!(view.attributes["n"], 70);
        assert_eq!(view.attributes["c"], 70);
        for i in 71..=75 {
            let chunk = change(&mut source, |d| d.insert("n", &i).unwrap());
            assert_eq!(engine.apply_push(key, FIRST, &chunk), Applied::Yes);
        }
        engine.close(true).unwrap();
    }
    // Deferred and never read before the restart: on disk all the same.
    let engine = open(dir.path(), &clock);
    let view = live(&engine, key).unwrap();
    assert_eq!(view.attributes["n"], 75);
    assert_eq!(view.attributes["c"], 70);
    engine.close(true).unwrap();
}

#[test]
fn a_push_that_releases_a_queued_change_applies_both() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let key = SessionId::random().doc_key();
    let (mut source, first) = remote_session(&clock);
    let engine = open(dir.path(), &clock);
    engine.apply_push(key, FIRST, &first);
    engine.apply_push(
        key,
        FIRST,
        &change(&mut source, |d| d.insert("a", &1).unwrap()),
    );
    // The second change is held back; the third arrives first.
    let second = change(&mut source, |d| d.insert("b", &2).unwrap());
    let third = change(&mut source, |d| d.insert("c", &3).unwrap());
    assert_eq!(engine.apply_push(key, FIRST, &third), Applied::MissingDeps);
    // The second follows the replica's heads exactly, yet must not be
    // deferred: it releases the queued third.
    assert_eq!(engine.apply_push(key, FIRST, &second), Applied::Yes);
    let view = live(&engine, key).unwrap();
    assert_eq!(view.attributes.len(), 3, "{:?}", view.attributes);
    engine.close(true).unwrap();
    let engine = open(dir.path(), &clock);
    let view = live(&engine, key).unwrap();
    assert_eq!(
        view.attributes.len(),
        3,
        "after reopen: {:?}",
        view.attributes
    );
    engine.close(true).unwrap();
}

#[test]
fn a_decompression_bomb_is_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    let engine = open(dir.path(), &clock);
    let key = SessionId::random().doc_key();
    let (mut doc, first) = remote_session(&clock);
    assert_eq!(engine.apply_push(key, FIRST, &first), Applied::Yes);
    // Past the limit by a byte, from a few hundred kilobytes on the wire.
    let limit = engine.config().max_inflated_bytes();
    let bomb = crate::doc::zero_bomb(limit + 1);
    assert!(bomb.len() < limit / 500, "{}", bomb.len());
    // Refused while it inflates: what the node allocates stays near the
    // push's own size (automerge would allocate the whole).
    let mut applied = None;
    let info = allocation_counter::measure(|| applied = Some(engine.apply_push(key, FIRST, &bomb)));
    assert_eq!(applied, Some(Applied::No));
    assert!(info.bytes_max < 4 << 20, "allocated {}", info.bytes_max);
    let msg = crate::doc::sync_message_carrying(vec![bomb]);
    let mut state = automerge::sync::State::new();
    let refused = engine.sync_step(key, FIRST, &mut state, Some(&msg));
    assert!(
        matches!(
            refused,
            Err(crate::Error::Doc(crate::doc::Error::Inflation { .. }))
        ),
        "{refused:?}"
    );
    // Real changes, pushed or synced, still apply, and the session serves.
    let next = change(&mut doc, |d| d.insert("k", &1).unwrap());
    assert_eq!(engine.apply_push(key, FIRST, &next), Applied::Yes);
    let last = change(&mut doc, |d| d.insert("j", &2).unwrap());
    let msg = crate::doc::sync_message_carrying(vec![last]);
    let mut state = automerge::sync::State::new();
    engine
        .sync_step(key, FIRST, &mut state, Some(&msg))
        .unwrap();
    let (view, _) = engine.commit(key, &[insert("mine", "3")]).unwrap();
    let view = view.unwrap();
    assert_eq!(view.attributes["k"], 1);
    assert_eq!(view.attributes["j"], 2);
    assert_eq!(view.attributes["mine"], 3);
    engine.close(true).unwrap();
}

#[test]
fn a_last_access_from_a_clock_running_ahead_does_not_keep_a_session_alive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    let engine = open(dir.path(), &clock);
    // Created and touched by a node whose clock is two hours ahead.
    let ahead = clock.now_ms() + 2 * 3_600_000;
    let mut doc = SessionDoc::new(ActorId::random(), NodeId::random(), ahead, 30 * 60_000, 0);
    doc.insert("k", &1).unwrap();
    doc.commit();
    let key = SessionId::random().doc_key();
    assert_eq!(
        engine.apply_push(key, FIRST, &doc.save_after(&[])),
        Applied::Yes
    );
    assert!(live(&engine, key).is_some());
    // Its time counts as this node's now (plus a few seconds): unused for
    // the idle timeout, it expires, though the writer's clock says it was
    // used two hours from now.
    clock.advance(31 * MIN);
    assert!(
        live(&engine, key).is_none(),
        "kept alive by a clock running ahead"
    );
    engine.close(true).unwrap();
}

#[test]
fn a_bundle_that_expands_while_parsing_is_refused_unparsed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    let engine = open(dir.path(), &clock);
    let bomb = [
        0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 3, 12, 0, 0, 0, 1, 0x23, 6, 0x80, 0x80, 0x80, 0x80,
        0x20, 0,
    ];
    let key = SessionId::random().doc_key();
    let mut applied = None;
    let info = allocation_counter::measure(|| applied = Some(engine.apply_push(key, FIRST, &bomb)));
    assert_eq!(applied, Some(Applied::No));
    assert!(info.bytes_max < 1 << 20, "allocated {}", info.bytes_max);
    engine.close(true).unwrap();
}

/// A node in `dir` holding a session a remote node created: the node, the
/// session's key and the remote document (to make more changes in).
fn replica_of(dir: &std::path::Path, clock: &ManualClock) -> (Engine, DocKey, SessionDoc) {
    let key = SessionId::random().doc_key();
    let (source, first) = remote_session(clock);
    let engine = open(dir, clock);
    assert_eq!(engine.apply_push(key, FIRST, &first), Applied::Yes);
    (engine, key, source)
}

#[test]
fn a_pushed_logout_moves_the_session_in_the_expiry_index_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let (engine, key, mut source) = replica_of(dir.path(), &clock);
    let write = change(&mut source, |d| d.insert("a", &1).unwrap());
    assert_eq!(engine.apply_push(key, FIRST, &write), Applied::Yes);
    let logout = change(&mut source, |d| d.invalidate().unwrap());
    assert_eq!(engine.apply_push(key, FIRST, &logout), Applied::Yes);
    // Not live, by the index alone (what fingerprints read).
    assert_eq!(engine.live_digest(&[], 10).unwrap(), Vec::new());
    engine.close(true).unwrap();
    // Restarted without the session ever being read: the sweeper ends it
    // now, not when its idle timeout would have.
    let engine = open(dir.path(), &clock);
    clock.advance(Duration::from_secs(1));
    assert_eq!(engine.live_digest(&[], 10).unwrap(), Vec::new());
    assert_eq!(engine.sweep().unwrap().tombstoned, 1);
    engine.close(true).unwrap();
}

#[test]
fn an_end_filed_while_the_clock_ran_ahead_is_moved_back_when_a_peer_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    let (engine, key, mut source) = replica_of(dir.path(), &clock);
    // The logout arrives while this node's clock runs 31 minutes ahead.
    let logout = change(&mut source, |d| d.invalidate().unwrap());
    clock.advance(31 * MIN);
    assert_eq!(engine.apply_push(key, FIRST, &logout), Applied::Yes);
    clock.set(10 * 3_600_000 + 1_000);
    // Filed 31 minutes ahead: the index counts the session as live.
    assert_eq!(engine.live_digest(&[], 10).unwrap().len(), 1);
    // A peer's anti-entropy answer says the session ended.
    engine.end(key).unwrap();
    assert_eq!(engine.live_digest(&[], 10).unwrap(), Vec::new());
    clock.advance(Duration::from_secs(1));
    assert_eq!(engine.sweep().unwrap().tombstoned, 1);
    engine.close(true).unwrap();
}

#[test]
fn touches_pushed_near_the_filed_deadline_move_the_session_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let start = 10 * 3_600_000;
    let clock = ManualClock::new(start);
    let (engine, key, mut source) = replica_of(dir.path(), &clock);
    let write = change(&mut source, |d| d.insert("a", &1).unwrap());
    assert_eq!(engine.apply_push(key, FIRST, &write), Applied::Yes);
    // The session is used on another node only: its touches arrive here,
    // past half its idle timeout (30 minutes).
    clock.advance(16 * MIN);
    let node = NodeId::random();
    let touch = change(&mut source, |d| d.touch(node, clock.now_ms()).unwrap());
    assert_eq!(engine.apply_push(key, FIRST, &touch), Applied::Yes);
    // Past the first deadline, before the touched one: live, by the index
    // alone, as on the node that touched it.
    clock.set(start + 31 * 60_000);
    assert_eq!(engine.live_digest(&[], 10).unwrap().len(), 1);
    engine.close(true).unwrap();
}
