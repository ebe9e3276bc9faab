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
    /// The client's session token says it has seen a newer state of the
    /// session than this node holds, and the node could not catch up within
    /// the catch-up bound (the change is still on its way, or the node that
    /// has it is unreachable). Nothing was served or written: answer
    /// `503 Service Unavailable` with `Retry-After` (the HTTP layer does) so
    /// the client retries, on this node or another.
    #[error("this node is behind what the client has seen (waited {waited_ms} ms)")]
    Behind {
        /// How long the node tried to catch up.
        waited_ms: u64,
    },
    /// The client's session token proves the session exists, but neither
    /// this node nor any peer it reached holds it (the node that created it
    /// is cut off). The id is not treated as unknown — that would log the
    /// user out — so nothing was served or written: answer `503` with
    /// `Retry-After`, as for [`Error::Behind`].
    #[error("the session exists but no reachable node holds it")]
    Unreachable,
    /// The network layer failed: it could not start (fix its settings), or
    /// a request to a peer failed (retry; anti-entropy repairs the rest).
    #[error(transparent)]
    Net(#[from] crate::net::Error),
    /// The node was shut down; open a new one.
    #[error("the node is shut down")]
    Shutdown,
    /// A setting cannot work; nothing was opened. Fix the setting named.
    #[error("invalid configuration: {field} {why}")]
    InvalidConfig {
        /// The setting (the name of its `with_*` setter without `with_`).
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The data directory is held by another node, in this process or
    /// another: one directory serves one node at a time. Shut the other
    /// down first, or give this node its own directory.
    #[error("data directory {} is already open", path.display())]
    AlreadyOpen {
        /// The directory.
        path: std::path::PathBuf,
    },
    /// The data directory (or a file of this crate in it) cannot be created
    /// or read: check the path and its permissions.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory or file.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The operation needs a network, and the node was opened without one
    /// (no [`net::Config`](crate::net::Config) and no attached transport).
    #[error("no network configured")]
    NoNetwork,
    /// [`Node::attach_transport`](crate::Node::attach_transport) on a node
    /// that already replicates: a node has one transport.
    #[error("the node already replicates")]
    AlreadyReplicating,
}
