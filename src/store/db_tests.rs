//! The RocksDB layout on a temp dir: every write, read back.

use super::*;
use crate::id::SessionId;

#[test]
fn append_snapshot_tombstone_forget() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Durability::Process).unwrap();
    let key = SessionId::random().doc_key();
    assert!(matches!(db.load(key).unwrap(), Stored::Missing));
    let r1 = db.append(key, b"one", None, 100, 1).unwrap();
    let r2 = db.append(key, b"two", Some(r1), 200, 2).unwrap();
    assert_eq!(r2.next_seq, 2);
    match db.load(key).unwrap() {
        Stored::Doc { bytes, record } => {
            assert_eq!(bytes, b"onetwo");
            assert_eq!(record, r2);
        }
        other => panic!("{other:?}"),
    }
    // The index holds only the newest deadline.
    assert_eq!(db.due(1_000, 10).unwrap().len(), 1);
    // A snapshot replaces the log and moves the deadline in one write.
    let r3 = db.snapshot(key, b"SNAP", Some(r2), 250, 3).unwrap();
    assert_eq!((r3.next_seq, r3.log_count, r3.heads), (2, 0, 3));
    assert_eq!(db.due(1_000, 10).unwrap()[0].at, 250);
    let r4 = db.append(key, b"three", Some(r3), 300, 4).unwrap();
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
