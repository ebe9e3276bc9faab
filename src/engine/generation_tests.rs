//! Generations through the engine, on real RocksDB: a session written many
//! times stays small and keeps every write across restarts; replicas that
//! exchange their pushes in any order, late or concurrently switching, end
//! on the same generation with every write once.

use super::replica_tests::{config, insert, live};
use super::*;
use crate::doc::Op;
use crate::{DocKey, ManualClock, SessionId};

pub(super) fn incr(by: i64) -> Op {
    Op::Increment {
        key: "n".into(),
        by,
    }
}

/// An engine whose generations end every `every` changes, keeping `kept`.
pub(super) fn engine(dir: &std::path::Path, clock: &ManualClock, every: u32, kept: u32) -> Engine {
    let config = config(dir, clock)
        .with_generation_changes(every)
        .with_generations_kept(kept);
    Engine::open(config, None).unwrap()
}

/// Applies `pushes` to `to`, each answered applied.
pub(super) fn deliver(to: &Engine, pushes: &[Push]) {
    for p in pushes {
        let applied = to.apply_push(p.key, p.lineage, &p.chunk);
        assert_ne!(applied, Applied::No, "push refused: gen {}", p.lineage.gen);
    }
}

/// Syncs lineage `id` of `key` between `a` and `b` until both are quiet.
fn sync_lineage(a: &Engine, b: &Engine, key: DocKey, id: crate::store::LineageId) {
    let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
    let mut msg = match a.sync_step(key, id, &mut sa, None).unwrap() {
        Step::Send(m) => Some(m),
        _ => None,
    };
    let mut turn_b = true;
    for _ in 0..32 {
        let (engine, state) = if turn_b { (b, &mut sb) } else { (a, &mut sa) };
        let next = match engine.sync_step(key, id, state, msg.as_deref()) {
            Ok(Step::Send(m)) => Some(m),
            _ => None,
        };
        if next.is_none() && msg.is_none() {
            return;
        }
        msg = next;
        turn_b = !turn_b;
    }
}

/// What a full exchange does: every lineage either side holds, synced,
/// until nothing changes.
pub(super) fn exchange(a: &Engine, b: &Engine, key: DocKey) {
    let ids = |e: &Engine| match e.lineages(key).unwrap() {
        Held::Lineages { current, others } => [current]
            .into_iter()
            .chain(others)
            .map(|l| (l.id, l.heads))
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    for _ in 0..8 {
        let (ia, ib) = (ids(a), ids(b));
        if ia == ib {
            return;
        }
        let all: std::collections::BTreeSet<_> = ia.iter().chain(&ib).map(|(id, _)| *id).collect();
        for id in all {
            sync_lineage(a, b, key, id);
        }
    }
}

pub(super) fn value(engine: &Engine, key: DocKey, name: &str) -> serde_json::Value {
    live(engine, key).unwrap().attributes[name].clone()
}

#[test]
fn a_session_written_many_times_stays_small_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let key = SessionId::random().doc_key();
    {
        let e = engine(dir.path(), &clock, 8, 2);
        e.create(key, &[insert("first", "1")]).unwrap();
        for i in 0..300 {
            e.commit(key, &[incr(1), insert("last", &i.to_string())])
                .unwrap();
            let (_, changes, others) = e.generation(key).unwrap();
            assert!(changes <= 8, "{changes} changes in one generation");
            assert!(others <= 2, "{others} lineages kept");
        }
        let (gen, _, _) = e.generation(key).unwrap();
        assert!(gen >= 300 / 8, "only {gen} generations");
        assert_eq!(value(&e, key, "n"), 300);
        e.close(true).unwrap();
    }
    let e = engine(dir.path(), &clock, 8, 2);
    assert_eq!(value(&e, key, "n"), 300);
    assert_eq!(value(&e, key, "last"), 299);
    assert_eq!(value(&e, key, "first"), 1);
    e.commit(key, &[incr(1)]).unwrap();
    assert_eq!(value(&e, key, "n"), 301);
    e.close(true).unwrap();
}

#[test]
fn a_replica_following_pushes_switches_with_the_writer() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clock = ManualClock::new(1_000_000);
    let (a, b) = (
        engine(da.path(), &clock, 4, 2),
        engine(db.path(), &clock, 4, 2),
    );
    let key = SessionId::random().doc_key();
    let (_, pushes) = a.create(key, &[]).unwrap();
    deliver(&b, &pushes);
    for _ in 0..50 {
        let (_, pushes) = a.commit(key, &[incr(2)]).unwrap();
        deliver(&b, &pushes);
    }
    assert_eq!(value(&b, key, "n"), 100);
    assert_eq!(a.generation(key).unwrap().0, b.generation(key).unwrap().0);
    assert_eq!(
        a.digest(&[], None, 10).unwrap(),
        b.digest(&[], None, 10).unwrap()
    );
}

#[test]
fn a_change_that_arrives_after_switches_is_carried_once() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clock = ManualClock::new(1_000_000);
    let (a, b) = (
        engine(da.path(), &clock, 4, 4),
        engine(db.path(), &clock, 4, 4),
    );
    let key = SessionId::random().doc_key();
    let (_, pushes) = a.create(key, &[]).unwrap();
    deliver(&b, &pushes);
    // B writes while cut off; A moves two generations on meanwhile.
    let (_, late) = b.commit(key, &[incr(10), insert("from_b", "1")]).unwrap();
    let mut from_a = Vec::new();
    for _ in 0..8 {
        let (_, pushes) = a.commit(key, &[incr(1)]).unwrap();
        from_a.extend(pushes);
    }
    assert!(a.generation(key).unwrap().0 >= 2);
    // Then everything arrives, in both directions.
    deliver(&a, &late);
    deliver(&b, &from_a);
    for e in [&a, &b] {
        assert_eq!(value(e, key, "n"), 18);
        assert_eq!(value(e, key, "from_b"), 1);
    }
    assert_eq!(a.generation(key).unwrap().0, b.generation(key).unwrap().0);
    assert_eq!(
        a.digest(&[], None, 10).unwrap(),
        b.digest(&[], None, 10).unwrap()
    );
}

#[test]
fn concurrent_switches_converge_on_one_generation_with_every_write_once() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clock = ManualClock::new(1_000_000);
    let (a, b) = (
        engine(da.path(), &clock, 3, 8),
        engine(db.path(), &clock, 3, 8),
    );
    let key = SessionId::random().doc_key();
    let (_, pushes) = a.create(key, &[]).unwrap();
    deliver(&b, &pushes);
    // Both sides switch several times, apart.
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    for i in 0..7 {
        let (_, p) = a
            .commit(key, &[incr(1), insert(&format!("a{i}"), "1")])
            .unwrap();
        to_b.extend(p);
        let (_, p) = b
            .commit(key, &[incr(100), insert(&format!("b{i}"), "1")])
            .unwrap();
        to_a.extend(p);
    }
    // Pushes alone cannot place lineages built on a mark the receiver
    // never saw win: a push waiting for its base is answered "missing
    // dependencies", and the sender syncs.
    deliver(&a, &to_a);
    deliver(&b, &to_b);
    exchange(&a, &b, key);
    for e in [&a, &b] {
        let view = live(e, key).unwrap();
        assert_eq!(view.attributes["n"], 707, "{:?}", view.attributes);
        for i in 0..7 {
            assert!(view.attributes.contains_key(&format!("a{i}")));
            assert!(view.attributes.contains_key(&format!("b{i}")));
        }
    }
    assert_eq!(a.generation(key).unwrap().0, b.generation(key).unwrap().0);
    assert_eq!(
        live(&a, key).unwrap().attributes,
        live(&b, key).unwrap().attributes
    );
}
