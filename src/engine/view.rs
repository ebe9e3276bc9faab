use std::collections::BTreeMap;

use automerge::ChangeHash;

use crate::clock::Millis;
use crate::doc::{ExpiryMode, Summary};

/// A live session as one request sees it: its attributes and timeouts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionView {
    /// Every attribute (a counter reads as its total).
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// How the cookie expires.
    pub expiry: ExpiryMode,
    /// Idle timeout in ms (0 = none).
    pub max_idle_ms: u64,
    /// Absolute deadline in ms since the epoch (0 = none).
    pub absolute_expiry_ms: Millis,
    /// Which state of the session this is: what a session token records
    /// (see [`Node::token`](crate::Node::token)).
    pub version: Version,
    /// `true` when this node could not catch up to what the client had seen
    /// (its token) within the bound, and serves what it has because the
    /// network's stale-read policy says so.
    pub behind: bool,
}

impl SessionView {
    pub(crate) fn of(summary: &Summary) -> Self {
        Self {
            attributes: summary.attributes.clone(),
            expiry: summary.expiry,
            max_idle_ms: summary.max_idle_ms,
            absolute_expiry_ms: summary.absolute_expiry_ms,
            version: Version::new(summary.gen, summary.heads.clone()),
            behind: false,
        }
    }
}

/// One state of a session: its generation and the set of its latest
/// changes there (automerge's heads). A state includes another when it
/// holds every change of it; comparing versions for equality tells whether
/// two views are the same state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Version {
    gen: u32,
    heads: Vec<ChangeHash>,
}

impl Version {
    /// At most this many heads are kept: a session written concurrently by
    /// more writers than that at once keeps the first ones (sorted), a lower
    /// bound of the state.
    pub(crate) const MAX_HEADS: usize = 8;

    /// The version of a state of generation `gen` with `heads` (in any
    /// order).
    pub(crate) fn new(gen: u32, mut heads: Vec<ChangeHash>) -> Self {
        heads.sort_unstable();
        heads.dedup();
        heads.truncate(Self::MAX_HEADS);
        Self { gen, heads }
    }

    /// The generation.
    pub(crate) fn gen(&self) -> u32 {
        self.gen
    }

    /// The heads, sorted.
    pub(crate) fn heads(&self) -> &[ChangeHash] {
        &self.heads
    }

    /// A version that holds both: what a client has seen when it was shown
    /// `other` after `self` without `other` holding `self` (a stale read,
    /// or a write on a stale state). Of two generations, the later one:
    /// it holds what reached the earlier one before the switch, and what
    /// came later is carried into it.
    pub(crate) fn union(&self, other: &Version) -> Version {
        match self.gen.cmp(&other.gen) {
            std::cmp::Ordering::Less => other.clone(),
            std::cmp::Ordering::Greater => self.clone(),
            std::cmp::Ordering::Equal => Version::new(
                self.gen,
                self.heads.iter().chain(&other.heads).copied().collect(),
            ),
        }
    }

    /// Whether the state of generation `gen` with `heads` (sorted) holds at
    /// least this one, judged from the heads alone: `true` when it is of
    /// this generation and every head of this version is one of them.
    /// `false` means "cannot tell": ask the document.
    pub(crate) fn within(&self, gen: u32, heads: &[ChangeHash]) -> bool {
        self.gen == gen && self.heads.iter().all(|h| heads.binary_search(h).is_ok())
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Dead sessions turned into tombstones.
    pub tombstoned: usize,
    /// Tombstones forgotten after the GC horizon.
    pub forgotten: usize,
    /// Sessions whose stored bytes did not load, moved aside (see
    /// [`Node::load`](crate::Node::load)); the sweep went on past them.
    pub quarantined: usize,
    /// Entries the sweep could not handle this time (a storage error); it
    /// went on past them and tries again next time.
    pub failed: usize,
}
