use thiserror::Error;

/// What can go wrong in the storage layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB failed (I/O error, full disk, a lock held by another process
    /// on the same directory). The write that hit it was not applied.
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    /// Stored bytes are not what this crate writes: the data directory was
    /// damaged or written by something else.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A write failed on purpose: a fault aimed by a test through
    /// `testing::StorageFaults` (only with the `testing` feature).
    #[cfg(any(test, feature = "testing"))]
    #[error("injected storage fault: {0}")]
    Injected(String),
    /// A stored document does not decode.
    #[error("stored document does not decode: {0}")]
    Document(#[from] crate::doc::Error),
}
