//! What requests do through the engine, below the node: reads of evicted
//! sessions served from the summaries the cache keeps.

use std::time::Duration;

use super::replica_tests::{insert, live};
use super::*;
use crate::store::LineageId;
const FIRST: LineageId = LineageId::FIRST;
use crate::{Config, DocKey, ManualClock, SessionId};

const MIN: Duration = Duration::from_secs(60);

#[test]
fn reads_of_evicted_sessions_come_from_their_kept_summary_and_stay_current() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    // Room for a handful of loaded documents (~24 KiB each), and a quarter
    // of that again for the summaries of evicted ones.
    let config = Config::new(dir.path())
        .with_clock(clock.clone())
        .with_max_idle(30 * MIN)
        .with_cache_bytes(200 << 10);
    let engine = Engine::open(config, None).unwrap();
    let keys: Vec<DocKey> = (0..40).map(|_| SessionId::random().doc_key()).collect();
    for (i, key) in keys.iter().enumerate() {
        engine.create(*key, &[insert("i", &i.to_string())]).unwrap();
    }
    let kept = |key: DocKey| {
        engine
            .kept_summary(key)
            .and_then(|s| s.attributes.get("i").cloned())
    };
    let first = keys[0];
    assert_eq!(
        kept(first),
        Some(0.into()),
        "an evicted document left its summary"
    );
    assert_eq!(live(&engine, first).unwrap().attributes["i"], 0);
    assert_eq!(
        kept(first),
        Some(0.into()),
        "the read did not load the document"
    );

    // A write loads the document (the kept summary goes); once evicted
    // again, reads see the write.
    engine.commit(first, &[insert("i", "100")]).unwrap();
    assert_eq!(kept(first), None);
    for key in &keys[1..] {
        engine.commit(*key, &[insert("j", "1")]).unwrap();
    }
    assert_eq!(kept(first), Some(100.into()));
    assert_eq!(live(&engine, first).unwrap().attributes["i"], 100);

    // A read due to record an access goes through the document.
    clock.advance(2 * MIN);
    assert_eq!(live(&engine, first).unwrap().attributes["i"], 100);
    assert_eq!(kept(first), None);

    // An expired session reads as gone from its kept summary too.
    let second = keys[1];
    assert!(kept(second).is_some());
    clock.advance(31 * MIN);
    assert!(live(&engine, second).is_none());
    engine.close(true).unwrap();
}

/// A session created on an engine with a one-minute touch interval, at 1,000 s.
fn touched_engine(dir: &std::path::Path, clock: &ManualClock) -> (Engine, DocKey, Version) {
    let config = Config::new(dir)
        .with_clock(clock.clone())
        .with_max_idle(30 * MIN)
        .with_touch_interval(MIN);
    let engine = Engine::open(config, None).unwrap();
    let key = SessionId::random().doc_key();
    let (view, _) = engine.create(key, &[insert("k", "1")]).unwrap();
    (engine, key, view.version)
}

#[test]
fn an_access_is_the_only_news_keeps_the_clients_version() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let (engine, key, seen) = touched_engine(dir.path(), &clock);
    clock.advance(2 * MIN);
    let (found, pushes) = engine.load(key, Some(&seen)).unwrap();
    assert_eq!(pushes.len(), 1, "the access is recorded");
    match found {
        Loaded::Live(view) => assert_eq!(view.version, seen, "no new token for a touch"),
        other => panic!("{other:?}"),
    }
    engine.close(true).unwrap();
}

#[test]
fn a_node_behind_the_client_records_no_access() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let (engine, key, _) = touched_engine(dir.path(), &clock);
    clock.advance(2 * MIN);
    let unseen = Version::new(0, vec![automerge::ChangeHash([7; 32])]);
    let (found, pushes) = engine.load(key, Some(&unseen)).unwrap();
    assert!(matches!(found, Loaded::Behind(_)), "{found:?}");
    assert!(
        pushes.is_empty(),
        "nothing written on a state older than the client's"
    );
    engine.close(true).unwrap();
}

#[test]
fn a_state_wider_than_a_token_is_merged_before_it_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let engine = super::replica_tests::open(dir.path(), &clock);
    let key = SessionId::random().doc_key();
    let (mut base, first) = super::replica_tests::remote_session(&clock);
    assert_eq!(engine.apply_push(key, FIRST, &first), Applied::Yes);
    // Nine writers change the session at once, each from the first state.
    let saved = base.save();
    let heads = base.heads();
    for i in 0..9 {
        let mut fork = crate::doc::SessionDoc::load(&saved, automerge::ActorId::random()).unwrap();
        fork.insert(&format!("w{i}"), &i).unwrap();
        fork.commit();
        engine.apply_push(key, FIRST, &fork.save_after(&heads));
    }
    let (found, pushes) = engine.load(key, None).unwrap();
    let Loaded::Live(view) = found else {
        panic!("{found:?}")
    };
    assert_eq!(view.attributes.len(), 9);
    assert_eq!(view.version.heads().len(), 1, "one head: the whole state");
    assert_eq!(pushes.len(), 1, "the merging change goes to the peers");
    engine.close(true).unwrap();
}
