//! Time as a value: the document layer never reads a clock, the node asks a
//! [`Clock`], and tests inject a [`ManualClock`] to move time by hand.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A source of wall-clock time in milliseconds.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// # Examples
///
/// ```
/// use sessionmesh::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), 3_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `start_ms`.
    #[must_use]
    pub fn new(start_ms: Millis) -> Self {
        Self(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: Millis) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// A clock corrected toward the cluster's: the configured clock plus an
/// offset the replicator moves when this node's clock disagrees with most
/// of its peers' (see `replicator::clock_sync`). Every time a node writes
/// into a session (creation, last access) comes from here.
#[derive(Debug)]
pub(crate) struct Corrected {
    inner: Arc<dyn Clock>,
    correction_ms: std::sync::atomic::AtomicI64,
}

impl Corrected {
    pub(crate) fn new(inner: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            correction_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// What is added to the configured clock, in ms.
    pub(crate) fn correction_ms(&self) -> i64 {
        self.correction_ms.load(Ordering::SeqCst)
    }

    /// Moves the correction by `by_ms`.
    pub(crate) fn adjust(&self, by_ms: i64) {
        self.correction_ms.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for Corrected {
    fn now_ms(&self) -> Millis {
        let raw = self.inner.now_ms();
        let c = self.correction_ms();
        if c >= 0 {
            raw.saturating_add(c.unsigned_abs())
        } else {
            raw.saturating_sub(c.unsigned_abs())
        }
    }
}

impl Clock for Arc<Corrected> {
    fn now_ms(&self) -> Millis {
        self.as_ref().now_ms()
    }
}
