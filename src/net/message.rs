//! The wire messages (CBOR). Keys are document keys, never session ids.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// One document's entry in a digest: its key and a hash of its heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DigestEntry {
    pub(crate) key: serde_bytes::ByteArray<16>,
    pub(crate) heads: u64,
}

/// A request from one node to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// One commit's change chunk.
    Push {
        key: serde_bytes::ByteArray<16>,
        changes: ByteBuf,
    },
    /// One round of automerge's sync protocol for one document.
    Sync {
        key: serde_bytes::ByteArray<16>,
        msg: ByteBuf,
    },
    /// The sender's documents with keys in `[from, to)` (`to` empty = end).
    Digest {
        from: ByteBuf,
        to: ByteBuf,
        entries: Vec<DigestEntry>,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Response {
    /// `Push`: whether the change is persisted; whether dependencies are
    /// missing (the sender should run a sync).
    Ack { applied: bool, missing_deps: bool },
    /// `Sync`: the next message, if any; `gone` when the session is a
    /// tombstone here, `ended` when it was invalidated or rotated (not just
    /// expired here).
    Sync {
        msg: Option<ByteBuf>,
        gone: bool,
        ended: bool,
    },
    /// `Digest`: keys in the range that either side lacks or holds differently.
    Differ {
        keys: Vec<serde_bytes::ByteArray<16>>,
    },
    /// The request could not be handled (malformed, or a local failure).
    Refused { reason: String },
}
