use thiserror::Error;

/// Every error sessionmesh returns. Each variant says what the caller can do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A session operation failed in the document layer: a value that does
    /// not serialize, an increment on a non-integer, a stored value that does
    /// not deserialize into the requested type. Nothing was written; fix the
    /// call or the type.
    #[error(transparent)]
    Doc(#[from] crate::doc::Error),
    /// The storage layer failed. The write was **not** persisted and is not
    /// visible; the caller may retry or report a server error.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The session would exceed its size limit; the change was not applied.
    /// Answer `413 Payload Too Large` or store less.
    #[error("session would be {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The size the session would have had.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A freshly drawn session id already exists (or is a tombstone). With
    /// 128 random bits this does not happen by chance; draw a new id.
    #[error("session id already in use")]
    IdCollision,
    /// A `Replication::Sync` commit was confirmed by fewer peers than asked
    /// within the sync timeout, under `SyncPolicy::Fail`. The write **is**
    /// persisted locally and keeps replicating; the client may retry or
    /// treat it as at risk.
    #[error("write confirmed by {acked} of {wanted} peers in time")]
    NotReplicated {
        /// Peers that confirmed.
        acked: usize,
        /// Peers asked for.
        wanted: usize,
    },
    /// The network layer failed to start.
    #[error(transparent)]
    Net(#[from] crate::net::Error),
    /// The node was shut down; open a new one.
    #[error("the node is shut down")]
    Shutdown,
    /// The configuration cannot work (the message says which setting).
    #[error("invalid configuration: {0}")]
    Config(String),
}
