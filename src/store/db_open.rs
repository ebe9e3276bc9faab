//! Opening the RocksDB database: its column families and memory budget,
//! and what happens when its write-ahead log is damaged.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DBRecoveryMode, ErrorKind, Options, WriteOptions, DB};

use super::db::{Db, EXP, GLOG, GSNAP, LINEAGES, LOG, META, PRINCIPALS, QUAR, SNAP, TOMB};
use super::{Durability, Error};

/// All memtables together, across column families.
const MEMTABLE_BUDGET: usize = 32 << 20;
/// One column family's memtable.
const MEMTABLE_PER_FAMILY: usize = 8 << 20;

impl Db {
    #[cfg(test)]
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Self, Error> {
        Self::open_with(path, durability, false)
    }

    /// Opens the database. A write-ahead log damaged before its last record
    /// is [`Error::WalCorrupt`], unless `salvage`: then the database opens at
    /// the last consistent point, and what that dropped is logged as an
    /// error (the log's size, the sessions left).
    pub(crate) fn open_with(
        path: &Path,
        durability: Durability,
        salvage: bool,
    ) -> Result<Self, Error> {
        // A crash can tear the last record (tolerated); damage before it
        // is not a crash's doing, and RocksDB's default would silently
        // drop everything after it.
        match Self::open_mode(
            path,
            durability,
            DBRecoveryMode::TolerateCorruptedTailRecords,
        ) {
            Err(Error::RocksDb(e)) if e.kind() == ErrorKind::Corruption => {
                if !salvage {
                    return Err(Error::WalCorrupt {
                        detail: e.to_string(),
                    });
                }
                let wal_bytes = wal_bytes(path);
                let db = Self::open_mode(path, durability, DBRecoveryMode::PointInTime)?;
                tracing::error!(
                    error = %e,
                    wal_bytes,
                    sessions_left = ?super::Storage::count(&db),
                    "write-ahead log damaged: opened at the last consistent point; \
                     writes after the damage are lost here (peers resend what they hold)"
                );
                Ok(db)
            }
            other => other,
        }
    }

    fn open_mode(path: &Path, durability: Durability, mode: DBRecoveryMode) -> Result<Self, Error> {
        let mut opts = Options::default();
        opts.set_wal_recovery_mode(mode);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // RocksDB's defaults allow 64 MiB memtables per column family, twice
        // over: up to 640 MiB for our five families before a flush. Sessions
        // are small and the WAL makes memtables durable anyway, so memtables
        // stay small and share one budget.
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        let cfs = [
            SNAP, LOG, META, EXP, TOMB, GSNAP, GLOG, LINEAGES, QUAR, PRINCIPALS,
        ]
        .into_iter()
        .map(|n| {
            let mut cf = Options::default();
            cf.set_write_buffer_size(MEMTABLE_PER_FAMILY);
            cf.set_max_write_buffer_number(2);
            ColumnFamilyDescriptor::new(n, cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(durability == Durability::Fsync);
        Ok(Self {
            db,
            write_opts,
            durability,
        })
    }
}

/// Bytes of the write-ahead log files in `dir`.
fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
