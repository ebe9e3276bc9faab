//! Session lifecycle events: a session created, rotated, invalidated or
//! expired, as a node sees it ([`Node::subscribe`](crate::Node::subscribe)).
//!
//! Each event is reported once by the node where it happened
//! ([`Origin::Local`]: the request that created, rotated or invalidated
//! the session, or this node's sweeper finding it expired), and by every
//! other node when the change that caused it reaches it through
//! replication ([`Origin::Replicated`]). Expiry is decided by each node
//! from replicated data, so every node's sweeper reports it for its own
//! copy, as `Local`.
//!
//! # Examples
//!
//! ```
//! use sessionmesh::events::{EventKind, Origin};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let node = sessionmesh::Node::open(sessionmesh::Config::new(dir.path())).await?;
//! let mut events = node.subscribe();
//! let id = sessionmesh::SessionId::random();
//! node.create(&id, &[]).await?;
//! let event = events.recv().await?;
//! assert_eq!(event.session, id.doc_key());
//! assert_eq!(event.kind, EventKind::Created);
//! assert_eq!(event.origin, Origin::Local);
//! # node.shutdown().await?;
//! # Ok(()) }
//! ```

use crate::clock::Millis;
use crate::id::DocKey;

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A new session (a rotation's successor included).
    Created,
    /// The id was rotated (`cycle_id`); the session lives on under `to`.
    Rotated {
        /// The successor's document key.
        to: DocKey,
    },
    /// Invalidated (logout, or log out everywhere): dead on every node.
    Invalidated,
    /// Its idle or absolute timeout passed and the sweeper removed it.
    Expired,
}

/// Where an event happened, as the reporting node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// On this node: one of its requests, or its sweeper.
    Local,
    /// On another node; this node learned of it when the change that caused
    /// it was applied here.
    Replicated,
}

/// One lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The session, by document key (a hash of its id; the id itself is a
    /// credential and never leaves the request that holds it).
    pub session: DocKey,
    /// What happened.
    pub kind: EventKind,
    /// Where.
    pub origin: Origin,
    /// When this node saw it, by its clock.
    pub at: Millis,
}

/// Events a subscriber may fall behind by before it misses some (it is
/// told how many: `RecvError::Lagged`).
pub(crate) const CAPACITY: usize = 4_096;
