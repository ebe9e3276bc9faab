//! Merge rules, each shown on forked documents.

use automerge::ActorId;

use super::*;
use crate::id::{NodeId, SessionId};

const HOUR: u64 = 3_600_000;

fn base() -> (SessionDoc, NodeId) {
    let node = NodeId::random();
    let mut doc = SessionDoc::new(ActorId::random(), node, 1_000, HOUR, 10 * HOUR);
    doc.insert("seed", &1).unwrap();
    doc.commit();
    (doc, node)
}

/// Two replicas of one session, written by different nodes.
fn pair() -> (SessionDoc, NodeId, SessionDoc, NodeId) {
    let (mut a, na) = base();
    let b = a.fork_as(ActorId::random());
    (a, na, b, NodeId::random())
}

fn merged(a: &mut SessionDoc, b: &mut SessionDoc) {
    a.merge(b).unwrap();
    b.merge(a).unwrap();
    assert_eq!(a.heads(), b.heads());
}

#[test]
fn different_keys_merge() {
    let (mut a, _, mut b, _) = pair();
    a.insert("cart", &vec!["apple"]).unwrap();
    a.commit();
    b.insert("user", &"ada").unwrap();
    b.commit();
    merged(&mut a, &mut b);
    for d in [&a, &b] {
        assert_eq!(
            d.get::<Vec<String>>("cart").unwrap(),
            Some(vec!["apple".to_owned()])
        );
        assert_eq!(d.get::<String>("user").unwrap(), Some("ada".to_owned()));
    }
}

#[test]
fn same_key_has_one_deterministic_winner_and_conflicts_are_readable() {
    let (mut a, _, mut b, _) = pair();
    a.insert("theme", &"dark").unwrap();
    a.commit();
    b.insert("theme", &"light").unwrap();
    b.commit();
    merged(&mut a, &mut b);
    let wa = a.get::<String>("theme").unwrap();
    assert_eq!(wa, b.get::<String>("theme").unwrap());
    let conflicts = a.conflicts("theme").unwrap();
    assert_eq!(conflicts.len(), 2);
    assert_eq!(conflicts[0], serde_json::json!(wa.unwrap()));
    // A later write that has seen both resolves the conflict.
    a.insert("theme", &"blue").unwrap();
    a.commit();
    merged(&mut a, &mut b);
    assert_eq!(
        b.conflicts("theme").unwrap(),
        vec![serde_json::json!("blue")]
    );
}

#[test]
fn concurrent_increments_add_up_even_when_both_create_the_counter() {
    let (mut a, na, mut b, nb) = pair();
    assert_eq!(a.increment("hits", 3, na).unwrap(), 3);
    a.commit();
    assert_eq!(b.increment("hits", 5, nb).unwrap(), 5);
    b.commit();
    merged(&mut a, &mut b);
    assert_eq!(a.get::<i64>("hits").unwrap(), Some(8));
    // Later increments on both sides keep adding exactly.
    a.increment("hits", 10, na).unwrap();
    a.commit();
    b.increment("hits", -1, nb).unwrap();
    b.commit();
    merged(&mut a, &mut b);
    assert_eq!(a.get::<i64>("hits").unwrap(), Some(17));
    assert_eq!(b.attributes().unwrap()["hits"], serde_json::json!(17));
}

#[test]
fn increment_folds_an_integer_and_refuses_other_values() {
    let (mut a, na) = base();
    a.insert("n", &40).unwrap();
    assert_eq!(a.increment("n", 2, na).unwrap(), 42);
    a.insert("name", &"x").unwrap();
    assert!(matches!(
        a.increment("name", 1, na),
        Err(Error::NotACounter { .. })
    ));
    a.insert("big", &i64::MAX).unwrap();
    assert!(matches!(
        a.increment("big", 1, na),
        Err(Error::Overflow { .. })
    ));
}

#[test]
fn insert_and_remove_replace_a_counter() {
    let (mut a, na) = base();
    a.increment("n", 5, na).unwrap();
    a.insert("n", &"text").unwrap();
    assert_eq!(a.get::<String>("n").unwrap(), Some("text".to_owned()));
    a.increment("m", 5, na).unwrap();
    a.remove("m").unwrap();
    assert_eq!(a.get_json("m").unwrap(), None);
}

#[test]
fn prefix_keys_do_not_share_counters() {
    let (mut a, na) = base();
    a.increment("a", 1, na).unwrap();
    a.increment("a/b", 7, na).unwrap();
    assert_eq!(a.get::<i64>("a").unwrap(), Some(1));
    assert_eq!(a.get::<i64>("a/b").unwrap(), Some(7));
}

#[test]
fn invalidation_wins_over_concurrent_and_later_writes() {
    let (mut a, _, mut b, nb) = pair();
    a.invalidate().unwrap();
    a.commit();
    b.insert("cart", &["x"]).unwrap();
    b.increment("hits", 1, nb).unwrap();
    b.touch(nb, 5_000).unwrap();
    b.commit();
    merged(&mut a, &mut b);
    assert_eq!(a.status(2_000), Status::Invalidated);
    // A write that arrives after the invalidation was merged changes nothing.
    b.insert("late", &true).unwrap();
    b.commit();
    merged(&mut a, &mut b);
    assert_eq!(a.status(2_000), Status::Invalidated);
    assert_eq!(b.status(2_000), Status::Invalidated);
}

#[test]
fn rotation_records_the_successor_and_kills_the_old_id() {
    let (mut a, _) = base();
    let next = SessionId::random().doc_key();
    a.set_successor(next).unwrap();
    a.commit();
    assert_eq!(a.status(2_000), Status::Rotated(next));
    assert!(a.attributes().unwrap().is_empty());
}

#[test]
fn last_access_is_the_max_over_nodes() {
    let (mut a, na, mut b, nb) = pair();
    a.touch(na, 50_000).unwrap();
    a.commit();
    b.touch(nb, 90_000).unwrap();
    b.commit();
    merged(&mut a, &mut b);
    assert_eq!(a.last_access(), Some(90_000));
    // An older touch never lowers a node's register.
    a.touch(na, 10_000).unwrap();
    assert_eq!(a.last_access(), Some(90_000));
}

#[test]
fn idle_and_absolute_expiry() {
    let node = NodeId::random();
    let mut doc = SessionDoc::new(ActorId::random(), node, 0, 1_000, 5_000);
    doc.commit();
    assert_eq!(doc.status(1_000), Status::Live);
    assert_eq!(doc.status(1_001), Status::Expired);
    doc.touch(node, 900).unwrap();
    assert_eq!(doc.status(1_800), Status::Live);
    for t in (1_000..5_000).step_by(500) {
        doc.touch(node, t).unwrap();
    }
    assert_eq!(doc.status(5_000), Status::Live);
    // Active, but past the absolute deadline.
    doc.touch(node, 5_001).unwrap();
    assert_eq!(doc.status(5_001), Status::Expired);
    // No timeouts at all.
    doc.set_expiry(ExpiryMode::SessionEnd, 0, 0).unwrap();
    assert_eq!(doc.status(u64::MAX), Status::Live);
}

#[test]
fn an_empty_replica_holds_no_session() {
    let doc = SessionDoc::empty(ActorId::random());
    assert_eq!(doc.status(0), Status::Empty);
}

#[test]
fn save_load_round_trip_and_incremental_chunks() {
    let (mut a, na) = base();
    let snapshot = a.save();
    let heads = a.heads();
    a.insert("k", &"v").unwrap();
    a.increment("c", 2, na).unwrap();
    a.commit();
    let chunk = a.save_after(&heads);
    let mut b = SessionDoc::load(&[snapshot, chunk].concat(), ActorId::random()).unwrap();
    assert_eq!(b.attributes().unwrap(), a.attributes().unwrap());
    assert_eq!(b.heads(), a.heads());
    assert!(SessionDoc::load(b"not automerge", ActorId::random()).is_err());
}

#[test]
fn state_size_counts_keys_and_values() {
    let (mut a, _) = base();
    let before = a.state_size();
    a.insert("blob", &"x".repeat(1_000)).unwrap();
    assert!(a.state_size() >= before + 1_000);
}

#[test]
fn unserializable_values_are_errors() {
    let (mut a, _) = base();
    let mut m = std::collections::HashMap::new();
    m.insert(vec![1u8], 1);
    assert!(matches!(a.insert("bad", &m), Err(Error::Serialize(_))));
    assert_eq!(a.get_json("bad").unwrap(), None);
}

#[test]
fn a_commit_chunk_applies_on_a_replica_and_garbage_does_not() {
    let (mut a, na, mut b, _) = pair();
    let heads = a.heads();
    a.increment("n", 2, na).unwrap();
    a.commit();
    let chunk = a.save_after(&heads);
    b.apply_change_chunk(&chunk).unwrap();
    assert_eq!(b.get::<i64>("n").unwrap(), Some(2));
    assert!(!b.has_missing_deps());
    // A duplicate is harmless; garbage is an error and changes nothing.
    b.apply_change_chunk(&chunk).unwrap();
    let before = b.heads();
    for junk in [&b""[..], b"\x85\x6f\x4a\x83", &[0xffu8; 64][..]] {
        assert!(b.apply_change_chunk(junk).is_err());
    }
    assert_eq!(b.heads(), before);
    assert_eq!(a.heads_hash(), b.heads_hash());
}

/// Runs the sync protocol between `a` and `b` (fresh states, `a` first)
/// until both are quiet; returns every message sent, in order.
fn sync_exchange(a: &mut SessionDoc, b: &mut SessionDoc) -> Vec<automerge::sync::Message> {
    let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
    let mut sent = Vec::new();
    for _ in 0..10 {
        let mut quiet = true;
        if let Some(m) = a.generate_sync_message(&mut sa) {
            b.receive_sync_message(&mut sb, &m, usize::MAX).unwrap();
            sent.push(automerge::sync::Message::decode(&m).unwrap());
            quiet = false;
        }
        if let Some(m) = b.generate_sync_message(&mut sb) {
            a.receive_sync_message(&mut sa, &m, usize::MAX).unwrap();
            sent.push(automerge::sync::Message::decode(&m).unwrap());
            quiet = false;
        }
        if quiet {
            break;
        }
    }
    assert_eq!(a.heads(), b.heads(), "converged");
    sent
}

#[test]
fn sync_sends_changes_to_a_peer_that_has_some_and_the_document_to_one_with_none_and_stops() {
    // Diverged by one change each: more than a third of either side, where
    // automerge would send its whole document.
    let (mut a, _, mut b, _) = pair();
    a.insert("left", &1).unwrap();
    a.commit();
    b.insert("right", &2).unwrap();
    b.commit();
    let sent = sync_exchange(&mut a, &mut b);
    // a's heads, b's change, a's change (a bloom filter false positive can
    // add a round); nobody then announces heads the other already holds.
    assert!(
        !sent.last().unwrap().changes.is_empty(),
        "the exchange ends with a change, not a closing announcement"
    );
    let chunks: Vec<&[u8]> = sent.iter().flat_map(|m| m.changes.iter()).collect();
    assert_eq!(chunks.len(), 2, "one change each way");
    for c in chunks {
        assert!(change_header(c).is_some(), "a change chunk, not a document");
    }
    assert_eq!(a.get_json("right").unwrap(), Some(2.into()));
    assert_eq!(b.get_json("left").unwrap(), Some(1.into()));

    // A replica with nothing gets the whole document in one chunk.
    let mut empty = SessionDoc::empty(ActorId::random());
    let sent = sync_exchange(&mut empty, &mut a);
    assert_eq!(sent.len(), 2, "empty heads, the document");
    let chunks: Vec<&[u8]> = sent.iter().flat_map(|m| m.changes.iter()).collect();
    assert_eq!(chunks.len(), 1);
    assert!(change_header(chunks[0]).is_none(), "a document chunk");
    assert_eq!(empty.get_json("left").unwrap(), Some(1.into()));
}

#[test]
fn sync_leaves_automerges_whole_document_message_to_large_documents() {
    // 200 changes the peer lacks, out of 201: past the size where changes
    // one by one cost less than the document.
    let (mut a, _, mut b, _) = pair();
    for i in 0..200 {
        a.insert("n", &i).unwrap();
        a.commit();
    }
    let sent = sync_exchange(&mut b, &mut a);
    let chunks: Vec<&[u8]> = sent.iter().flat_map(|m| m.changes.iter()).collect();
    assert_eq!(chunks.len(), 1);
    assert!(change_header(chunks[0]).is_none(), "a document chunk");
    assert_eq!(b.get_json("n").unwrap(), Some(199.into()));
}

/// One node's counter slot created twice, on two replicas that do not see
/// each other's (what a generation's copy on its way makes possible):
/// both increments count. At one key automerge would keep one value.
#[test]
fn one_node_creating_its_slot_twice_concurrently_loses_neither_increment() {
    let (mut a, node) = base();
    let mut b = a.fork_as(ActorId::random());
    a.increment("n", 2, node).unwrap();
    a.commit();
    b.increment("n", 3, node).unwrap();
    b.commit();
    merged(&mut a, &mut b);
    for d in [&a, &b] {
        assert_eq!(d.get_json("n").unwrap(), Some(serde_json::json!(5)));
        assert_eq!(d.attributes().unwrap()["n"], 5);
    }
    // Further increments go to one of the node's slots, and count once.
    a.increment("n", 1, node).unwrap();
    a.commit();
    merged(&mut a, &mut b);
    assert_eq!(b.attributes().unwrap()["n"], 6);
}

/// automerge writes a value equal to the current winner of a conflict as
/// deletions of the losing values only. Carried to the next generation or
/// lifted to the one before, key by key, such a change would delete the key
/// outright: a logout repeated after two concurrent ones lost them all. A
/// write over a conflict is a plain overwrite.
#[test]
fn writing_the_winning_value_over_a_conflict_is_an_overwrite_not_a_deletion() {
    let (mut a, _, mut b, _) = pair();
    a.invalidate().unwrap();
    a.commit();
    b.invalidate().unwrap();
    b.commit();
    a.merge(&mut b).unwrap();
    a.insert("x", &1).unwrap();
    a.commit();
    b.insert("x", &2).unwrap();
    b.commit();
    a.merge(&mut b).unwrap();
    // Both keys now hold two values; write the winner again.
    let heads = a.heads();
    let winner = a.get_json("x").unwrap().unwrap();
    a.invalidate().unwrap();
    a.insert("x", &winner).unwrap();
    a.commit();
    let chunk = a.save_after(&heads);
    let change = automerge::Change::from_bytes(chunk).unwrap();
    for op in change.decode().operations {
        if let automerge::legacy::Key::Map(k) = &op.key {
            let k = k.to_string();
            if k == "meta/invalidated" || k == "data/x" {
                let puts = matches!(op.action, automerge::legacy::OpType::Put(_));
                let deletes_all =
                    matches!(op.action, automerge::legacy::OpType::Delete) && op.pred.len() == 2;
                assert!(
                    puts || deletes_all,
                    "{k}: {:?} pred {:?}",
                    op.action,
                    op.pred
                );
            }
        }
    }
}
