//! The node's work under each document's lock: load, create, commit and
//! rotate (the sweep's is in [`sweeper`](super::sweeper)). Every write
//! follows one rule: apply to the latest document, check the size, commit,
//! persist; if persisting fails, the slot is reset so the next access reads
//! what is really on disk. Each persisted change comes back as a chunk for
//! the replicator to push.

use std::sync::atomic::Ordering;

use automerge::ChangeHash;

use super::handle::Inner;
use super::SessionView;
use crate::clock::Millis;
use crate::doc::{written_keys, Op, SessionDoc, Status, Summary};
use crate::id::DocKey;
use crate::store::{Deferred, Record, SlotState, Stored};
use crate::Error;

/// Fixed memory of one loaded document (automerge's op set and indexes).
const DOC_OVERHEAD: usize = 24 << 10;
/// Memory per byte of a document's compressed size.
const DOC_BYTES_FACTOR: usize = 8;

/// Change chunks persisted by an operation, to push to peers in order.
pub(crate) type Pushes = Vec<(DocKey, Vec<u8>)>;

/// What a load found.
#[derive(Debug)]
pub(crate) enum Loaded {
    Live(SessionView),
    /// Known here, but expired, invalidated, rotated or tombstoned.
    Gone,
    /// Never heard of: peers may know it.
    Missing,
}

pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    pub(crate) fn now(&self) -> Millis {
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

    /// Whether a read at `now` must advance this node's last-access
    /// register (it is older than the touch interval).
    fn touch_due(&self, summary: &Summary, now: Millis) -> bool {
        let interval = self.touch_interval(summary.max_idle_ms);
        summary
            .last_access
            .is_some_and(|t| now.saturating_sub(t) >= interval)
    }

    /// Where a document sits in the expiry index: its deadline plus the
    /// tombstone grace (so peers hear of an end before the document goes).
    pub(crate) fn index_time(&self, summary: &Summary, now: Millis) -> Millis {
        let at = match summary.status(now) {
            Status::Live | Status::Expired => summary.deadline.unwrap_or(now),
            _ => now,
        };
        at.saturating_add(ms(self.config.tombstone_grace))
    }

    /// Locks `key`'s slot, reading the document from disk on first use and
    /// applying any deferred changes, so `f` sees the whole document.
    pub(crate) fn with_slot<R>(
        &self,
        key: DocKey,
        f: impl FnOnce(&Self, &mut SlotState) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.with_slot_deferred(key, |inner, state| {
            inner.settle(key, state)?;
            f(inner, state)
        })
    }

    /// [`with_slot`](Self::with_slot) without applying deferred changes:
    /// for a push, which may defer one more.
    pub(crate) fn with_slot_deferred<R>(
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
        // What a loaded document costs in memory, measured (benches/compare,
        // `--only memory`): about 24 KiB of automerge structures per
        // document, plus several times its compressed size.
        let charge = match &*state {
            SlotState::Doc {
                record: Some(r),
                deferred,
                ..
            } => usize::try_from(r.bytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(DOC_BYTES_FACTOR)
                .saturating_add(DOC_OVERHEAD)
                .saturating_add(deferred.chunks.iter().map(Vec::len).sum()),
            _ => 0,
        };
        drop(state);
        self.cache.charge(key, charge);
        result
    }

    fn read(&self, key: DocKey) -> Result<SlotState, Error> {
        Ok(match self.db.load(key)? {
            Stored::Missing => SlotState::Missing,
            Stored::Tombstone { ended } => SlotState::Tombstone { ended },
            Stored::Doc { bytes, record } => {
                let doc = SessionDoc::load(&bytes, self.actor.clone())
                    .map_err(crate::store::Error::from)?;
                let summary = doc.summary().map_err(crate::store::Error::from)?;
                SlotState::Doc {
                    doc,
                    record: Some(record),
                    summary,
                    deferred: Deferred::default(),
                }
            }
        })
    }

    pub(crate) fn load(&self, key: DocKey) -> Result<(Loaded, Pushes), Error> {
        // A document evicted from the cache left its summary: enough for a
        // read that records no access.
        let now = self.now();
        let kept = self.cache.with_kept(key, |summary| {
            if summary.status(now) != Status::Live {
                return Some(Loaded::Gone);
            }
            (!self.touch_due(summary, now)).then(|| Loaded::Live(SessionView::of(summary)))
        });
        if let Some(Some(found)) = kept {
            return Ok((found, Vec::new()));
        }
        self.with_slot(key, |inner, state| {
            let now = inner.now();
            let SlotState::Doc { doc, summary, .. } = state else {
                let found = match state {
                    SlotState::Missing => Loaded::Missing,
                    _ => Loaded::Gone,
                };
                return Ok((found, Vec::new()));
            };
            if summary.status(now) != Status::Live {
                return Ok((Loaded::Gone, Vec::new()));
            }
            let mut pushes = Vec::new();
            if inner.touch_due(summary, now) {
                let heads = doc.heads();
                doc.touch(inner.node_id, now)?;
                if let Some(chunk) = inner.commit_slot(key, state, &heads, now)? {
                    pushes.push((key, chunk));
                }
            }
            Ok((
                live_view(state, now).map_or(Loaded::Gone, Loaded::Live),
                pushes,
            ))
        })
    }

    pub(crate) fn create(
        &self,
        key: DocKey,
        ops: &[Op],
        from: Option<&SessionDoc>,
    ) -> Result<(SessionView, Pushes), Error> {
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
            inner.check_size(summary.state_size())?;
            *state = SlotState::Doc {
                doc,
                record: None,
                summary,
                deferred: Deferred::default(),
            };
            let chunk = match inner.commit_slot(key, state, &[], now) {
                Ok(chunk) => chunk,
                Err(e) => {
                    *state = SlotState::Missing;
                    return Err(e);
                }
            };
            inner.sessions.fetch_add(1, Ordering::Relaxed);
            let view = match state {
                SlotState::Doc { summary, .. } => SessionView::of(summary),
                _ => {
                    return Err(
                        crate::store::Error::Corrupt("created session vanished".into()).into(),
                    )
                }
            };
            Ok((view, chunk.map(|c| (key, c)).into_iter().collect()))
        })
    }

    pub(crate) fn commit(
        &self,
        key: DocKey,
        ops: &[Op],
    ) -> Result<(Option<SessionView>, Pushes), Error> {
        self.with_slot(key, |inner, state| {
            let now = inner.now();
            let SlotState::Doc { doc, summary, .. } = state else {
                return Ok((None, Vec::new()));
            };
            if summary.status(now) != Status::Live {
                return Ok((None, Vec::new()));
            }
            let after = summary.after(ops);
            inner.check_size(after.size)?;
            if let Some(key) = after.overflow {
                return Err(crate::doc::Error::Overflow { key }.into());
            }
            let heads = doc.heads();
            apply_all(doc, ops, inner)?;
            let chunk = inner.commit_slot(key, state, &heads, now)?;
            // An invalidation in `ops` is answered like any other end.
            Ok((
                live_view(state, now),
                chunk.map(|c| (key, c)).into_iter().collect(),
            ))
        })
    }

    pub(crate) fn rotate(
        &self,
        old: DocKey,
        new: DocKey,
        ops: &[Op],
    ) -> Result<(Option<SessionView>, Pushes), Error> {
        self.with_slot(old, |inner, state| {
            let now = inner.now();
            let SlotState::Doc { doc, summary, .. } = state else {
                return Ok((None, Vec::new()));
            };
            if summary.status(now) != Status::Live {
                return Ok((None, Vec::new()));
            }
            // The new session is on disk before the old one dies: a crash in
            // between leaves both, never neither.
            let (view, mut pushes) = inner.create(new, ops, Some(doc))?;
            let heads = doc.heads();
            doc.set_successor(new)?;
            if let Some(chunk) = inner.commit_slot(old, state, &heads, now)? {
                pushes.push((old, chunk));
            }
            Ok((Some(view), pushes))
        })
    }

    /// Refuses a write that would leave the session over its size limit.
    fn check_size(&self, size: usize) -> Result<(), Error> {
        let limit = self.config.max_session_bytes;
        if size > limit {
            return Err(Error::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Commits the pending operations of the document in `state`, persists
    /// the change and returns its chunk (`None` when nothing changed).
    fn commit_slot(
        &self,
        key: DocKey,
        state: &mut SlotState,
        heads: &[ChangeHash],
        now: Millis,
    ) -> Result<Option<Vec<u8>>, Error> {
        let SlotState::Doc { doc, .. } = state else {
            return Ok(None);
        };
        if doc.commit().is_none() {
            return Ok(None);
        }
        // The change just made, as a chunk. (automerge's
        // `get_last_local_change` would do, but it keeps memory in the
        // document: RSS grew eightfold over 100,000 sessions.)
        let chunk = doc.save_after(heads);
        self.persist_slot(key, state, heads, now, Some(chunk))
            .map(Some)
    }

    /// Persists whatever the document in `state` gained since `heads` and
    /// refreshes its summary; on failure the slot is reset to what is on disk.
    /// `exact` is the chunk of the one change the document gained, when the
    /// caller knows it (a local commit, a push that applied as is): it is
    /// stored as is and only the keys it wrote are read again. Otherwise the
    /// gain is extracted from the document and the summary read in full.
    pub(crate) fn persist_slot(
        &self,
        key: DocKey,
        state: &mut SlotState,
        heads: &[ChangeHash],
        now: Millis,
        exact: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, Error> {
        let SlotState::Doc {
            doc,
            record,
            summary,
            ..
        } = state
        else {
            return Ok(Vec::new());
        };
        let written = exact.as_deref().and_then(written_keys);
        let result = summary
            .update(doc, written.as_deref())
            .map_err(Error::from)
            .and_then(|()| {
                let chunk = match exact {
                    Some(chunk) => chunk,
                    None => doc.save_after(heads),
                };
                let at = self.index_time(summary, now);
                let rec = self.db.append(key, &chunk, *record, at, doc.heads_hash())?;
                Ok((self.compact_if_due(key, doc, rec), chunk))
            });
        match result {
            Ok((rec, chunk)) => {
                *record = Some(rec);
                Ok(chunk)
            }
            Err(e) => {
                tracing::error!(session = %key.short(), error = %e, "persist failed; change dropped");
                *state = SlotState::Unloaded;
                Err(e)
            }
        }
    }

    /// Folds `key`'s log into a snapshot of `doc` once it is long enough
    /// and returns the record as it now stands. The log is durable already:
    /// a failed compaction only means it stays longer.
    pub(crate) fn compact_if_due(&self, key: DocKey, doc: &mut SessionDoc, rec: Record) -> Record {
        if rec.log_count < self.config.compact_every {
            return rec;
        }
        match self.db.compact(key, &doc.save(), rec) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(session = %key.short(), error = %e, "compaction failed");
                rec
            }
        }
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

pub(crate) fn live_view(state: &SlotState, now: Millis) -> Option<SessionView> {
    match state {
        SlotState::Doc { summary, .. } if summary.status(now) == Status::Live => {
            Some(SessionView::of(summary))
        }
        _ => None,
    }
}
