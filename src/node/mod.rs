//! The public handle: a [`Node`] holds the [engine](crate::engine) (the
//! sessions, synchronously), the [replicator](crate::replicator) when it
//! has a transport, and the task owner every background task belongs to.
//! A commit is "persist locally through the engine, then hand the change to
//! the replicator".

mod handle;

#[cfg(test)]
mod open_tests;
#[cfg(test)]
mod shutdown_tests;
#[cfg(test)]
mod tests;

pub use handle::Node;
