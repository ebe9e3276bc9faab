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
    /// The write-ahead log is damaged in the middle (not merely a torn last
    /// record, which a crash can leave and which is tolerated): opening
    /// would drop every write after the damage, acknowledged ones among
    /// them. The node does not open;
    /// [`Config::with_wal_salvage`](crate::Config::with_wal_salvage) opens
    /// it at the last consistent point instead, and says what it dropped.
    #[error(
        "the write-ahead log is damaged ({detail}); opening would drop the writes after the damage. \
         Config::with_wal_salvage(true) opens at the last consistent point (peers resend what they hold)"
    )]
    WalCorrupt {
        /// What RocksDB reported.
        detail: String,
    },
    /// A stored document does not decode.
    #[error("stored document does not decode: {0}")]
    Document(#[from] crate::doc::Error),
}
