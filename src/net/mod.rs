//! Replication over libp2p: TCP, a private network keyed by the 32-byte
//! cluster key, Noise, Yamux, and one request-response protocol
//! (`/sessionmesh/repl/1`, CBOR) run by one actor task that owns the Swarm.
//!
//! # Protocol
//!
//! Every exchange is one request and one response between two nodes:
//!
//! | request | sent when | the receiver | response |
//! |---|---|---|---|
//! | `Push { items }` | after local commits, to every connected peer: one push in flight per peer, carrying every change chunk committed meanwhile, in commit order | applies each change chunk to its replica, persists it | `Acks { acks }`, one `Ack { applied, missing_deps }` per item: `applied` only once the change is on its disk |
//! | `Sync { items }` | catch-up: a push hit missing dependencies, a request carried an id this node lacks (fetch on miss), one item each; anti-entropy found differences, up to 64 items at a time | for each item, runs automerge's sync protocol with its state for (peer, document), persists what arrived | `Sync { items }`, one `SyncReply { msg, gone, ended, refused }` per item: the next sync message, or `gone` for a tombstoned session |
//! | `Digest { from, to, entries }` | on every new connection and periodically | compares its own (document → heads hash) in `[from, to)` with `entries` | `Differ { keys, until }`: documents either side lacks or holds differently; with `until`, only those before it (the rest of the range is asked for again from there) |
//!
//! The initiator of a sync repeats `Sync` rounds, each carrying the
//! documents still in progress, until neither side has anything to send (automerge's sync
//! protocol needs a reliable, in-order exchange, which one request-response
//! stream per round gives). Sync states
//! live per (peer, document) and are dropped when the peer connects again.
//!
//! A node whose cluster key differs fails the private-network handshake, so
//! it can neither read nor write anything. Every message, queue and pending
//! request is bounded; a malformed message is dropped and logged.
//!
//! [`PeerId`] and [`Multiaddr`] are libp2p's own types (libp2p 0.57),
//! re-exported as part of this crate's API: a libp2p upgrade that changes
//! them is a breaking change of sessionmesh. The wire codec (`wire`) is
//! public only with the `testing` feature.

mod actor;
mod command;
mod config;
mod error;
mod handle;
mod identity;
mod message;
mod transport;
#[cfg(feature = "testing")]
pub mod wire;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unreachable_pub)]
mod wire;

pub(crate) use command::{Handler, PeerEvent};
pub use config::{Config, Replication, StaleReads, SyncPolicy};
pub use error::Error;
pub(crate) use handle::Network;
pub(crate) use identity::load_or_create_identity;
pub use message::{
    Ack, DigestEntry, HeldLineage, Lineage, Pushed, Request, Response, SyncItem, SyncReply,
};
pub use transport::{BoxFuture, Transport};

pub use libp2p::{Multiaddr, PeerId};
