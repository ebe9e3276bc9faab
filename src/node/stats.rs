//! What a node counts about session consistency, for operators: how often
//! a request had to catch up to its session token, and how often that
//! failed (a `503`, or a stale answer).

use crate::metrics::{label, Counters as Family};

/// The counters themselves: the `sessionmesh_session_tokens_total` series of
/// the node's metrics, by outcome.
#[derive(Debug)]
pub(super) struct Counters(Family);

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    CaughtUp,
    RefusedBehind,
    ServedStale,
    RefusedUnreachable,
    TokenIgnored,
}

impl Count {
    fn outcome(self) -> &'static str {
        match self {
            Count::CaughtUp => "caught_up",
            Count::RefusedBehind => "refused_behind",
            Count::ServedStale => "served_stale",
            Count::RefusedUnreachable => "refused_unreachable",
            Count::TokenIgnored => "ignored",
        }
    }
}

impl Counters {
    /// Counters kept in `family` (shared with the metrics registry).
    pub(super) fn new(family: Family) -> Self {
        Self(family)
    }

    pub(super) fn bump(&self, what: Count) {
        self.0
            .get_or_create(&label("outcome", what.outcome()))
            .inc();
    }

    fn get(&self, what: Count) -> u64 {
        self.0
            .get(&label("outcome", what.outcome()))
            .map_or(0, |c| c.get())
    }

    pub(super) fn snapshot(&self) -> Stats {
        Stats {
            caught_up: self.get(Count::CaughtUp),
            refused_behind: self.get(Count::RefusedBehind),
            served_stale: self.get(Count::ServedStale),
            refused_unreachable: self.get(Count::RefusedUnreachable),
            tokens_ignored: self.get(Count::TokenIgnored),
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
