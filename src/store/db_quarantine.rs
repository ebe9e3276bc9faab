//! Quarantine: a session whose stored bytes no longer load is moved aside,
//! whole, so that one damaged record neither fails every request for it
//! nor stops the sweeper, and the bytes stay for an operator to look at.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::db::{exp_key, Db, EXP, GLOG, GSNAP, LINEAGES, LOG, META, QUAR, SNAP};
use super::storage::{Due, DueKind};
use super::{Error, Record};
use crate::clock::Millis;
use crate::id::DocKey;

impl Db {
    /// Moves everything stored for `key` (every lineage, its record and
    /// list) into the `quarantine` family under `key ‖ now ‖ family`,
    /// and drops its expiry index entries: `due`, and the one its record
    /// names if that still decodes. Returns how many entries moved.
    pub(super) fn quarantine_all(
        &self,
        key: DocKey,
        due: Option<Due>,
        now: Millis,
    ) -> Result<usize, Error> {
        let quar = self.cf(QUAR)?;
        let mut wb = WriteBatch::default();
        let mut moved = 0;
        for (tag, family) in [SNAP, LOG, META, GSNAP, GLOG, LINEAGES].iter().enumerate() {
            let cf = self.cf(family)?;
            let prefix = key.as_bytes();
            let iter = self
                .db
                .iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward));
            for item in iter {
                let (k, v) = item?;
                if !k.starts_with(prefix) {
                    break;
                }
                let mut qk = prefix.to_vec();
                qk.extend_from_slice(&now.to_be_bytes());
                qk.push(u8::try_from(tag).unwrap_or(u8::MAX));
                qk.extend_from_slice(&k);
                wb.put_cf(quar, qk, &v);
                wb.delete_cf(cf, &k);
                moved += 1;
                if *family == META {
                    if let Ok(r) = Record::decode(&v) {
                        wb.delete_cf(self.cf(EXP)?, exp_key(r.deadline, DueKind::Expire, key));
                    }
                }
            }
        }
        if let Some(d) = due {
            wb.delete_cf(self.cf(EXP)?, exp_key(d.at, d.kind, d.key));
        }
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(moved)
    }

    /// How many entries the `quarantine` family holds.
    #[cfg(test)]
    pub(crate) fn quarantined(&self) -> usize {
        self.cf(QUAR)
            .map_or(0, |cf| self.db.iterator_cf(cf, IteratorMode::Start).count())
    }
}

#[cfg(test)]
impl Db {
    /// Overwrites the generation-0 snapshot of `key` with bytes that are
    /// not automerge: a damaged disk, for tests.
    pub(crate) fn damage(&self, key: DocKey) {
        let cf = self.cf(SNAP).unwrap();
        self.db
            .put_cf(cf, key.as_bytes(), b"not automerge")
            .unwrap();
    }
}
