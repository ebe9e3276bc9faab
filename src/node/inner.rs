//! The node's work under each document's lock: load, create, commit, rotate
//! and sweep. Every write follows one rule: apply to the latest document,
//! check the size, commit, persist; if persisting fails, the slot is reset so
//! the next access reads what is really on disk.

use std::sync::atomic::Ordering;

use automerge::ChangeHash;

use super::handle::Inner;
use super::{SessionView, SweepReport};
use crate::clock::Millis;
use crate::doc::{Op, SessionDoc, Status};
use crate::id::DocKey;
use crate::store::{DueKind, Record, SlotState, Stored};
use crate::Error;

/// Index entries handled per sweep step.
const SWEEP_BATCH: usize = 1_000;

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    fn now(&self) -> Millis {
        self.config.clock.now_ms()
    }

    /// How stale this node's last-access register may get: the configured
    /// interval, but at most a tenth of the session's idle timeout.
    fn touch_interval(&self, max_idle_ms: u64) -> u64 {
        let cfg = ms(self.config.touch_interval);
        match max_idle_ms {
            0 => cfg,
            idle => cfg.min(idle / 10),
        }
    }

    /// Locks `key`'s slot, reading the document from disk on first use.
    fn with_slot<R>(
        &self,
        key: DocKey,
        f: impl FnOnce(&Self, &mut SlotState) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let slot = self.cache.slot(key);
        let mut state = slot.lock();
        if matches!(*state, SlotState::Unloaded) {
            *state = self.read(key)?;
        }
        let result = f(self, &mut state);
        // In memory a document takes a few times its compressed size.
        let charge = match &*state {
            SlotState::Doc {
                record: Some(r), ..
            } => usize::try_from(r.bytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(4),
            _ => 0,
        };
        drop(state);
        self.cache.charge(key, charge);
        result
    }

    fn read(&self, key: DocKey) -> Result<SlotState, Error> {
        Ok(match self.db.load(key)? {
            Stored::Missing => SlotState::Missing,
            Stored::Tombstone => SlotState::Tombstone,
            Stored::Doc { bytes, record } => {
                let doc = SessionDoc::load(&bytes, self.actor.clone())
                    .map_err(crate::store::Error::from)?;
                let summary = doc.summary().map_err(crate::store::Error::from)?;
                SlotState::Doc {
                    doc,
                    record: Some(record),
                    summary,
                }
            }
        })
    }

    pub(super) fn load(&self, key: DocKey) -> Result<Option<SessionView>, Error> {
        self.with_slot(key, |inner, state| {
            let now = inner.now();
            let SlotState::Doc { doc, summary, .. } = state else {
                return Ok(None);
            };
            if summary.status(now) != Status::Live {
                return Ok(None);
            }
            let interval = inner.touch_interval(summary.max_idle_ms);
            if summary
                .last_access
                .is_some_and(|t| now.saturating_sub(t) >= interval)
            {
                let heads = doc.heads();
                doc.touch(inner.node_id, now)?;
                inner.commit_slot(key, state, &heads, now, false)?;
            }
            Ok(live_view(state, now))
        })
    }

    pub(super) fn create(
        &self,
        key: DocKey,
        ops: &[Op],
        from: Option<&SessionDoc>,
    ) -> Result<SessionView, Error> {
        self.with_slot(key, |inner, state| {
            if !matches!(state, SlotState::Missing) {
                return Err(Error::IdCollision);
            }
            let now = inner.now();
            let absolute = match ms(inner.config.absolute_timeout) {
                0 => 0,
                t => now.saturating_add(t),
            };
            let idle = ms(inner.config.max_idle);
            let mut doc = SessionDoc::new(inner.actor.clone(), inner.node_id, now, idle, absolute);
            if let Some(old) = from {
                doc.set_expiry(
                    old.expiry_mode(),
                    old.max_idle_ms(),
                    old.absolute_expiry_ms(),
                )?;
                doc.copy_attributes_from(old, inner.node_id)?;
            }
            apply_all(&mut doc, ops, inner)?;
            let summary = doc.summary()?;
            *state = SlotState::Doc {
                doc,
                record: None,
                summary,
            };
            if let Err(e) = inner.commit_slot(key, state, &[], now, true) {
                *state = SlotState::Missing;
                return Err(e);
            }
            inner.sessions.fetch_add(1, Ordering::Relaxed);
            match state {
                SlotState::Doc { summary, .. } => Ok(SessionView::of(summary)),
                _ => Err(Error::Store(crate::store::Error::Corrupt(
                    "created session vanished".into(),
                ))),
            }
        })
    }

    pub(super) fn commit(&self, key: DocKey, ops: &[Op]) -> Result<Option<SessionView>, Error> {
        self.with_slot(key, |inner, state| {
            let now = inner.now();
            let SlotState::Doc { doc, summary, .. } = state else {
                return Ok(None);
            };
            if summary.status(now) != Status::Live {
                return Ok(None);
            }
            let heads = doc.heads();
            apply_all(doc, ops, inner)?;
            inner.commit_slot(key, state, &heads, now, true)?;
            // An invalidation in `ops` is answered like any other end.
            Ok(live_view(state, now))
        })
    }

    pub(super) fn rotate(
        &self,
        old: DocKey,
        new: DocKey,
        ops: &[Op],
    ) -> Result<Option<SessionView>, Error> {
        self.with_slot(old, |inner, state| {
            let now = inner.now();
            let SlotState::Doc { doc, summary, .. } = state else {
                return Ok(None);
            };
            if summary.status(now) != Status::Live {
                return Ok(None);
            }
            // The new session is on disk before the old one dies: a crash in
            // between leaves both, never neither.
            let view = inner.create(new, ops, Some(doc))?;
            let heads = doc.heads();
            doc.set_successor(new)?;
            inner.commit_slot(old, state, &heads, now, false)?;
            Ok(Some(view))
        })
    }

    /// Commits the pending operations of the document in `state` and
    /// persists the change.
    fn commit_slot(
        &self,
        key: DocKey,
        state: &mut SlotState,
        heads: &[ChangeHash],
        now: Millis,
        check_size: bool,
    ) -> Result<(), Error> {
        let SlotState::Doc {
            doc,
            record,
            summary,
        } = state
        else {
            return Ok(());
        };
        if check_size {
            let size = doc.state_size();
            if size > self.config.max_session_bytes {
                doc.rollback();
                return Err(Error::TooLarge {
                    size,
                    limit: self.config.max_session_bytes,
                });
            }
        }
        if doc.commit().is_none() {
            return Ok(());
        }
        let persisted = doc.summary().map_err(Error::from).and_then(|fresh| {
            let deadline = match fresh.status(now) {
                Status::Live => fresh.deadline.unwrap_or(now),
                _ => now,
            };
            self.persist(key, doc, record, heads, deadline)?;
            Ok(fresh)
        });
        match persisted {
            Ok(fresh) => *summary = fresh,
            Err(e) => {
                tracing::error!(session = %key.short(), error = %e, "persist failed; change dropped");
                *state = SlotState::Unloaded;
                return Err(e);
            }
        }
        Ok(())
    }

    fn persist(
        &self,
        key: DocKey,
        doc: &mut SessionDoc,
        record: &mut Option<Record>,
        heads: &[ChangeHash],
        deadline: Millis,
    ) -> Result<(), Error> {
        let chunk = doc.save_after(heads);
        let mut rec = self.db.append(key, &chunk, *record, deadline)?;
        if rec.log_count >= self.config.compact_every {
            // The change is durable already; a failed compaction only means
            // the log stays longer.
            match self.db.compact(key, &doc.save(), rec) {
                Ok(r) => rec = r,
                Err(e) => tracing::warn!(session = %key.short(), error = %e, "compaction failed"),
            }
        }
        *record = Some(rec);
        Ok(())
    }

    pub(super) fn sweep(&self) -> Result<SweepReport, Error> {
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
                            if matches!(state, SlotState::Tombstone) {
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

    /// Tombstones `key` if it is dead; returns whether it did.
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
            if summary.status(now) == Status::Live {
                // The index was behind the document: move it.
                let deadline = summary.deadline.unwrap_or(now);
                *record = Some(inner.db.reschedule(key, rec, deadline)?);
                return Ok(false);
            }
            let forget_at = now.saturating_add(ms(inner.config.gc_horizon));
            inner.db.tombstone(key, Some(rec), now, forget_at)?;
            *state = SlotState::Tombstone;
            inner.sessions.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(session = %key.short(), "tombstoned");
            Ok(true)
        })
    }
}

fn apply_all(doc: &mut SessionDoc, ops: &[Op], inner: &Inner) -> Result<(), Error> {
    for op in ops {
        if let Err(e) = doc.apply(op, inner.node_id) {
            doc.rollback();
            return Err(e.into());
        }
    }
    Ok(())
}

fn live_view(state: &SlotState, now: Millis) -> Option<SessionView> {
    match state {
        SlotState::Doc { summary, .. } if summary.status(now) == Status::Live => {
            Some(SessionView::of(summary))
        }
        _ => None,
    }
}
