//! What requests do through the engine, below the node: reads of evicted
//! sessions served from the summaries the cache keeps.

use std::time::Duration;

use super::replica_tests::{insert, live};
use super::*;
use crate::store::LineageId;
const FIRST: LineageId = LineageId::FIRST;
use crate::doc::Op;
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

#[test]
fn a_session_merged_past_its_size_limit_takes_writes_that_do_not_grow_it() {
    let clock = ManualClock::new(1_000_000);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |dir: &std::path::Path| {
        let config = super::replica_tests::config(dir, &clock).with_max_session_bytes(1_000);
        Engine::open(config, None).unwrap()
    };
    let (a, b) = (open(da.path()), open(db.path()));
    let key = SessionId::random().doc_key();
    let (_, pushes) = a
        .create(key, &[insert("small", "1"), insert("n", "1")])
        .unwrap();
    super::generation_tests::deliver(&b, &pushes);
    // Each node writes 600 bytes, within the limit; merged, 1,200 are over.
    let value = format!("\"{}\"", "x".repeat(600));
    let (_, on_a) = a.commit(key, &[insert("left", &value)]).unwrap();
    let (_, on_b) = b.commit(key, &[insert("right", &value)]).unwrap();
    super::generation_tests::deliver(&a, &on_b);
    super::generation_tests::deliver(&b, &on_a);
    let size = |e: &Engine| live(e, key).unwrap().attributes.len();
    assert_eq!((size(&a), size(&b)), (4, 4));
    // Growing it further is refused.
    let grow = a.commit(key, &[insert("more", "2")]);
    assert!(
        matches!(grow, Err(crate::Error::TooLarge { .. })),
        "{grow:?}"
    );
    // Removing a key, incrementing a counter, a smaller value, a rotation:
    // none grows it, each goes through though it stays over the limit.
    a.commit(
        key,
        &[Op::Remove {
            key: "small".into(),
        }],
    )
    .unwrap();
    let view = a
        .commit(
            key,
            &[Op::Increment {
                key: "n".into(),
                by: 1,
            }],
        )
        .unwrap()
        .0
        .unwrap();
    assert_eq!(view.attributes["n"], 2);
    a.commit(key, &[insert("left", "\"short\"")]).unwrap();
    let rotated = SessionId::random().doc_key();
    let view = a.rotate(key, rotated, &[]).unwrap().0.unwrap();
    assert_eq!(view.attributes["right"].as_str().unwrap().len(), 600);
}

#[test]
fn a_value_set_many_times_in_one_request_is_committed_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let engine = Engine::open(super::replica_tests::config(dir.path(), &clock), None).unwrap();
    let key = SessionId::random().doc_key();
    engine.create(key, &[]).unwrap();
    // A handler that sets a 900 KB value twenty times: one change carrying
    // the last value, not twenty (18 MB, past what one message to a peer
    // may carry).
    let ops: Vec<Op> = (0..20)
        .map(|i| insert("big", &format!("\"{}{i}\"", "x".repeat(900_000))))
        .collect();
    let (view, pushes) = engine.commit(key, &ops).unwrap();
    assert!(view.unwrap().attributes["big"]
        .as_str()
        .unwrap()
        .ends_with("19"));
    let bytes: usize = pushes.iter().map(|p| p.chunk.len()).sum();
    assert!(bytes < 1 << 20, "{bytes} bytes pushed");
}

#[test]
fn a_session_limit_past_what_a_message_carries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path()).with_max_session_bytes(8 << 20);
    assert!(matches!(
        Engine::open(config, None),
        Err(crate::Error::InvalidConfig {
            field: "max_session_bytes",
            ..
        })
    ));
}
