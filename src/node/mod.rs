//! The public handle: a [`Node`] holds the [engine](crate::engine) (the
//! sessions, synchronously), the [replicator](crate::replicator) when it
//! has a transport, and the task owner every background task belongs to.
//! A commit is "persist locally through the engine, then hand the change to
//! the replicator".
//!
//! | file | what it holds |
//! |---|---|
//! | `handle.rs` | [`Node`], the public handle |
//! | `shared.rs` | what a node is made of, and opening it |
//! | `catch_up.rs` | serving a request at least the state its session token names |
//! | `stats.rs` | [`Stats`]: the counts operators watch |
//! | `load.rs` | [`Node::load`]: a session from this node or its peers |
//! | `fingerprint.rs` | [`Node::fingerprint`]: whether two nodes hold the same sessions |
//! | `clock.rs` | [`Node::clock_offsets`]: the node's clock against its peers' |
//! | `secret.rs` | [`Node::cookie_secret`]: what applications key their cookies with |
//! | `transient.rs` | transient attributes: values kept on this node only |

mod catch_up;
mod clock;
mod fingerprint;
mod handle;
mod load;
mod secret;
mod shared;
mod stats;
mod transient;

#[cfg(test)]
mod fetch_tests;
#[cfg(test)]
mod open_tests;
#[cfg(test)]
mod shutdown_tests;
#[cfg(test)]
mod tests;

pub use fingerprint::Fingerprint;
pub use handle::Node;
pub use stats::Stats;
