//! The sweep: walk the expiry index, turn dead sessions whose grace has
//! passed into tombstones, and forget tombstones past the GC horizon.

use super::shared::{ms, Shared};
use super::slots::{undecodable, with_slot};
use super::view::SweepReport;
use crate::clock::Millis;
use crate::doc::Status;
use crate::events::{EventKind, Origin};
use crate::id::DocKey;
use crate::store::{Due, DueKind, SlotState};
use crate::Error;

/// Index entries handled per sweep step.
const SWEEP_BATCH: usize = 1_000;

pub(crate) fn sweep(shared: &Shared) -> Result<SweepReport, Error> {
    let mut report = SweepReport::default();
    loop {
        let now = shared.now();
        let due = shared.store()?.due(now, SWEEP_BATCH)?;
        let mut progress = false;
        for d in &due {
            let done = match d.kind {
                DueKind::Expire => expire(shared, d.key, d.at, now).map(|tombstoned| {
                    report.tombstoned += usize::from(tombstoned);
                }),
                DueKind::Forget => with_slot(shared, d.key, |state| {
                    shared.store()?.forget(*d)?;
                    if matches!(state, SlotState::Tombstone { .. }) {
                        *state = SlotState::Missing;
                    }
                    report.forgotten += 1;
                    Ok(())
                }),
            };
            // One entry that fails does not stop the sweep: report it and
            // go on. A document that does not load was moved aside on the
            // way (see `with_slot`); drop its entry too.
            match done {
                Ok(()) => progress = true,
                Err(e) if undecodable(&e) => {
                    shared.store()?.drop_due(*d)?;
                    report.quarantined += 1;
                    progress = true;
                }
                Err(e) => {
                    tracing::warn!(session = %d.key.short(), error = %e, "sweep skipped a session");
                    report.failed += 1;
                }
            }
        }
        // A full batch of entries that all failed would come back first
        // next time round: stop until the next sweep.
        if due.len() < SWEEP_BATCH || !progress {
            return Ok(report);
        }
    }
}

/// Tombstones `key` if it is dead and its grace has passed; returns whether
/// it did.
fn expire(shared: &Shared, key: DocKey, at: Millis, now: Millis) -> Result<bool, Error> {
    with_slot(shared, key, |state| {
        let SlotState::Doc {
            record, summary, ..
        } = state
        else {
            shared.store()?.drop_due(Due {
                at,
                kind: DueKind::Expire,
                key,
            })?;
            return Ok(false);
        };
        let Some(rec) = *record else { return Ok(false) };
        let status = summary.status(now);
        let due_at = shared.index_time(summary, now);
        if status == Status::Live || (status == Status::Expired && due_at > now) {
            // Accessed elsewhere meanwhile, or still in its grace.
            *record = Some(shared.store()?.reschedule(key, rec, due_at)?);
            return Ok(false);
        }
        let ended = matches!(status, Status::Invalidated | Status::Rotated(_));
        // Kept past every copy's own deadline: a node that was away with a
        // copy cannot bring the session back after the tombstone goes.
        let forget_at = now.saturating_add(ms(shared.config().gc_horizon())).max(
            match summary.absolute_expiry_ms {
                0 => 0,
                at => at.saturating_add(ms(shared.config().tombstone_grace())),
            },
        );
        shared
            .store()?
            .tombstone(key, Some(rec), now, forget_at, ended)?;
        *state = SlotState::Tombstone { ended };
        shared.count_session(false);
        if status == Status::Expired {
            shared.emit(key, EventKind::Expired, Origin::Local);
        }
        tracing::debug!(session = %key.short(), ended, "tombstoned");
        Ok(true)
    })
}
