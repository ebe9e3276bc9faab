//! The background sweeper: every sweep interval, turn dead sessions into
//! tombstones and forget old tombstones (the task, and the sweep itself).
//! The task holds only a weak reference, so a node dropped without
//! `shutdown()` still lets it end.

use std::sync::{Arc, Weak};

use tokio::task::JoinHandle;

use std::sync::atomic::Ordering;

use super::handle::Inner;
use super::inner::ms;
use super::SweepReport;
use crate::clock::Millis;
use crate::doc::Status;
use crate::id::DocKey;
use crate::store::{DueKind, SlotState};
use crate::Error;

/// Index entries handled per sweep step.
const SWEEP_BATCH: usize = 1_000;

pub(super) fn spawn(inner: &Arc<Inner>) -> JoinHandle<()> {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let mut stop = inner.shutdown.subscribe();
    let period = inner.config.sweep_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick fires at once
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            if *stop.borrow() {
                return;
            }
            match inner.sweep() {
                Ok(r) if r.tombstoned + r.forgotten > 0 => {
                    tracing::debug!(tombstoned = r.tombstoned, forgotten = r.forgotten, "sweep");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed; will retry"),
            }
        }
    })
}

impl Inner {
    pub(crate) fn sweep(&self) -> Result<SweepReport, Error> {
        let mut report = SweepReport::default();
        loop {
            let now = self.now();
            let due = self.db.due(now, SWEEP_BATCH)?;
            for d in &due {
                match d.kind {
                    DueKind::Expire => {
                        if self.expire(d.key, d.at, now)? {
                            report.tombstoned += 1;
                        }
                    }
                    DueKind::Forget => {
                        self.with_slot(d.key, |inner, state| {
                            inner.db.forget(*d)?;
                            if matches!(state, SlotState::Tombstone { .. }) {
                                *state = SlotState::Missing;
                            }
                            Ok(())
                        })?;
                        report.forgotten += 1;
                    }
                }
            }
            if due.len() < SWEEP_BATCH {
                return Ok(report);
            }
        }
    }

    /// Tombstones `key` if it is dead and its grace has passed; returns
    /// whether it did.
    fn expire(&self, key: DocKey, at: Millis, now: Millis) -> Result<bool, Error> {
        self.with_slot(key, |inner, state| {
            let SlotState::Doc {
                record, summary, ..
            } = state
            else {
                inner.db.drop_due(crate::store::Due {
                    at,
                    kind: DueKind::Expire,
                    key,
                })?;
                return Ok(false);
            };
            let Some(rec) = *record else { return Ok(false) };
            let status = summary.status(now);
            let due_at = inner.index_time(summary, now);
            if status == Status::Live || (status == Status::Expired && due_at > now) {
                // Accessed elsewhere meanwhile, or still in its grace.
                *record = Some(inner.db.reschedule(key, rec, due_at)?);
                return Ok(false);
            }
            let ended = matches!(status, Status::Invalidated | Status::Rotated(_));
            let forget_at = now.saturating_add(ms(inner.config.gc_horizon));
            inner.db.tombstone(key, Some(rec), now, forget_at, ended)?;
            *state = SlotState::Tombstone { ended };
            inner.sessions.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(session = %key.short(), ended, "tombstoned");
            Ok(true)
        })
    }
}
