//! Document laws on random operation sequences: replicas that each apply
//! their own operations converge to the same heads and values whatever the
//! merge order or grouping, agree with a sequential model wherever writes do
//! not conflict, sum counters exactly, and let invalidation win.
//!
//! `PROPTEST_CASES` raises the case count (default 256 here).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use automerge::ActorId;
use proptest::prelude::*;
use sessionmesh::doc::{ExpiryMode, SessionDoc, Status};
use sessionmesh::{NodeId, SessionId};

#[derive(Debug, Clone)]
enum Step {
    /// Insert into this replica's own key space (never conflicts).
    Own(u8, i64),
    RemoveOwn(u8),
    /// Insert into the shared key "s" (conflicts across replicas).
    Shared(i64),
    Incr(u8, i64),
    ClearOwn,
    Touch(u64),
    /// Change the timeouts (idle ms, absolute ms; 0 = none).
    Expiry(u64, u64),
    /// Rotate the id: record a successor, which ends this one.
    Cycle,
    Invalidate,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..4, any::<i64>()).prop_map(|(k, v)| Step::Own(k, v)),
        2 => (0u8..4).prop_map(Step::RemoveOwn),
        2 => any::<i64>().prop_map(Step::Shared),
        4 => (0u8..2, -1_000i64..1_000).prop_map(|(k, v)| Step::Incr(k, v)),
        1 => Just(Step::ClearOwn),
        1 => (0u64..10_000).prop_map(Step::Touch),
        1 => (0u64..20_000, 0u64..40_000).prop_map(|(i, a)| Step::Expiry(i, a)),
        1 => Just(Step::Cycle),
        1 => Just(Step::Invalidate),
    ]
}

struct Replica {
    doc: SessionDoc,
    node: NodeId,
    /// Sequential model of this replica's own keys.
    model: BTreeMap<String, i64>,
    increments: i64,
    /// The chunk of every change this replica committed, in order.
    chunks: Vec<Vec<u8>>,
}

fn run(r: usize, rep: &mut Replica, steps: &[Step]) {
    for s in steps {
        // (Reading the heads closes a pending change, so before the writes.)
        let before = rep.doc.heads();
        match s {
            Step::Own(k, v) => {
                let key = format!("r{r}_{k}");
                rep.doc.insert(&key, v).unwrap();
                rep.model.insert(key, *v);
            }
            Step::RemoveOwn(k) => {
                let key = format!("r{r}_{k}");
                rep.doc.remove(&key).unwrap();
                rep.model.remove(&key);
            }
            Step::Shared(v) => rep.doc.insert("s", v).unwrap(),
            Step::Incr(k, v) => {
                rep.doc.increment(&format!("c{k}"), *v, rep.node).unwrap();
                rep.increments += v;
            }
            Step::ClearOwn => {
                for key in rep.model.keys() {
                    rep.doc.remove(key).unwrap();
                }
                rep.model.clear();
            }
            Step::Touch(t) => rep.doc.touch(rep.node, *t).unwrap(),
            Step::Expiry(idle, absolute) => {
                rep.doc
                    .set_expiry(ExpiryMode::Inactivity, *idle, *absolute)
                    .unwrap();
            }
            Step::Cycle => rep
                .doc
                .set_successor(SessionId::random().doc_key())
                .unwrap(),
            Step::Invalidate => rep.doc.invalidate().unwrap(),
        }
        if rep.doc.commit().is_some() {
            rep.chunks.push(rep.doc.save_after(&before));
        }
    }
}

fn replicas(schedules: &[Vec<Step>]) -> Vec<Replica> {
    replicas_from(schedules).1
}

/// The replicas and the chunk of the base change they all start from.
fn replicas_from(schedules: &[Vec<Step>]) -> (Vec<u8>, Vec<Replica>) {
    let node = NodeId::random();
    let mut base = SessionDoc::new(ActorId::random(), node, 0, 0, 0);
    base.commit();
    let base_chunk = base.save_after(&[]);
    let reps = schedules
        .iter()
        .enumerate()
        .map(|(i, steps)| {
            let mut rep = Replica {
                doc: base.fork_as(ActorId::random()),
                node: NodeId::random(),
                model: BTreeMap::new(),
                increments: 0,
                chunks: Vec::new(),
            };
            run(i, &mut rep, steps);
            rep
        })
        .collect();
    (base_chunk, reps)
}

fn merge_in(order: &[usize], docs: &mut [SessionDoc]) -> SessionDoc {
    let mut acc = docs[order[0]].fork_as(ActorId::random());
    for &i in &order[1..] {
        acc.merge(&mut docs[i]).unwrap();
    }
    acc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn replicas_converge_and_match_the_model(
        schedules in prop::collection::vec(prop::collection::vec(step(), 0..10), 2..5),
        rotation in 0usize..5,
    ) {
        let reps = replicas(&schedules);
        let n = reps.len();
        let cycled = schedules.iter().flatten().any(|s| matches!(s, Step::Cycle));
        let invalidated = cycled || schedules.iter().flatten().any(|s| matches!(s, Step::Invalidate));
        let increments: i64 = reps.iter().map(|r| r.increments).sum();
        let models: Vec<_> = reps.iter().map(|r| r.model.clone()).collect();
        let mut docs: Vec<SessionDoc> = reps.into_iter().map(|r| r.doc).collect();

        // Commutativity and associativity: forward, backward, rotated, and a
        // two-level grouping all reach the same document.
        let forward: Vec<usize> = (0..n).collect();
        let backward: Vec<usize> = (0..n).rev().collect();
        let rotated: Vec<usize> = (0..n).map(|i| (i + rotation) % n).collect();
        let mut a = merge_in(&forward, &mut docs);
        let mut b = merge_in(&backward, &mut docs);
        let mut c = merge_in(&rotated, &mut docs);
        let (left, right) = docs.split_at_mut(n / 2);
        let mut l = merge_in(&(0..left.len()).collect::<Vec<_>>(), left);
        let mut r = merge_in(&(0..right.len()).collect::<Vec<_>>(), right);
        l.merge(&mut r).unwrap();
        let heads = a.heads();
        prop_assert_eq!(&heads, &b.heads());
        prop_assert_eq!(&heads, &c.heads());
        prop_assert_eq!(&heads, &l.heads());
        let values = a.attributes().unwrap();
        prop_assert_eq!(&values, &b.attributes().unwrap());
        prop_assert_eq!(&values, &c.attributes().unwrap());
        prop_assert_eq!(&values, &l.attributes().unwrap());
        prop_assert_eq!(a.status(0), l.status(0));
        // The cached summary answers exactly as the document does.
        let summary = a.summary().unwrap();
        for t in [0, 5_000, 20_000] {
            prop_assert_eq!(summary.status(t), a.status(t));
        }
        prop_assert_eq!(&summary.attributes, &values);

        // Idempotence.
        let mut again = a.fork_as(ActorId::random());
        a.merge(&mut b).unwrap();
        a.merge(&mut again).unwrap();
        prop_assert_eq!(&a.heads(), &heads);

        if cycled {
            // A rotated id is dead, whatever was written concurrently.
            prop_assert!(matches!(a.status(0), Status::Rotated(_)), "{:?}", a.status(0));
        } else if invalidated {
            // Invalidation wins over everything written concurrently.
            prop_assert_eq!(a.status(0), Status::Invalidated);
        } else {
            // Non-conflicting keys equal the sequential model.
            for (i, model) in models.iter().enumerate() {
                for k in 0..4 {
                    let key = format!("r{i}_{k}");
                    let got = values.get(&key).and_then(serde_json::Value::as_i64);
                    prop_assert_eq!(got, model.get(&key).copied(), "{}", key);
                }
            }
            // Counters are the exact sum of every increment.
            let counted: i64 = (0..2).map(|k| values.get(&format!("c{k}")).and_then(serde_json::Value::as_i64).unwrap_or(0)).sum();
            prop_assert_eq!(counted, increments);
            // Same-key conflicts: every replica sees the same winner, and the
            // conflict set lists it first.
            if let Some(winner) = values.get("s") {
                prop_assert_eq!(&a.conflicts("s").unwrap()[0], winner);
            }
        }
    }

    /// What a replica does on every push: apply one change and read again
    /// only the keys it wrote. The summary kept that way equals one read in
    /// full after every change, whatever the interleaving of the writers.
    #[test]
    fn a_summary_refreshed_change_by_change_equals_a_full_read(
        schedules in prop::collection::vec(prop::collection::vec(step(), 0..10), 1..4),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 40),
    ) {
        let (base, reps) = replicas_from(&schedules);
        let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> =
            reps.into_iter().map(|r| r.chunks.into()).collect();
        let mut doc = SessionDoc::empty(ActorId::random());
        let mut summary = doc.summary().unwrap();
        let mut pending = vec![base];
        let mut picks = picks.into_iter();
        loop {
            let Some(chunk) = pending.pop() else {
                let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
                if live.is_empty() {
                    break;
                }
                let i = picks.next().map_or(0, |p| p.index(live.len()));
                pending.push(queues[live[i]].pop_front().unwrap());
                continue;
            };
            prop_assert!(doc.apply_change_chunk(&chunk).unwrap(), "each change applies as is");
            let written = sessionmesh::doc::written_keys(&chunk).unwrap();
            summary.refresh(&mut doc, written.iter().map(String::as_str)).unwrap();
            prop_assert_eq!(&summary, &doc.summary().unwrap());
        }
    }

    #[test]
    fn save_load_round_trips_exactly(steps in prop::collection::vec(step(), 0..20)) {
        let mut reps = replicas(&[steps]);
        let doc = &mut reps[0].doc;
        let bytes = doc.save();
        let mut loaded = SessionDoc::load(&bytes, ActorId::random()).unwrap();
        prop_assert_eq!(loaded.heads(), doc.heads());
        prop_assert_eq!(loaded.attributes().unwrap(), doc.attributes().unwrap());
        prop_assert_eq!(loaded.status(0), doc.status(0));
    }
}
