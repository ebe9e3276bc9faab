//! The public handle: a [`Node`] owns the store (and, later, the
//! replicator). A commit is "persist locally, then replicate".

mod config;
mod defer;
mod handle;
mod inner;
mod outbox;
mod replica;
mod replicate;
mod sweeper;
mod view;

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use handle::Node;
pub use view::{SessionView, SweepReport};
