//! The replicator: async, on top of the [engine](crate::engine). It sends
//! what the engine persisted to peers and answers what peers send; the
//! engine never calls it.
//!
//! | file | what it holds |
//! |---|---|
//! | `handle.rs` | [`Replicator`]: push after commit (waiting for acks under `Replication::Sync`), fetch on miss, anti-entropy, peers coming and going |
//! | `outbox.rs` | per-peer queues of change chunks, one push in flight per peer |
//! | `exchange.rs` | automerge's sync protocol with one peer for a batch of documents |
//! | `anti_entropy.rs` | digest comparison, page by page, and sync of what differs |
//! | `inbound.rs` | answers to peers' requests |
//! | `lineage.rs` | which lineages of a session two nodes sync |
//! | `states.rs` | automerge sync states per (peer, document, lineage) |
//!
//! Every task it starts (a peer's push queue, anti-entropy on connect and
//! every interval, the peer-event listener) belongs to the node's task
//! owner, so the node's shutdown stops and awaits them all.

mod anti_entropy;
mod clock_sync;
mod exchange;
mod handle;
mod inbound;
mod lineage;
mod outbox;
mod states;

pub(crate) use handle::Replicator;
pub(crate) use inbound::Inbound;
