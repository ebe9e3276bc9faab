//! Clock agreement between peers. Expiry is decided from times the nodes
//! write into sessions, so a node whose clock is off by hours would create
//! sessions the others find dead on arrival (slow) or keep sessions alive
//! for everyone (fast). Each anti-entropy answer carries the answering
//! node's time; the asking node measures the offset (against the middle of
//! the round trip), warns when a peer is off by more than
//! [`TOLERANCE_MS`], and moves its own clock to the median of its peers'
//! (itself counted at 0): a lone skewed node joins the majority at its
//! second measurement, a majority never follows a lone node, and two nodes
//! meet in the middle (the median of one peer and itself is half the
//! offset). Both ends of every new connection measure at once, and a node
//! opened with peers to dial waits (briefly) until it has measured them
//! all before it serves: a node started with its clock past the idle timeout
//! would otherwise find every session expired.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use libp2p::PeerId;
use tokio::time::Instant;

use crate::clock::Corrected;

/// Offsets beyond this are reported (and corrected).
pub(crate) const TOLERANCE_MS: i64 = 5_000;
/// A median offset under this is noise (latency, NTP's own steps): left.
const DEADBAND_MS: i64 = 1_000;
/// Measurements older than this no longer count (the peer is gone).
const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// What this node knows of its peers' clocks.
#[derive(Debug)]
pub(crate) struct ClockSync {
    clock: Arc<Corrected>,
    /// Per peer: its clock minus this node's (ms), when measured, and
    /// whether it was reported as off.
    offsets: Mutex<HashMap<PeerId, (i64, Instant, bool)>>,
    /// How many times this node's clock was moved: a measurement whose
    /// round trip spans a move mixes two clocks and is dropped.
    steps: AtomicU64,
}

impl ClockSync {
    pub(crate) fn new(clock: Arc<Corrected>) -> Self {
        Self {
            clock,
            offsets: Mutex::default(),
            steps: AtomicU64::new(0),
        }
    }

    /// The count of moves so far, to pass to [`observe`](Self::observe)
    /// with the time a request is sent.
    pub(crate) fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// Records that `peer`'s clock read `theirs` between `sent` and
    /// `received` by this node's clock (`steps`: [`steps`](Self::steps)
    /// when it sent), and corrects this node's clock when most of its peers
    /// agree it is off. A round trip during which the clock moved is not a
    /// measurement: dropped, and `false` returned.
    pub(crate) fn observe(
        &self,
        peer: PeerId,
        theirs: u64,
        sent: u64,
        received: u64,
        steps: u64,
    ) -> bool {
        let middle = sent / 2 + received / 2;
        let offset = i64::try_from(theirs)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(middle).unwrap_or(i64::MAX));
        let mut offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        if self.steps() != steps {
            return false;
        }
        let now = Instant::now();
        offsets.retain(|_, (_, at, _)| now.duration_since(*at) < FORGET_AFTER);
        let reported = offsets.get(&peer).is_some_and(|o| o.2);
        let off = offset.abs() > TOLERANCE_MS;
        if off && !reported {
            tracing::warn!(%peer, offset_ms = offset, "a peer's clock is off by more than the tolerance; expiry assumes synchronised clocks (run NTP)");
        }
        offsets.insert(peer, (offset, now, off));
        let mut all: Vec<i64> = offsets.values().map(|o| o.0).collect();
        all.push(0);
        let step = median(&mut all);
        if step.abs() > DEADBAND_MS / 2 {
            tracing::warn!(by_ms = step, "moving this node's clock toward its peers'");
            self.clock.adjust(step);
            self.steps.fetch_add(1, Ordering::SeqCst);
            // What was measured is relative to the clock before the step.
            for o in offsets.values_mut() {
                o.0 = o.0.saturating_sub(step);
            }
        }
        true
    }

    /// How many peers' clocks have been measured (recently).
    pub(crate) fn measured(&self) -> usize {
        self.offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Each peer's clock minus this node's, in ms, as last measured.
    pub(crate) fn offsets(&self) -> Vec<(PeerId, i64)> {
        let offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        offsets.iter().map(|(p, o)| (*p, o.0)).collect()
    }

    /// What this node adds to its configured clock, in ms.
    pub(crate) fn correction_ms(&self) -> i64 {
        self.clock.correction_ms()
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [i64]) -> i64 {
    values.sort_unstable();
    let n = values.len();
    if n == 0 {
        return 0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        values[n / 2 - 1] / 2 + values[n / 2] / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const HOUR: u64 = 3_600_000;

    fn sync_at(ms: u64) -> (ClockSync, Arc<Corrected>) {
        let clock = Arc::new(Corrected::new(Arc::new(ManualClock::new(ms))));
        (ClockSync::new(Arc::clone(&clock)), clock)
    }

    #[test]
    fn a_lone_slow_node_joins_its_peers_and_they_do_not_follow_it() {
        let real = 100 * HOUR;
        let (slow, slow_clock) = sync_at(real - 2 * HOUR);
        let (good, good_clock) = sync_at(real);
        let (p1, p2) = (PeerId::random(), PeerId::random());
        for _ in 0..20 {
            // The slow node hears from two good peers.
            let t = slow_clock.now_ms();
            let _ = slow.observe(p1, real, t, t, slow.steps());
            let _ = slow.observe(p2, real, t, t, slow.steps());
            // A good node hears from the other good one and the slow one.
            let t = good_clock.now_ms();
            let _ = good.observe(p1, real, t, t, good.steps());
            let _ = good.observe(p2, slow_clock.now_ms(), t, t, good.steps());
        }
        assert!(slow_clock.now_ms().abs_diff(real) < 2_000, "joined");
        assert_eq!(good_clock.now_ms(), real, "the majority did not move");
    }

    /// A node restarted with its clock past the idle timeout must not judge
    /// sessions by it for long: its first two measurements set it right.
    /// (Moving half the way per measurement left it 19 minutes off.)
    #[test]
    fn a_node_far_ahead_joins_its_peers_at_its_second_measurement() {
        let real = 100 * HOUR;
        let (ahead, clock) = sync_at(real + 31 * 60_000);
        for _ in 0..2 {
            let t = clock.now_ms();
            let _ = ahead.observe(PeerId::random(), real, t, t, ahead.steps());
        }
        assert!(
            clock.now_ms().abs_diff(real) < 1_000,
            "{} ms off",
            clock.now_ms().abs_diff(real)
        );
    }

    /// Three requests in flight when the first answer moves the clock: the
    /// later answers' round trips mix the old clock and the new, and moved
    /// the clock twice more, past the peers (7.75 minutes of 31).
    #[test]
    fn a_round_trip_that_spans_a_move_is_not_a_measurement() {
        let real = 100 * HOUR;
        let ahead_by = 31 * 60_000;
        let (ahead, clock) = sync_at(real + ahead_by);
        let (a, c) = (PeerId::random(), PeerId::random());
        // Three requests sent at once: a probe of A, one of C, a digest to A.
        let (sent, steps) = (clock.now_ms(), ahead.steps());
        assert!(ahead.observe(a, real, sent, sent, steps));
        // The other two answers arrive after the moves they did not see.
        let taken = ahead.observe(c, real, sent, clock.now_ms(), steps);
        let taken = ahead.observe(a, real, sent, clock.now_ms(), steps) || taken;
        assert!(!taken, "round trips spanning a move are dropped");
        // C measured again.
        let t = clock.now_ms();
        assert!(ahead.observe(c, real, t, t, ahead.steps()));
        assert!(
            clock.now_ms().abs_diff(real) < 1_000,
            "{} ms off",
            clock.now_ms().abs_diff(real)
        );
    }

    #[test]
    fn noise_within_the_deadband_moves_nothing() {
        let (sync, clock) = sync_at(HOUR);
        for _ in 0..10 {
            let t = clock.now_ms();
            let _ = sync.observe(PeerId::random(), t + 400, t, t, sync.steps());
        }
        assert_eq!(sync.correction_ms(), 0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3, 1, 2]), 2);
        assert_eq!(median(&mut [0, 10]), 5);
        assert_eq!(median(&mut []), 0);
    }
}
