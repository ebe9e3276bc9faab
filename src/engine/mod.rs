//! The engine: a node's sessions, synchronously. No tokio, no libp2p: it
//! owns the store, the document cache, this process's actor id and the
//! limits, and does one thing at a time to one document — load, create,
//! commit, rotate, apply a peer's change, take one step of a sync exchange,
//! sweep. Each operation returns the change chunks it persisted; sending
//! them is the replicator's business.
//!
//! | file | what it holds |
//! |---|---|
//! | `handle.rs` | [`Engine`], the cloneable handle |
//! | `shared.rs` | the state every operation shares; reading a document, persisting what it gained (and compacting) |
//! | `slots.rs` | one document at a time: its slot's lock, first read, cache charge |
//! | `deferred.rs` | pushed changes persisted now, applied in batches later |
//! | `generations.rs` | a session's chain of generations: when to switch, the steps that switch, place, lift and carry |
//! | `lineages.rs` | what a peer is told of a session's lineages; the jump of a node away too long |
//! | `requests.rs` | what a request does: load, create, commit, rotate |
//! | `replica.rs` | what a peer sends: a pushed change, a sync step, a digest, an end |
//! | `sweep.rs` | tombstoning dead sessions, forgetting old tombstones |
//! | `principals.rs` | the sessions of a principal: the index, "log out everywhere" |
//! | `view.rs` | [`SessionView`], [`SweepReport`] |

mod deferred;
mod generations;
mod handle;
mod lineages;
mod principals;
mod replica;
mod requests;
mod shared;
mod slots;
mod sweep;
mod view;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod generation_tests;
#[cfg(test)]
mod quarantine_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tombstone_tests;

pub(crate) use handle::Engine;
pub(crate) use lineages::{Held, LineageInfo};
pub use principals::PRINCIPAL_ATTRIBUTE;
pub(crate) use replica::{Applied, Step};
pub(crate) use requests::Loaded;
pub(crate) use shared::{Push, Pushes, Wrap};
pub use view::{SessionView, SweepReport, Version};
