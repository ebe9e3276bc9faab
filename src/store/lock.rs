//! One process per data directory: an advisory lock on `<dir>/LOCK.sessionmesh`,
//! taken before RocksDB opens and released after it closes, so that a
//! second opener gets a clear answer instead of a RocksDB I/O error.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

const LOCK_FILE: &str = "LOCK.sessionmesh";

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` for this process: `Ok(None)` when another holder (this
    /// process or another) has it.
    pub(crate) fn acquire(dir: &Path) -> io::Result<Option<Self>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        assert!(first.is_some());
        assert!(DirLock::acquire(dir.path()).unwrap().is_none());
        drop(first);
        assert!(DirLock::acquire(dir.path()).unwrap().is_some());
    }
}
