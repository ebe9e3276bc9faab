//! The wire messages (CBOR, see [`wire`](super::wire)). Keys are document
//! keys, never session ids.

use serde::{Deserialize, Serialize};
use serde_bytes::{ByteArray, ByteBuf};

/// One document's entry in a digest: its key and a hash of its heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The document key.
    pub key: ByteArray<16>,
    /// A hash of the document's heads.
    pub heads: u64,
}

/// Which document of a session a message is about: a session is a chain
/// of generations, and a generation may have several lineages, one per
/// base (the change that started it). Generation 0 has no base; messages
/// without these fields (from nodes before generations) are about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The generation.
    #[serde(default)]
    pub gen: u32,
    /// The hash of its first change; `None` for generation 0.
    #[serde(default)]
    pub base: Option<ByteArray<32>>,
}

/// One commit's change chunk in a [`Request::Push`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pushed {
    /// The document key.
    pub key: ByteArray<16>,
    /// Exactly one automerge change.
    pub changes: ByteBuf,
    /// The lineage the change belongs to.
    #[serde(default)]
    pub lineage: Lineage,
}

/// The receiver's answer to one [`Pushed`] chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The change is persisted on the receiver.
    pub applied: bool,
    /// The receiver lacks earlier changes: run a sync.
    pub missing_deps: bool,
}

/// One document's round in a [`Request::Sync`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncItem {
    /// The document key.
    pub key: ByteArray<16>,
    /// An encoded automerge sync message (empty with `ask`).
    pub msg: ByteBuf,
    /// The first round of an exchange about this lineage: the receiver
    /// starts from a fresh sync state, and says which lineages it holds.
    /// automerge's protocol assumes reliable delivery; a state that
    /// outlived a lost message would never resend what it believes was
    /// sent, so each exchange starts afresh on both sides.
    pub first: bool,
    /// The lineage the message is about.
    #[serde(default)]
    pub lineage: Lineage,
    /// The sender holds nothing of the session: no message, only the
    /// receiver's lineages are asked for.
    #[serde(default)]
    pub ask: bool,
}

/// One lineage a node holds, in a [`SyncReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLineage {
    /// Which one.
    pub lineage: Lineage,
    /// The node's current lineage of the session.
    pub current: bool,
    /// Built on its generation's winning mark, as far as the node knows.
    pub canonical: bool,
    /// A hash of its heads.
    pub heads: u64,
}

/// The receiver's answer to one [`SyncItem`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncReply {
    /// The next sync message, if the receiver has anything to say.
    pub msg: Option<ByteBuf>,
    /// The session is a tombstone on the receiver.
    pub gone: bool,
    /// ... because it was invalidated or rotated (not merely expired).
    pub ended: bool,
    /// The receiver could not handle this item (why); the exchange for
    /// this lineage stops.
    pub refused: Option<String>,
    /// To a `first` or `ask` item: the lineages the receiver holds.
    #[serde(default)]
    pub lineages: Option<Vec<HeldLineage>>,
}

/// A request from one node to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// Change chunks of commits, in commit order: every chunk queued for
    /// the peer while the previous push was in flight.
    Push {
        /// The chunks.
        items: Vec<Pushed>,
    },
    /// One round of automerge's sync protocol for each of several
    /// documents (one for a fetch or a repair, many for anti-entropy).
    Sync {
        /// One message per document.
        items: Vec<SyncItem>,
    },
    /// The sender's live documents with keys in `[from, to)`.
    Digest {
        /// Start of the range (inclusive).
        from: ByteBuf,
        /// End of the range (exclusive); empty = to the end.
        to: ByteBuf,
        /// The sender's documents in the range.
        entries: Vec<DigestEntry>,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// To `Push`: one per item, in order.
    Acks {
        /// The answers.
        acks: Vec<Ack>,
    },
    /// To `Sync`: one per item, in order.
    Sync {
        /// The answers.
        items: Vec<SyncReply>,
    },
    /// To `Digest`: keys in the range that either side lacks or holds
    /// differently.
    Differ {
        /// The keys to sync.
        keys: Vec<ByteArray<16>>,
        /// Set when the answer covers only `[from, until)` of the range
        /// (the receiver holds more there than one answer may carry): the
        /// sender asks again from `until`. Absent from older nodes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<ByteArray<16>>,
        /// The receiver's clock when it answered (ms since the epoch), for
        /// the sender to measure the offset between their clocks. Absent
        /// from older nodes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now: Option<u64>,
    },
    /// The request could not be handled (malformed, busy, or a local
    /// failure on the receiver).
    Refused {
        /// Why.
        reason: String,
    },
}
