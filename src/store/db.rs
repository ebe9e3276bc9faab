use std::path::Path;

use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use super::db_principal::PrincipalKey;
use super::files::write_private_file;
use super::lineage::{after, log_key, Lineage, LineageId};
use super::storage::{ChainWrite, Due, DueKind, Storage, Stored};
use super::{Durability, Error, Record};
use crate::clock::Millis;
use crate::id::{DocKey, NodeId, ID_LEN};

pub(super) const SNAP: &str = "snap";
pub(super) const LOG: &str = "log";
pub(super) const META: &str = "meta";
pub(super) const EXP: &str = "exp";
pub(super) const TOMB: &str = "tomb";
/// Snapshots and logs of every lineage but generation 0's.
pub(super) const GSNAP: &str = "gsnap";
pub(super) const GLOG: &str = "glog";
/// Per session: its lineages other than the current one.
pub(super) const LINEAGES: &str = "lineages";
/// Sessions whose stored bytes did not load, moved aside whole.
pub(super) const QUAR: &str = "quarantine";
/// Principal hash ‖ doc key: the sessions that may belong to a principal.
pub(super) const PRINCIPALS: &str = "principals";
const NODE_ID: &[u8] = b"node_id";
/// The file, in the data directory, that holds the node's libp2p identity.
pub(crate) const IDENTITY_FILE: &str = "p2p-identity";
/// Where earlier versions kept the libp2p identity (now a file).
const LEGACY_IDENTITY: &[u8] = b"p2p_keypair";

/// The RocksDB database and the layout of the module docs.
pub(crate) struct Db {
    pub(super) db: DB,
    pub(super) write_opts: WriteOptions,
    pub(super) durability: Durability,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.db.path())
            .field("durability", &self.durability)
            .finish()
    }
}

impl Db {
    pub(super) fn cf(&self, name: &str) -> Result<&ColumnFamily, Error> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("column family {name} missing")))
    }

    /// This node's id, created on first open.
    pub(crate) fn node_id(&self) -> Result<NodeId, Error> {
        if let Some(bytes) = self.db.get(NODE_ID)? {
            return NodeId::from_slice(&bytes).ok_or_else(|| Error::Corrupt("node id".into()));
        }
        let id = NodeId::random();
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_opt(NODE_ID, id.as_bytes(), &wo)?;
        Ok(id)
    }

    /// Moves an identity kept in the database by earlier versions to the
    /// file `to`, unless that file exists already, so an upgraded node keeps
    /// its peer id. The bytes are moved as they are; the key is deleted once
    /// the file is durable.
    pub(crate) fn move_legacy_identity(&self, to: &Path) -> Result<(), Error> {
        let Some(bytes) = self.db.get(LEGACY_IDENTITY)? else {
            return Ok(());
        };
        if !to.exists() {
            write_private_file(to, &bytes)
                .map_err(|e| Error::Corrupt(format!("moving the identity to a file: {e}")))?;
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.delete_opt(LEGACY_IDENTITY, &wo)?;
        Ok(())
    }

    /// Stores an identity the way earlier versions did (for the upgrade test).
    #[cfg(test)]
    pub(crate) fn put_legacy_identity(&self, bytes: &[u8]) {
        self.db.put(LEGACY_IDENTITY, bytes).unwrap();
    }

    pub(super) fn move_deadline(
        &self,
        wb: &mut WriteBatch,
        key: DocKey,
        old: Option<Millis>,
        new: Millis,
    ) -> Result<(), Error> {
        let exp = self.cf(EXP)?;
        if let Some(old) = old {
            if old == new {
                return Ok(());
            }
            wb.delete_cf(exp, exp_key(old, DueKind::Expire, key));
        }
        wb.put_cf(exp, exp_key(new, DueKind::Expire, key), []);
        Ok(())
    }
}

impl Storage for Db {
    fn index_principal(&self, principal: &PrincipalKey, key: DocKey) -> Result<(), Error> {
        self.put_principal(principal, key)
    }

    fn principal_keys(&self, principal: &PrincipalKey) -> Result<Vec<DocKey>, Error> {
        self.keys_of(principal)
    }

    fn unindex_principal(&self, principal: &PrincipalKey, key: DocKey) -> Result<(), Error> {
        self.delete_principal(principal, key)
    }

    fn load(&self, key: DocKey) -> Result<Stored, Error> {
        let Some(meta) = self.db.get_cf(self.cf(META)?, key.as_bytes())? else {
            if let Some(t) = self.db.get_cf(self.cf(TOMB)?, key.as_bytes())? {
                return Ok(Stored::Tombstone {
                    ended: t.get(8) == Some(&1),
                });
            }
            return Ok(Stored::Missing);
        };
        let record = Record::decode(&meta)?;
        let bytes = self.lineage_bytes(key, &record)?;
        let others = if record.others {
            self.read_list(key)?
        } else {
            Vec::new()
        };
        Ok(Stored::Doc {
            bytes,
            record,
            others,
        })
    }

    fn load_lineage(&self, key: DocKey, lineage: &Lineage) -> Result<Vec<u8>, Error> {
        let record = Record {
            lineage: lineage.id,
            ..lineage.record
        };
        self.lineage_bytes(key, &record)
    }

    /// Appends one change chunk and moves the expiry index, atomically.
    fn append(
        &self,
        key: DocKey,
        chunk: &[u8],
        old: Option<Record>,
        lineage: LineageId,
        deadline: Millis,
        heads: u64,
    ) -> Result<Record, Error> {
        let mut record = fresh_or(old, lineage)?;
        record.heads = heads;
        let lk = lineage.storage_key(key);
        let mut wb = WriteBatch::default();
        wb.put_cf(self.log_cf(lineage)?, log_key(&lk, record.next_seq), chunk);
        record.next_seq = record
            .next_seq
            .checked_add(1)
            .ok_or_else(|| Error::Corrupt("log seq overflow".into()))?;
        record.log_count += 1;
        record.bytes += chunk.len() as u64;
        self.move_deadline(&mut wb, key, old.map(|r| r.deadline), deadline)?;
        record.deadline = deadline;
        wb.put_cf(self.cf(META)?, key.as_bytes(), record.encode());
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(record)
    }

    /// Replaces whatever is stored for the current lineage of `key`
    /// (snapshot and chunks) with the whole document `doc`, and moves the
    /// expiry index, atomically: the write that folds the log is the write
    /// of the change that filled it.
    fn snapshot(
        &self,
        key: DocKey,
        doc: &[u8],
        old: Option<Record>,
        lineage: LineageId,
        deadline: Millis,
        heads: u64,
    ) -> Result<Record, Error> {
        let record = fresh_or(old, lineage)?;
        let mut wb = WriteBatch::default();
        let mut record = self.write_whole(&mut wb, key, lineage, doc, old.map(|_| record))?;
        record.heads = heads;
        record.deadline = deadline;
        self.move_deadline(&mut wb, key, old.map(|r| r.deadline), deadline)?;
        wb.put_cf(self.cf(META)?, key.as_bytes(), record.encode());
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(record)
    }

    fn write_chain(
        &self,
        key: DocKey,
        write: &ChainWrite<'_>,
        old: Option<Record>,
        old_others: &[Lineage],
    ) -> Result<(Record, Vec<Lineage>), Error> {
        self.chain(key, write, old, old_others)
    }

    /// Moves a live document's place in the expiry index.
    fn reschedule(&self, key: DocKey, old: Record, deadline: Millis) -> Result<Record, Error> {
        let mut wb = WriteBatch::default();
        self.move_deadline(&mut wb, key, Some(old.deadline), deadline)?;
        let record = Record { deadline, ..old };
        wb.put_cf(self.cf(META)?, key.as_bytes(), record.encode());
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(record)
    }

    /// Deletes a dead document, every lineage of it, and leaves a
    /// tombstone until `forget_at`.
    fn tombstone(
        &self,
        key: DocKey,
        old: Option<Record>,
        now: Millis,
        forget_at: Millis,
        ended: bool,
    ) -> Result<(), Error> {
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(SNAP)?, key.as_bytes());
        wb.delete_cf(self.cf(META)?, key.as_bytes());
        wb.delete_cf(self.cf(LINEAGES)?, key.as_bytes());
        let first = key.as_bytes().to_vec();
        wb.delete_range_cf(self.cf(LOG)?, log_key(&first, 0), log_key(&first, u32::MAX));
        wb.delete_range_cf(self.cf(GSNAP)?, &key.as_bytes()[..], &after(key)[..]);
        wb.delete_range_cf(self.cf(GLOG)?, &key.as_bytes()[..], &after(key)[..]);
        if let Some(r) = old {
            wb.delete_cf(self.cf(EXP)?, exp_key(r.deadline, DueKind::Expire, key));
        }
        let mut tomb = [0u8; 9];
        tomb[..8].copy_from_slice(&now.to_be_bytes());
        tomb[8] = u8::from(ended);
        wb.put_cf(self.cf(TOMB)?, key.as_bytes(), tomb);
        wb.put_cf(self.cf(EXP)?, exp_key(forget_at, DueKind::Forget, key), []);
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(())
    }

    fn quarantine(&self, key: DocKey, due: Option<Due>, now: Millis) -> Result<usize, Error> {
        self.quarantine_all(key, due, now)
    }

    /// Drops a tombstone whose GC horizon has passed.
    fn forget(&self, due: Due) -> Result<(), Error> {
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(TOMB)?, due.key.as_bytes());
        wb.delete_cf(self.cf(EXP)?, exp_key(due.at, due.kind, due.key));
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(())
    }

    /// Removes an index entry that no longer matches its document.
    fn drop_due(&self, due: Due) -> Result<(), Error> {
        self.db.delete_cf_opt(
            self.cf(EXP)?,
            exp_key(due.at, due.kind, due.key),
            &self.write_opts,
        )?;
        Ok(())
    }

    /// Up to `limit` index entries due at or before `now`, oldest first.
    fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, Error> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(EXP)?, IteratorMode::Start) {
            let (k, _) = item?;
            let due = parse_exp_key(&k)?;
            if due.at > now || out.len() >= limit {
                break;
            }
            out.push(due);
        }
        Ok(out)
    }

    /// Documents with keys in `[from, to)` (`to = None`: to the end) whose
    /// deadline has not passed, with their heads hash; at most `limit`.
    fn digest(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(DocKey, u64)>, Error> {
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.cf(META)?, IteratorMode::From(from, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if to.is_some_and(|t| &*k >= t) || out.len() >= limit {
                break;
            }
            let record = Record::decode(&v)?;
            let key = DocKey::from_slice(&k).ok_or_else(|| Error::Corrupt("meta key".into()))?;
            if record.deadline >= now {
                out.push((key, record.heads));
            }
        }
        Ok(out)
    }

    /// Number of stored (not tombstoned) documents; walks the `meta` family.
    fn count(&self) -> Result<usize, Error> {
        let mut n = 0;
        for item in self.db.iterator_cf(self.cf(META)?, IteratorMode::Start) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Flushes the WAL to disk (clean shutdown).
    fn flush(&self) -> Result<(), Error> {
        self.db.flush_wal(true)?;
        Ok(())
    }
}

/// The record a write to `lineage` starts from: the old one (which must be
/// of that lineage), or a fresh one.
fn fresh_or(old: Option<Record>, lineage: LineageId) -> Result<Record, Error> {
    match old {
        Some(r) if r.lineage != lineage => Err(Error::Corrupt(format!(
            "a write to generation {} over the record of generation {}",
            lineage.gen, r.lineage.gen
        ))),
        Some(r) => Ok(r),
        None => Ok(Record {
            lineage,
            ..Record::default()
        }),
    }
}

pub(super) fn exp_key(at: Millis, kind: DueKind, key: DocKey) -> [u8; 8 + 1 + ID_LEN] {
    let mut k = [0u8; 8 + 1 + ID_LEN];
    k[..8].copy_from_slice(&at.to_be_bytes());
    k[8] = match kind {
        DueKind::Expire => 0,
        DueKind::Forget => 1,
    };
    k[9..].copy_from_slice(key.as_bytes());
    k
}

fn parse_exp_key(k: &[u8]) -> Result<Due, Error> {
    let bad = || Error::Corrupt("expiry index entry".into());
    if k.len() != 8 + 1 + ID_LEN {
        return Err(bad());
    }
    let at = u64::from_be_bytes(k[..8].try_into().map_err(|_| bad())?);
    let kind = match k[8] {
        0 => DueKind::Expire,
        1 => DueKind::Forget,
        _ => return Err(bad()),
    };
    let key = DocKey::from_slice(&k[9..]).ok_or_else(bad)?;
    Ok(Due { at, kind, key })
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
