//! A write that reaches the rotating node only after the rotation: it is
//! carried into the successor, once, however many nodes carry it.

use super::generation_tests::{deliver, engine, exchange, incr, value};
use super::replica_tests::{insert, live};
use super::*;
use crate::{DocKey, ManualClock, SessionId};

/// Node A writes `late` (one commit each) on a session; node B, which has
/// not heard of them, rotates the session; then A's changes reach B, and
/// B's rotation A. Returns both engines and the successor's key.
fn late_writes_across_a_rotation(
    late: &[&[crate::doc::Op]],
    every: u32,
) -> (Engine, Engine, DocKey, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(1_000_000);
    let (a, b) = (
        engine(dirs[0].path(), &clock, every, 4),
        engine(dirs[1].path(), &clock, every, 4),
    );
    let old = SessionId::random().doc_key();
    let new = SessionId::random().doc_key();
    let (_, pushes) = a.create(old, &[insert("x", "1"), incr(1)]).unwrap();
    deliver(&b, &pushes);
    let (_, pushes) = b.commit(old, &[incr(1)]).unwrap();
    deliver(&a, &pushes);
    // A's write is held back; B rotates without it.
    let mut held = Vec::new();
    for ops in late {
        held.extend(a.commit(old, ops).unwrap().1);
    }
    let (view, rotation) = b.rotate(old, new, &[]).unwrap();
    assert!(view.is_some());
    deliver(&b, &held);
    deliver(&a, &rotation);
    exchange(&a, &b, new);
    exchange(&a, &b, old);
    (a, b, new, dirs)
}

#[test]
fn a_write_that_reaches_the_rotating_node_late_lands_in_the_successor() {
    let (a, b, new, _dirs) = late_writes_across_a_rotation(&[&[insert("late", "7")]], 64);
    for e in [&a, &b] {
        assert_eq!(value(e, new, "late"), 7);
        assert_eq!(value(e, new, "x"), 1);
        assert_eq!(value(e, new, "n"), 2);
    }
}

#[test]
fn a_late_increment_is_carried_once_though_both_nodes_carry_it() {
    let (a, b, new, _dirs) = late_writes_across_a_rotation(&[&[incr(5)]], 64);
    for e in [&a, &b] {
        assert_eq!(value(e, new, "n"), 7);
    }
    // Both nodes made the same translation: one document.
    assert_eq!(
        a.digest(new.as_bytes(), None, 1).unwrap(),
        b.digest(new.as_bytes(), None, 1).unwrap()
    );
}

#[test]
fn a_late_logout_ends_the_successor_but_a_losing_rotation_does_not() {
    let (a, b, new, _dirs) = late_writes_across_a_rotation(&[&[crate::doc::Op::Invalidate]], 64);
    assert!(live(&a, new).is_none() && live(&b, new).is_none());
    // A rotates too, at once with B, to an id of its own: both successors
    // stay live, each with every write.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(1_000_000);
    let (a, b) = (
        engine(dirs[0].path(), &clock, 64, 4),
        engine(dirs[1].path(), &clock, 64, 4),
    );
    let old = SessionId::random().doc_key();
    let (_, pushes) = a.create(old, &[incr(1)]).unwrap();
    deliver(&b, &pushes);
    let (na, nb) = (SessionId::random().doc_key(), SessionId::random().doc_key());
    let (_, ra) = a.rotate(old, na, &[incr(10)]).unwrap();
    let (_, rb) = b.rotate(old, nb, &[incr(100)]).unwrap();
    deliver(&a, &rb);
    deliver(&b, &ra);
    for key in [old, na, nb] {
        exchange(&a, &b, key);
    }
    for e in [&a, &b] {
        assert_eq!(value(e, na, "n"), 11);
        assert_eq!(value(e, nb, "n"), 101);
        assert!(live(e, old).is_none());
    }
}

#[test]
fn a_late_write_reaches_a_successor_that_moved_on_generations() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(1_000_000);
    let (a, b) = (
        engine(dirs[0].path(), &clock, 4, 4),
        engine(dirs[1].path(), &clock, 4, 4),
    );
    let old = SessionId::random().doc_key();
    let new = SessionId::random().doc_key();
    let (_, pushes) = a.create(old, &[incr(1)]).unwrap();
    deliver(&b, &pushes);
    let (_, held) = a.commit(old, &[incr(5)]).unwrap();
    let (_, rotation) = b.rotate(old, new, &[]).unwrap();
    // The successor is written on and switches generations before the late
    // write arrives.
    let mut more = rotation;
    for _ in 0..6 {
        more.extend(b.commit(new, &[incr(1)]).unwrap().1);
    }
    assert!(b.generation(new).unwrap().0 > 0);
    deliver(&b, &held);
    deliver(&a, &more);
    exchange(&a, &b, new);
    for e in [&a, &b] {
        assert_eq!(value(e, new, "n"), 1 + 5 + 6);
    }
}

#[test]
fn a_late_write_that_ends_a_generation_of_the_old_id_still_lands() {
    // The third change ends a generation: A's late write does, and so does
    // B's rotation, at once.
    let (a, b, new, _dirs) = late_writes_across_a_rotation(&[&[insert("late", "7"), incr(5)]], 3);
    for e in [&a, &b] {
        assert_eq!(value(e, new, "late"), 7);
        assert_eq!(value(e, new, "n"), 7);
    }
    // A goes on writing in the generation its late write began.
    let (a, b, new, _dirs) = late_writes_across_a_rotation(
        &[&[incr(5)], &[insert("after", "8"), incr(10)], &[incr(100)]],
        3,
    );
    for e in [&a, &b] {
        assert_eq!(value(e, new, "after"), 8);
        assert_eq!(value(e, new, "n"), 2 + 115);
    }
}

#[test]
fn a_document_that_names_itself_as_successor_is_not_carried_into_itself() {
    // What only a hostile peer sends: a rotation of a session to itself,
    // then a change concurrent with it. Carrying it would lock the
    // session's own slot again (this test would hang).
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(1_000_000);
    let (a, b) = (
        engine(dirs[0].path(), &clock, 64, 4),
        engine(dirs[1].path(), &clock, 64, 4),
    );
    let key = SessionId::random().doc_key();
    let (_, created) = a.create(key, &[insert("x", "1")]).unwrap();
    deliver(&b, &created);
    let chunks: Vec<u8> = created
        .iter()
        .flat_map(|p| p.chunk.iter().copied())
        .collect();
    let mut forged = crate::doc::SessionDoc::load(&chunks, automerge::ActorId::random()).unwrap();
    let heads = forged.heads();
    forged.set_successor(key).unwrap();
    forged.commit();
    let rotation = forged.save_after(&heads);
    let (_, late) = a.commit(key, &[insert("y", "2")]).unwrap();
    assert_ne!(
        b.apply_push(key, crate::store::LineageId::FIRST, &rotation),
        Applied::No
    );
    deliver(&b, &late);
    assert!(live(&b, key).is_none(), "the session is ended");
}
