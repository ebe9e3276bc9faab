use std::collections::BTreeMap;

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
}

impl SessionView {
    pub(crate) fn of(summary: &Summary) -> Self {
        Self {
            attributes: summary.attributes.clone(),
            expiry: summary.expiry,
            max_idle_ms: summary.max_idle_ms,
            absolute_expiry_ms: summary.absolute_expiry_ms,
        }
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
}
