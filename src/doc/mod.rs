//! One session as an automerge document. Pure: no I/O, no clock, no network.
//!
//! # Layout
//!
//! Every key sits directly on the document's root map, so two replicas that
//! created "the same" session independently still merge key by key (nested
//! objects created concurrently under one key would hide each other):
//!
//! | key | value | merge rule |
//! |---|---|---|
//! | `data/<key>` | attribute as JSON text | different keys merge; one key written concurrently: one deterministic winner (automerge's Lamport order), losers readable as conflicts |
//! | `count/<key>/<node>` | automerge counter, one per node | the value of `<key>` is the sum over nodes, so concurrent increments add up exactly, even when two nodes create the counter at once |
//! | `meta/created` | creation time (ms) | written once |
//! | `meta/touch/<node>` | last access that node saw (ms) | last access = max over nodes |
//! | `meta/max_idle` | idle timeout in ms, 0 = none | last writer (automerge order) |
//! | `meta/absolute_expiry` | hard deadline (ms), 0 = none | last writer (automerge order) |
//! | `meta/expiry` | how the cookie should expire | last writer (automerge order) |
//! | `meta/invalidated` | `true`, never unset | wins over every concurrent or later write |
//! | `meta/successor` | [`DocKey`](crate::DocKey) of the rotated-to session | set once; the session is dead |
//!
//! Why one counter per node and not one counter per key: automerge merges
//! two counters created concurrently under one key as a conflict, and every
//! later increment lands on both, so no read rule recovers the exact sum.
//! A node never races itself, so its own counter is created exactly once.
//! When a value and counters exist under one key at once (a set concurrent
//! with an increment), the value is what reads see until the next write.

#[cfg_attr(not(feature = "testing"), allow(dead_code, unreachable_pub))]
mod chain;
mod error;
#[cfg_attr(not(feature = "testing"), allow(dead_code, unreachable_pub))]
mod exchange;
#[cfg_attr(not(feature = "testing"), allow(dead_code, unreachable_pub))]
mod generation;
mod inflate;
mod layout;
mod op;
#[cfg_attr(not(feature = "testing"), allow(dead_code, unreachable_pub))]
mod read;
mod rotation;
mod runs;
#[cfg_attr(not(feature = "testing"), allow(dead_code, unreachable_pub))]
mod session_doc;
#[cfg_attr(not(feature = "testing"), allow(dead_code, unreachable_pub))]
mod summary;
mod translate;

#[cfg(test)]
mod tests;

pub use error::Error;
pub use inflate::{change_inflated_size, inflated_size, sync_inflated_size};
#[cfg(any(test, feature = "testing"))]
pub use inflate::{sync_message_carrying, zero_bomb};
pub use op::{coalesce, ExpiryMode, Op};

// The document itself and its helpers are internals: public only with the
// `testing` feature, for this repository's property tests and benchmarks.
#[cfg(not(feature = "testing"))]
pub(crate) use chain::Chain;
#[cfg(feature = "testing")]
pub use chain::{Chain, GenDoc, Part};
#[cfg(feature = "testing")]
pub use exchange::{change_header, hash_heads, ChangeHeader};
#[cfg(not(feature = "testing"))]
pub(crate) use exchange::{change_header, hash_heads, ChangeHeader};
#[cfg(feature = "testing")]
pub use read::{entry_size, size_of_entries, size_with};
#[cfg(not(feature = "testing"))]
pub(crate) use read::{size_of_entries, size_with};
#[cfg(feature = "testing")]
pub use session_doc::{SessionDoc, Status};
#[cfg(not(feature = "testing"))]
pub(crate) use session_doc::{SessionDoc, Status};
#[cfg(feature = "testing")]
pub use summary::{may_write, written_keys, Summary, DEADLINE_KEYS};
#[cfg(not(feature = "testing"))]
pub(crate) use summary::{may_write, written_keys, Summary, DEADLINE_KEYS};
