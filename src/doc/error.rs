use thiserror::Error;

/// What can go wrong inside one session document.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// automerge refused an operation or could not decode stored bytes. The
    /// document itself is unchanged; for bytes from disk or a peer, the
    /// source is corrupt.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// A value could not be turned into JSON (a map with non-string keys,
    /// a failing `Serialize` impl, ...). Nothing was written.
    #[error("value cannot be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A stored attribute does not deserialize into the requested type.
    #[error("attribute {key:?} does not deserialize into the requested type: {source}")]
    Deserialize {
        /// The attribute.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value is not what this crate writes (a peer or the disk
    /// handed us something foreign). The document is left as it is.
    #[error("attribute {key:?} holds an unexpected value")]
    Corrupt {
        /// The attribute.
        key: String,
    },
    /// `increment` on an attribute that holds a value other than an integer.
    #[error("attribute {key:?} is not an integer, so it cannot be incremented")]
    NotACounter {
        /// The attribute.
        key: String,
    },
    /// Bytes from a peer are not an automerge sync message.
    #[error("malformed sync message: {0}")]
    Sync(String),
    /// Bytes from outside would inflate past the limit (see
    /// [`inflated_size`](crate::doc::inflated_size)); nothing was inflated
    /// past it.
    #[error("compressed data inflates past the limit of {limit} bytes")]
    Inflation {
        /// The limit, in bytes.
        limit: usize,
    },
    /// An increment would overflow `i64`.
    #[error("counter {key:?} would overflow")]
    Overflow {
        /// The attribute.
        key: String,
    },
}
