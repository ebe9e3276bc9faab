//! What a node counts about session consistency, for operators: how often
//! a request had to catch up to its session token, and how often that
//! failed (a `503`, or a stale answer).

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters themselves, shared by every clone of a node.
#[derive(Debug, Default)]
pub(super) struct Counters {
    caught_up: AtomicU64,
    refused_behind: AtomicU64,
    served_stale: AtomicU64,
    refused_unreachable: AtomicU64,
    tokens_ignored: AtomicU64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    CaughtUp,
    RefusedBehind,
    ServedStale,
    RefusedUnreachable,
    TokenIgnored,
}

impl Counters {
    pub(super) fn bump(&self, what: Count) {
        let counter = match what {
            Count::CaughtUp => &self.caught_up,
            Count::RefusedBehind => &self.refused_behind,
            Count::ServedStale => &self.served_stale,
            Count::RefusedUnreachable => &self.refused_unreachable,
            Count::TokenIgnored => &self.tokens_ignored,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            caught_up: get(&self.caught_up),
            refused_behind: get(&self.refused_behind),
            served_stale: get(&self.served_stale),
            refused_unreachable: get(&self.refused_unreachable),
            tokens_ignored: get(&self.tokens_ignored),
        }
    }
}

/// Counts since the node opened ([`Node::stats`](crate::Node::stats)).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sessionmesh::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let node = sessionmesh::Node::open(sessionmesh::Config::new(dir.path())).await?;
/// assert_eq!(node.stats().refused_unreachable, 0);
/// # node.shutdown().await
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests whose node was behind their session token and caught up
    /// (waiting for the change in flight, or pulling it) within the bound.
    pub caught_up: u64,
    /// Requests refused (`503`) because the node could not catch up in time.
    pub refused_behind: u64,
    /// Requests served an older state than their token named (stale reads
    /// allowed).
    pub served_stale: u64,
    /// Requests refused (`503`) because no reachable node held a session
    /// their token proves exists — the node would otherwise have started a
    /// fresh session and logged the user out.
    pub refused_unreachable: u64,
    /// Session tokens that proved nothing (forged, for another session or
    /// cluster, expired, from the future) and were ignored.
    pub tokens_ignored: u64,
}
