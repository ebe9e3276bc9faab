//! Stored sessions that no longer load, and pushed changes that would make
//! one: neither stops the sweeper nor fails requests for good.

use std::time::Duration;

use super::replica_tests::{change, open, remote_session};
use super::*;
use crate::store::{Db, Durability, LineageId};
use crate::{ManualClock, SessionId};

const FIRST: LineageId = LineageId::FIRST;

/// `chunk` (one change) with its dependencies replaced by `deps` and its
/// checksum made right again: a change no automerge writes, which a
/// hostile peer can.
fn with_deps(chunk: &[u8], deps: &[automerge::ChangeHash]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut at = 9;
    let mut len = 0usize;
    for shift in (0..).step_by(7) {
        let b = chunk[at];
        at += 1;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let body = &chunk[at..at + len];
    let old_deps = usize::from(body[0]);
    assert!(old_deps < 0x80);
    let mut new_body = vec![u8::try_from(deps.len()).unwrap()];
    for d in deps {
        new_body.extend_from_slice(&d.0);
    }
    new_body.extend_from_slice(&body[1 + 32 * old_deps..]);
    let mut len_bytes = Vec::new();
    let mut n = new_body.len();
    loop {
        let b = u8::try_from(n & 0x7f).unwrap();
        n >>= 7;
        if n == 0 {
            len_bytes.push(b);
            break;
        }
        len_bytes.push(b | 0x80);
    }
    let hash = Sha256::new()
        .chain_update([1u8])
        .chain_update(&len_bytes)
        .chain_update(&new_body)
        .finalize();
    let mut out = chunk[..4].to_vec();
    out.extend_from_slice(&hash[..4]);
    out.push(1);
    out.extend(len_bytes);
    out.extend(new_body);
    out
}

#[test]
fn a_pushed_change_that_reuses_a_seq_is_refused_and_the_session_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    let key = SessionId::random().doc_key();
    let (mut doc, first) = remote_session(&clock);
    let second = change(&mut doc, |d| d.insert("k", &1).unwrap());
    let head = doc.heads();
    // The first change again (same actor, seq 1), now after the second:
    // its dependencies are the replica's heads, so it looks deferrable.
    let forged = with_deps(&first, &head);
    assert!(crate::doc::change_header(&forged).is_some(), "well-formed");
    {
        let engine = open(dir.path(), &clock);
        assert_eq!(engine.apply_push(key, FIRST, &first), Applied::Yes);
        assert_eq!(engine.apply_push(key, FIRST, &second), Applied::Yes);
        assert_eq!(engine.apply_push(key, FIRST, &forged), Applied::No);
        engine.close(true).unwrap();
    }
    let engine = open(dir.path(), &clock);
    let (loaded, _) = engine.load(key, None).unwrap();
    let Loaded::Live(view) = loaded else {
        panic!("{loaded:?}")
    };
    assert_eq!(view.attributes["k"], 1);
    engine.close(true).unwrap();
}

#[test]
fn a_session_that_does_not_load_is_quarantined_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10 * 3_600_000);
    // `swept` expires first, so the sweep meets it before the others.
    let swept = SessionId::random().doc_key();
    let read = SessionId::random().doc_key();
    let others = [SessionId::random().doc_key(), SessionId::random().doc_key()];
    {
        let engine = open(dir.path(), &clock);
        engine.create(swept, &[]).unwrap();
        clock.advance(Duration::from_millis(1));
        for k in others.iter().chain([&read]) {
            engine.create(*k, &[]).unwrap();
        }
        engine.close(true).unwrap();
    }
    {
        let db = Db::open(dir.path(), Durability::Process).unwrap();
        db.damage(swept);
        db.damage(read);
    }
    let engine = open(dir.path(), &clock);
    // A request for a damaged session fails once, clearly; then the key
    // reads as missing (a peer's copy may take its place).
    let first = engine.load(read, None);
    assert!(
        matches!(first, Err(crate::Error::Store(_))),
        "{:?}",
        first.map(|l| l.0)
    );
    assert!(matches!(
        engine.load(read, None).unwrap().0,
        Loaded::Missing
    ));
    clock.advance(Duration::from_secs(31 * 60));
    let report = engine.sweep().unwrap();
    assert_eq!(report.quarantined, 1, "{report:?}");
    assert_eq!(report.tombstoned, others.len(), "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(engine.sweep().unwrap(), SweepReport::default());
    assert!(matches!(
        engine.load(swept, None).unwrap().0,
        Loaded::Missing
    ));
    engine.close(true).unwrap();
    let db = Db::open(dir.path(), Durability::Process).unwrap();
    assert!(db.quarantined() >= 2, "both moved aside, not deleted");
}
