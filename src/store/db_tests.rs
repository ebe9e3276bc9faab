//! The RocksDB layout on a temp dir: every write, read back.

use super::*;
use crate::id::SessionId;
use crate::store::ChainWrite;

const F: LineageId = LineageId::FIRST;

fn lineage(gen: u32, b: u8) -> LineageId {
    LineageId {
        gen,
        base: Some([b; 32]),
    }
}

fn bytes_of(db: &Db, key: DocKey) -> (Vec<u8>, Record, Vec<Lineage>) {
    match db.load(key).unwrap() {
        Stored::Doc {
            bytes,
            record,
            others,
        } => (bytes, record, others),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_chain_step_moves_the_current_lineage_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Durability::Process).unwrap();
    let key = SessionId::random().doc_key();
    let other = SessionId::random().doc_key();
    db.append(other, b"other", None, F, 100, 9).unwrap();
    let r1 = db.append(key, b"g0a", None, F, 100, 1).unwrap();
    let r2 = db.append(key, b"g0b", Some(r1), F, 100, 2).unwrap();
    // Switch to generation 1: generation 0 stays, as it was.
    let write = ChainWrite {
        current: lineage(1, 1),
        current_doc: b"G1",
        heads: 3,
        deadline: 200,
        saved: Vec::new(),
        kept: vec![(F, true)],
    };
    let (r3, list) = db.write_chain(key, &write, Some(r2), &[]).unwrap();
    assert_eq!((r3.lineage, r3.heads, r3.deadline), (lineage(1, 1), 3, 200));
    assert!(r3.others);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].record, r2);
    let (bytes, record, others) = bytes_of(&db, key);
    assert_eq!(
        (bytes.as_slice(), record, others.clone()),
        (&b"G1"[..], r3, list.clone())
    );
    assert_eq!(db.load_lineage(key, &others[0]).unwrap(), b"g0ag0b");
    // Appends go to the current lineage's own log.
    let r4 = db
        .append(key, b"+", Some(r3), lineage(1, 1), 300, 4)
        .unwrap();
    assert_eq!(bytes_of(&db, key).0, b"G1+");
    assert!(db.append(key, b"x", Some(r4), F, 300, 4).is_err());
    // A late change to generation 0, carried into 1 and a concurrent
    // lineage of 1 saved; then generation 0 retired.
    let write = ChainWrite {
        current: lineage(1, 1),
        current_doc: b"G1'",
        heads: 5,
        deadline: 300,
        saved: vec![
            (F, true, 6, b"g0'".to_vec()),
            (lineage(1, 2), false, 7, b"L".to_vec()),
        ],
        kept: Vec::new(),
    };
    let (r5, list) = db.write_chain(key, &write, Some(r4), &others).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(bytes_of(&db, key).0, b"G1'");
    assert_eq!(db.load_lineage(key, &list[0]).unwrap(), b"g0'");
    assert_eq!(db.load_lineage(key, &list[1]).unwrap(), b"L");
    // The list as read back names the same documents.
    let (_, _, reread) = bytes_of(&db, key);
    assert_eq!(reread, list);
    assert_eq!(db.load_lineage(key, &reread[1]).unwrap(), b"L");
    let write = ChainWrite {
        current: lineage(2, 1),
        current_doc: b"G2",
        heads: 8,
        deadline: 400,
        saved: Vec::new(),
        kept: vec![(lineage(1, 1), true)],
    };
    let (r6, list2) = db.write_chain(key, &write, Some(r5), &list).unwrap();
    assert_eq!(list2.len(), 1);
    assert_eq!(db.load_lineage(key, &list2[0]).unwrap(), b"G1'");
    assert!(
        db.load_lineage(key, &list[0]).is_err(),
        "generation 0 is gone"
    );
    // The expiry index holds the newest deadline only; a tombstone takes
    // every lineage, and the other session is untouched.
    assert_eq!(db.due(1_000, 10).unwrap().len(), 2);
    db.tombstone(key, Some(r6), 500, 5_000, false).unwrap();
    assert!(matches!(
        db.load(key).unwrap(),
        Stored::Tombstone { ended: false }
    ));
    assert!(db.load_lineage(key, &list2[0]).is_err());
    assert_eq!(bytes_of(&db, other).0, b"other");
    assert_eq!(db.count().unwrap(), 1);
}

#[test]
fn append_snapshot_tombstone_forget() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Durability::Process).unwrap();
    let key = SessionId::random().doc_key();
    assert!(matches!(db.load(key).unwrap(), Stored::Missing));
    let r1 = db.append(key, b"one", None, F, 100, 1).unwrap();
    let r2 = db.append(key, b"two", Some(r1), F, 200, 2).unwrap();
    assert_eq!(r2.next_seq, 2);
    match db.load(key).unwrap() {
        Stored::Doc { bytes, record, .. } => {
            assert_eq!(bytes, b"onetwo");
            assert_eq!(record, r2);
        }
        other => panic!("{other:?}"),
    }
    // The index holds only the newest deadline.
    assert_eq!(db.due(1_000, 10).unwrap().len(), 1);
    // A snapshot replaces the log and moves the deadline in one write.
    let r3 = db.snapshot(key, b"SNAP", Some(r2), F, 250, 3).unwrap();
    assert_eq!((r3.next_seq, r3.log_count, r3.heads), (2, 0, 3));
    assert_eq!(db.due(1_000, 10).unwrap()[0].at, 250);
    let r4 = db.append(key, b"three", Some(r3), F, 300, 4).unwrap();
    match db.load(key).unwrap() {
        Stored::Doc { bytes, .. } => assert_eq!(bytes, b"SNAPthree"),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.count().unwrap(), 1);
    db.tombstone(key, Some(r4), 400, 5_000, true).unwrap();
    assert!(matches!(
        db.load(key).unwrap(),
        Stored::Tombstone { ended: true }
    ));
    assert_eq!(db.count().unwrap(), 0);
    let due = db.due(10_000, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].kind, DueKind::Forget);
    db.forget(due[0]).unwrap();
    assert!(matches!(db.load(key).unwrap(), Stored::Missing));
    assert!(db.due(u64::MAX, 10).unwrap().is_empty());
}

proptest::proptest! {
    #[test]
    fn index_keys_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..40)) {
        if let Ok(due) = parse_exp_key(&bytes) {
            proptest::prop_assert_eq!(&exp_key(due.at, due.kind, due.key)[..], &bytes[..]);
        }
    }
}

#[test]
fn node_id_is_stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = Db::open(dir.path(), Durability::Fsync)
        .unwrap()
        .node_id()
        .unwrap();
    let again = Db::open(dir.path(), Durability::Fsync)
        .unwrap()
        .node_id()
        .unwrap();
    assert_eq!(first, again);
}
