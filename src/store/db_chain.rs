//! The lineages of a session in RocksDB: reading one, writing a whole
//! chain step (a generation switch, a late change carried forward) in one
//! batch.

use std::collections::HashMap;

use rocksdb::{ColumnFamily, WriteBatch};

use super::db::{Db, GLOG, GSNAP, LINEAGES, LOG, META, SNAP};
use super::lineage::{decode_list, encode_list, log_key, Lineage, LineageId, MAX_LINEAGES};
use super::storage::ChainWrite;
use super::{Error, Record};
use crate::id::DocKey;

impl Db {
    pub(super) fn snap_cf(&self, lineage: LineageId) -> Result<&ColumnFamily, Error> {
        self.cf(if lineage.is_first() { SNAP } else { GSNAP })
    }

    pub(super) fn log_cf(&self, lineage: LineageId) -> Result<&ColumnFamily, Error> {
        self.cf(if lineage.is_first() { LOG } else { GLOG })
    }

    /// A lineage's document: its snapshot followed by its log chunks.
    pub(super) fn lineage_bytes(&self, key: DocKey, record: &Record) -> Result<Vec<u8>, Error> {
        let lineage = record.lineage;
        let lk = lineage.storage_key(key);
        let mut bytes = self
            .db
            .get_cf(self.snap_cf(lineage)?, &lk)?
            .unwrap_or_default();
        // The log holds exactly the chunks [next_seq - log_count, next_seq)
        // (append and compaction keep the record in the same batch): point
        // lookups, no iterator wading through compaction's range deletes.
        let log = self.log_cf(lineage)?;
        let first = record.next_seq.saturating_sub(record.log_count);
        let chunks = self
            .db
            .multi_get_cf((first..record.next_seq).map(|seq| (log, log_key(&lk, seq))));
        for (seq, chunk) in (first..).zip(chunks) {
            let chunk = chunk?.ok_or_else(|| {
                Error::Corrupt(format!(
                    "session {} generation {} lacks log entry {seq}",
                    key.short(),
                    lineage.gen
                ))
            })?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Err(Error::Corrupt(format!(
                "session {} generation {} has a record but no data",
                key.short(),
                lineage.gen
            )));
        }
        Ok(bytes)
    }

    /// The session's lineages other than its current one.
    pub(super) fn read_list(&self, key: DocKey) -> Result<Vec<Lineage>, Error> {
        match self.db.get_cf(self.cf(LINEAGES)?, key.as_bytes())? {
            Some(bytes) => decode_list(&bytes),
            None => Err(Error::Corrupt(format!(
                "session {} lists other generations but has none",
                key.short()
            ))),
        }
    }

    /// Puts `doc` as the whole of `lineage` (its log folded away) into
    /// `wb`; `old` is its record so far. Returns its new record (deadline
    /// and heads for the caller to fill).
    pub(super) fn write_whole(
        &self,
        wb: &mut WriteBatch,
        key: DocKey,
        lineage: LineageId,
        doc: &[u8],
        old: Option<Record>,
    ) -> Result<Record, Error> {
        let lk = lineage.storage_key(key);
        wb.put_cf(self.snap_cf(lineage)?, &lk, doc);
        let next_seq = old.map_or(0, |r| r.next_seq);
        if next_seq > 0 {
            wb.delete_range_cf(
                self.log_cf(lineage)?,
                log_key(&lk, 0),
                log_key(&lk, next_seq),
            );
        }
        Ok(Record {
            deadline: 0,
            next_seq,
            log_count: 0,
            bytes: doc.len() as u64,
            heads: 0,
            lineage,
            others: old.is_some_and(|r| r.others),
        })
    }

    /// Deletes `lineage` (its snapshot and log) in `wb`.
    fn delete_lineage(
        &self,
        wb: &mut WriteBatch,
        key: DocKey,
        lineage: LineageId,
        record: &Record,
    ) -> Result<(), Error> {
        let lk = lineage.storage_key(key);
        wb.delete_cf(self.snap_cf(lineage)?, &lk);
        if record.next_seq > 0 {
            wb.delete_range_cf(
                self.log_cf(lineage)?,
                log_key(&lk, 0),
                log_key(&lk, record.next_seq),
            );
        }
        Ok(())
    }

    /// See [`Storage::write_chain`](super::Storage::write_chain).
    pub(super) fn chain(
        &self,
        key: DocKey,
        write: &ChainWrite<'_>,
        old: Option<Record>,
        old_others: &[Lineage],
    ) -> Result<(Record, Vec<Lineage>), Error> {
        let mut records: HashMap<LineageId, Record> =
            old_others.iter().map(|l| (l.id, l.record)).collect();
        if let Some(r) = old {
            records.insert(r.lineage, r);
        }
        let mut wb = WriteBatch::default();
        let mut current = self.write_whole(
            &mut wb,
            key,
            write.current,
            write.current_doc,
            records.remove(&write.current),
        )?;
        current.heads = write.heads;
        current.deadline = write.deadline;
        let mut list = Vec::new();
        for (id, canonical, heads, doc) in &write.saved {
            let mut record = self.write_whole(&mut wb, key, *id, doc, records.remove(id))?;
            record.heads = *heads;
            list.push(Lineage {
                id: *id,
                canonical: *canonical,
                record,
            });
        }
        for (id, canonical) in &write.kept {
            let record = records.remove(id).ok_or_else(|| {
                Error::Corrupt(format!(
                    "session {} keeps generation {} it never stored",
                    key.short(),
                    id.gen
                ))
            })?;
            list.push(Lineage {
                id: *id,
                canonical: *canonical,
                record,
            });
        }
        if list.len() > MAX_LINEAGES {
            return Err(Error::Corrupt(format!(
                "session {} would list {} lineages",
                key.short(),
                list.len()
            )));
        }
        // Whatever is neither current, saved nor kept goes.
        for (id, record) in &records {
            self.delete_lineage(&mut wb, key, *id, record)?;
        }
        list.sort_by_key(|l| l.id);
        current.others = !list.is_empty();
        self.move_deadline(&mut wb, key, old.map(|r| r.deadline), write.deadline)?;
        wb.put_cf(self.cf(META)?, key.as_bytes(), current.encode());
        if list.is_empty() {
            wb.delete_cf(self.cf(LINEAGES)?, key.as_bytes());
        } else {
            wb.put_cf(self.cf(LINEAGES)?, key.as_bytes(), encode_list(&list));
        }
        self.db.write_opt(wb, &self.write_opts)?;
        Ok((current, list))
    }
}
