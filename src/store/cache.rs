use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;

use super::{Lineage, LineageId, Record};
use crate::doc::{SessionDoc, Summary};
use crate::id::DocKey;

/// Changes a peer pushed that are persisted (in the log, so a restart loads
/// them) but not applied to the in-memory document yet. A replica applies
/// them in one batch when the document is next used for anything (a
/// request, a sync, the sweeper) or when enough have queued: automerge's
/// cost of applying changes grows with the document's history, per batch,
/// so a replica that only receives pays it once per batch, not per change.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    /// The chunks, in arrival order (each one's dependencies come before it).
    pub(crate) chunks: Vec<Vec<u8>>,
    /// The document's heads once they are applied.
    pub(crate) heads: Vec<automerge::ChangeHash>,
    /// The highest seq of each actor in the document and the chunks, while
    /// there are chunks: a chunk that reuses one is not deferred.
    pub(crate) seqs: std::collections::HashMap<automerge::ActorId, u64>,
}

/// What an in-memory slot knows about one document.
// Nearly every slot holds a document, so boxing it would only add a pointer
// chase on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum SlotState {
    /// Not read from disk yet.
    Unloaded,
    /// Neither on disk nor tombstoned.
    Missing,
    /// Dead and collected; the key must not come back before the GC horizon.
    /// `ended`: invalidated or rotated, not merely expired.
    Tombstone { ended: bool },
    /// A document: the session's current lineage (`lineage`); `record` is
    /// `None` until its first change is on disk; `summary` is read out of
    /// `doc` after every change. `deferred` holds pushed changes that are on
    /// disk but not yet applied to `doc` (see [`Deferred`]). `others` lists
    /// the session's other lineages on disk (earlier generations kept for
    /// late changes, concurrent lineages), not loaded.
    Doc {
        doc: SessionDoc,
        record: Option<Record>,
        summary: Summary,
        deferred: Deferred,
        lineage: LineageId,
        others: Vec<Lineage>,
    },
}

/// One document's place in memory. Its lock serialises every change to the
/// document on this node, which is what keeps one process from writing two
/// different changes with the same (actor, seq).
#[derive(Debug)]
pub(crate) struct Slot {
    // std Mutex, not tokio's: it is held across RocksDB calls but never across
    // an `.await`, and taking it is cheaper.
    state: Mutex<SlotState>,
}

impl Slot {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding the lock leaves a state that was either fully
        // written or not at all (writes go to disk before the state changes),
        // so recovering the guard is sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    charge: usize,
}

#[derive(Debug)]
struct Inner {
    lru: LruCache<DocKey, Entry>,
    used: usize,
    /// Summaries of documents evicted from `lru` (never of a key `lru`
    /// holds): a read needs only the summary, and a loaded automerge
    /// document costs tens of KiB and tens of µs to load, a summary a few
    /// hundred bytes. Every write goes through a slot, and creating a slot
    /// drops the key's summary here, so what is here is what is on disk.
    kept: LruCache<DocKey, (Summary, usize)>,
    kept_used: usize,
}

/// A least-recently-used map of slots, bounded by an estimate of the bytes
/// the documents take in memory. A slot that a request still holds is never
/// evicted: two slots for one document would let two requests write as the
/// same actor without seeing each other. An evicted document leaves its
/// summary behind, in a second LRU bounded by a quarter of the capacity.
#[derive(Debug)]
pub(crate) struct Cache {
    // std Mutex: held only for a map lookup or update, never across I/O,
    // and evicted documents are dropped after it is released.
    inner: Mutex<Inner>,
    capacity: usize,
}

/// What an empty or unloaded slot is charged.
const SLOT_OVERHEAD: usize = 128;
/// What a kept summary is charged besides its attributes' size.
const SUMMARY_OVERHEAD: usize = 256;

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                used: 0,
                kept: LruCache::unbounded(),
                kept_used: 0,
            }),
            capacity,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot for `key`, created unloaded when absent.
    pub(crate) fn slot(&self, key: DocKey) -> Arc<Slot> {
        let mut inner = self.inner();
        if let Some(e) = inner.lru.get(&key) {
            return Arc::clone(&e.slot);
        }
        // The slot is the document's only writer from now on; its summary
        // comes back here when it is evicted.
        if let Some((_, charge)) = inner.kept.pop(&key) {
            inner.kept_used -= charge;
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Unloaded),
        });
        inner.lru.put(
            key,
            Entry {
                slot: Arc::clone(&slot),
                charge: SLOT_OVERHEAD,
            },
        );
        inner.used += SLOT_OVERHEAD;
        let evicted = self.evict(&mut inner);
        drop(inner);
        drop(evicted);
        slot
    }

    /// `f` of the summary kept for `key`, when its document was evicted
    /// and nothing has loaded it since (`None` otherwise: ask the slot).
    pub(crate) fn with_kept<R>(&self, key: DocKey, f: impl FnOnce(&Summary) -> R) -> Option<R> {
        let mut inner = self.inner();
        inner.kept.get(&key).map(|(summary, _)| f(summary))
    }

    /// Records how many bytes `key`'s document takes now.
    pub(crate) fn charge(&self, key: DocKey, bytes: usize) {
        let mut inner = self.inner();
        let bytes = bytes.max(SLOT_OVERHEAD);
        if let Some(e) = inner.lru.peek_mut(&key) {
            let old = std::mem::replace(&mut e.charge, bytes);
            inner.used = inner.used - old + bytes;
        }
        let evicted = self.evict(&mut inner);
        drop(inner);
        drop(evicted);
    }

    /// Documents loaded, and their estimated bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.lru.len(), inner.used)
    }

    /// Estimated bytes held.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.inner().used
    }

    /// Evicts least recently used slots no request holds until the
    /// documents fit, keeping their summaries; returns the evicted
    /// documents for the caller to drop once the lock is released (freeing
    /// an automerge document takes longer than everything else here).
    fn evict(&self, inner: &mut Inner) -> Vec<SessionDoc> {
        let mut evicted = Vec::new();
        let mut skipped = 0;
        while inner.used > self.capacity && skipped < inner.lru.len() {
            let Some((key, in_use)) = inner
                .lru
                .peek_lru()
                .map(|(k, e)| (*k, Arc::strong_count(&e.slot) > 1))
            else {
                break;
            };
            if in_use {
                inner.lru.promote(&key);
                skipped += 1;
                continue;
            }
            let Some((_, e)) = inner.lru.pop_lru() else {
                break;
            };
            inner.used -= e.charge;
            // Nobody else holds the slot (and nobody can take it while the
            // cache is locked), so its lock is free.
            let state = std::mem::replace(&mut *e.slot.lock(), SlotState::Unloaded);
            if let SlotState::Doc {
                doc,
                record,
                summary,
                deferred,
                ..
            } = state
            {
                // Deferred changes are on disk but not in the summary.
                if record.is_some() && deferred.chunks.is_empty() {
                    self.keep(inner, key, summary);
                }
                evicted.push(doc);
            }
        }
        evicted
    }

    fn keep(&self, inner: &mut Inner, key: DocKey, summary: Summary) {
        let charge = SUMMARY_OVERHEAD + 2 * summary.state_size();
        let budget = self.capacity / 4;
        if charge > budget {
            return;
        }
        inner.kept_used += charge;
        if let Some((_, (_, old))) = inner.kept.push(key, (summary, charge)) {
            inner.kept_used -= old;
        }
        while inner.kept_used > budget {
            match inner.kept.pop_lru() {
                Some((_, (_, c))) => inner.kept_used -= c,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;

    #[test]
    fn bounded_by_bytes_and_never_evicts_a_held_slot() {
        let cache = Cache::new(1_000);
        let held_key = SessionId::random().doc_key();
        let held = cache.slot(held_key);
        cache.charge(held_key, 600);
        for _ in 0..50 {
            let k = SessionId::random().doc_key();
            drop(cache.slot(k));
            cache.charge(k, 300);
        }
        assert!(cache.used() <= 1_000, "used {}", cache.used());
        // The held slot is still the one the cache hands out.
        assert!(Arc::ptr_eq(&held, &cache.slot(held_key)));
    }
}
