//! Every failure path of persisting, on a real RocksDB behind a store that
//! fails on purpose: the failed write answers an error, the session stays
//! what it was before the request, the engine keeps serving, and nothing
//! acknowledged is lost (checked again after reopening without faults).

use super::replica_tests::{change, config, insert, live, open, remote_session};
use super::*;
use crate::store::LineageId;
const FIRST: LineageId = LineageId::FIRST;
use crate::doc::Op;
use crate::store::{Faulty, Storage, StorageFaults, WriteKind};
use crate::{Error, ManualClock, SessionId};

fn faulty(dir: &std::path::Path, clock: &ManualClock, faults: &StorageFaults) -> Engine {
    let faults = faults.clone();
    let wrap: Wrap = Box::new(move |store: Box<dyn Storage>| -> Box<dyn Storage> {
        Box::new(Faulty::new(store, faults))
    });
    Engine::open(config(dir, clock), Some(wrap)).unwrap()
}

fn injected<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(Error::Store(crate::store::Error::Injected(_))))
}

#[test]
fn a_failed_commit_answers_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let faults = StorageFaults::new();
    let key = SessionId::random().doc_key();
    {
        let engine = faulty(dir.path(), &clock, &faults);
        faults.fail_next(WriteKind::Append);
        assert!(injected(&engine.create(key, &[insert("a", "1")])));
        assert!(
            live(&engine, key).is_none(),
            "a failed create creates nothing"
        );
        assert_eq!(engine.session_count(), 0);
        engine.create(key, &[insert("a", "1")]).unwrap();
        faults.fail_next(WriteKind::Append);
        assert!(injected(&engine.commit(key, &[insert("b", "2")])));
        let view = live(&engine, key).unwrap();
        assert!(!view.attributes.contains_key("b"), "{:?}", view.attributes);
        // It keeps serving: the same write succeeds next time.
        let (view, pushes) = engine.commit(key, &[insert("b", "3")]).unwrap();
        assert_eq!(view.unwrap().attributes["b"], 3);
        assert_eq!(pushes.len(), 1);
        assert_eq!(faults.failed(), 2);
        engine.close(true).unwrap();
    }
    let engine = open(dir.path(), &clock);
    let view = live(&engine, key).unwrap();
    assert_eq!(
        (view.attributes["a"].clone(), view.attributes["b"].clone()),
        (1.into(), 3.into())
    );
    engine.close(true).unwrap();
}

#[test]
fn a_failed_compaction_is_a_failed_commit_and_the_next_one_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let faults = StorageFaults::new();
    let key = SessionId::random().doc_key();
    {
        let engine = faulty(dir.path(), &clock, &faults);
        // Compaction every 4: the create and two commits fill the log to 3,
        // so the next write is a snapshot.
        engine.create(key, &[insert("k0", "0")]).unwrap();
        for i in 1..3 {
            engine
                .commit(key, &[insert(&format!("k{i}"), "1")])
                .unwrap();
        }
        faults.fail_next(WriteKind::Snapshot);
        assert!(injected(&engine.commit(key, &[insert("k3", "1")])));
        assert_eq!(faults.failed(), 1, "the failed write was the snapshot");
        assert_eq!(live(&engine, key).unwrap().attributes.len(), 3);
        engine.commit(key, &[insert("k3", "2")]).unwrap();
        engine.commit(key, &[insert("k4", "2")]).unwrap();
        engine.close(true).unwrap();
    }
    let engine = open(dir.path(), &clock);
    let view = live(&engine, key).unwrap();
    assert_eq!(view.attributes.len(), 5);
    assert_eq!(view.attributes["k3"], 2);
    engine.close(true).unwrap();
}

#[test]
fn a_replica_that_cannot_persist_a_push_refuses_it_and_takes_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let faults = StorageFaults::new();
    let key = SessionId::random().doc_key();
    let (mut source, first) = remote_session(&clock);
    {
        let engine = faulty(dir.path(), &clock, &faults);
        // The first change of a session, then one that would be deferred.
        faults.fail_next(WriteKind::Append);
        assert_eq!(engine.apply_push(key, FIRST, &first), Applied::No);
        assert_eq!(engine.session_count(), 0);
        assert_eq!(engine.apply_push(key, FIRST, &first), Applied::Yes);
        let second = change(&mut source, |d| d.insert("a", &1).unwrap());
        faults.fail_next(WriteKind::Append);
        assert_eq!(engine.apply_push(key, FIRST, &second), Applied::No);
        let third = change(&mut source, |d| d.insert("b", &2).unwrap());
        assert_eq!(engine.apply_push(key, FIRST, &third), Applied::MissingDeps);
        // The sender's retry (or sync) brings the refused change again.
        assert_eq!(engine.apply_push(key, FIRST, &second), Applied::Yes);
        let view = live(&engine, key).unwrap();
        assert_eq!(view.attributes.len(), 2, "{:?}", view.attributes);
        // Local writes go on meanwhile.
        let other = SessionId::random().doc_key();
        engine.create(other, &[]).unwrap();
        engine.close(true).unwrap();
    }
    let engine = open(dir.path(), &clock);
    assert_eq!(live(&engine, key).unwrap().attributes.len(), 2);
    assert_eq!(engine.session_count(), 2);
    engine.close(true).unwrap();
}

#[test]
fn a_failed_tombstone_leaves_the_session_dead_and_the_next_sweep_collects_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let faults = StorageFaults::new();
    let engine = faulty(dir.path(), &clock, &faults);
    let key = SessionId::random().doc_key();
    engine.create(key, &[]).unwrap();
    engine.commit(key, &[Op::Invalidate]).unwrap();
    faults.fail_next(WriteKind::Tombstone);
    // The sweep goes on past the entry it could not handle, and says so.
    let report = engine.sweep().unwrap();
    assert_eq!((report.failed, report.tombstoned), (1, 0), "{report:?}");
    assert!(live(&engine, key).is_none());
    assert_eq!(engine.sweep().unwrap().tombstoned, 1);
    assert_eq!(engine.session_count(), 0);
    engine.close(true).unwrap();
}

#[test]
fn writes_after_a_crash_point_are_lost_and_the_store_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let faults = StorageFaults::new();
    let key = SessionId::random().doc_key();
    {
        let engine = faulty(dir.path(), &clock, &faults);
        engine.create(key, &[insert("before", "1")]).unwrap();
        faults.crash();
        // Acknowledged by a store that will not keep them (a power loss
        // under `Durability::Process`), across a compaction too.
        for i in 0..6 {
            engine
                .commit(key, &[insert(&format!("after{i}"), "1")])
                .unwrap();
        }
        engine.close(false).unwrap();
    }
    let engine = open(dir.path(), &clock);
    let view = live(&engine, key).unwrap();
    assert_eq!(view.attributes.len(), 1, "{:?}", view.attributes);
    // The restarted node writes as a new actor: no clash with the lost
    // changes it no longer knows of.
    engine.commit(key, &[insert("again", "1")]).unwrap();
    engine.close(true).unwrap();
    let engine = open(dir.path(), &clock);
    assert_eq!(live(&engine, key).unwrap().attributes.len(), 2);
    engine.close(true).unwrap();
}
