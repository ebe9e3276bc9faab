//! What every engine operation works with: the store, the document cache,
//! this process's actor, the limits — and the two steps every write ends
//! with: read a document into its slot, persist what it gained.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use automerge::{ActorId, ChangeHash};

use super::principals::principal_of;
use crate::clock::Millis;
use crate::doc::{hash_heads, written_keys, SessionDoc, Status, Summary};
use crate::events::{Event, EventKind, Origin};
use crate::id::{random_bytes, DocKey, NodeId};
use crate::metrics::Metrics;
use crate::store::{
    Cache, Db, Deferred, DirLock, LineageId, SlotState, Storage, Stored, IDENTITY_FILE,
};
use crate::{Config, Error};

/// One change persisted by an operation, to push to peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Push {
    /// The session's document key.
    pub(crate) key: DocKey,
    /// The lineage the change belongs to.
    pub(crate) lineage: LineageId,
    /// Exactly one automerge change, shared by every peer's queue.
    pub(crate) chunk: std::sync::Arc<[u8]>,
}

/// Changes persisted by an operation, to push to peers in order.
pub(crate) type Pushes = Vec<Push>;

/// What anti-entropy digests compare for a session whose current lineage
/// is `lineage` with `heads`: the heads alone in generation 0 (as before
/// generations), the lineage with them after.
pub(crate) fn digest_hash(lineage: LineageId, heads: &[ChangeHash]) -> u64 {
    match lineage.base {
        None => hash_heads(heads),
        Some(base) => {
            let mut all = heads.to_vec();
            all.push(ChangeHash(base));
            hash_heads(&all) ^ u64::from(lineage.gen).rotate_left(32)
        }
    }
}

/// Wraps the store a node opens, e.g. in a fault-injecting layer for tests.
pub(crate) type Wrap = Box<dyn FnOnce(Box<dyn Storage>) -> Box<dyn Storage> + Send>;

pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The store while the node is open, and the directory lock that goes with
/// it. Fields drop in order: the store closes before the lock is released.
#[derive(Debug)]
struct Open {
    store: Box<dyn Storage>,
    _lock: DirLock,
}

/// A read guard on the open store.
pub(crate) struct StoreRef<'a>(RwLockReadGuard<'a, Option<Open>>);

impl std::ops::Deref for StoreRef<'_> {
    type Target = dyn Storage;

    fn deref(&self) -> &Self::Target {
        // `Shared::store` hands out a guard only while the store is open.
        match self.0.as_ref() {
            Some(open) => open.store.as_ref(),
            None => unreachable!("a StoreRef exists only for an open store"),
        }
    }
}

/// The engine's state; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Shared {
    /// `None` once closed. Every store call holds it shared; closing takes
    /// it exclusively, so it waits for the calls in flight and then releases
    /// the directory. std `RwLock`: never held across an `.await`.
    store: RwLock<Option<Open>>,
    cache: Cache,
    config: Config,
    node_id: NodeId,
    /// Fresh per process start: a restarted node that lost its last
    /// unflushed change must never write another change under the same
    /// (actor, seq).
    actor: ActorId,
    /// Documents stored here (live or dead and not yet tombstoned).
    sessions: AtomicUsize,
    /// What the node reports to Prometheus (every layer counts here).
    pub(crate) metrics: Metrics,
    /// Lifecycle events, to every subscriber.
    events: tokio::sync::broadcast::Sender<Event>,
}

/// Fixed memory of one loaded document (automerge's op set and indexes).
const DOC_OVERHEAD: usize = 24 << 10;
/// How far ahead of this node's clock another node's times may be before
/// they are taken as this node's now plus this (see [`Shared::clamp`]).
const CLOCK_TOLERANCE_MS: Millis = 5_000;
/// Memory per byte of a document's compressed size.
const DOC_BYTES_FACTOR: usize = 8;

impl Shared {
    /// Creates and locks the data directory, opens RocksDB in it (through
    /// `wrap`, when given) and reads the node's identity.
    pub(crate) fn open(config: Config, wrap: Option<Wrap>) -> Result<Self, Error> {
        config.validate()?;
        let dir = config.data_dir();
        let data_dir = |source| Error::DataDir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(data_dir)?;
        let lock = DirLock::acquire(dir)
            .map_err(data_dir)?
            .ok_or_else(|| Error::AlreadyOpen {
                path: dir.to_path_buf(),
            })?;
        let db = Db::open_with(Path::new(dir), config.durability(), config.wal_salvage())?;
        db.move_legacy_identity(&dir.join(IDENTITY_FILE))?;
        let node_id = db.node_id()?;
        let store: Box<dyn Storage> = match wrap {
            Some(wrap) => wrap(Box::new(db)),
            None => Box::new(db),
        };
        let sessions = store.count()?;
        Ok(Self {
            store: RwLock::new(Some(Open { store, _lock: lock })),
            cache: Cache::new(config.cache_bytes()),
            node_id,
            actor: ActorId::from(random_bytes::<16>()),
            sessions: AtomicUsize::new(sessions),
            metrics: Metrics::new(),
            events: tokio::sync::broadcast::Sender::new(crate::events::CAPACITY),
            config,
        })
    }

    /// A receiver of every lifecycle event from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Reports `kind` for `key` (no one listening is fine).
    pub(crate) fn emit(&self, key: DocKey, kind: EventKind, origin: Origin) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Event {
                session: key,
                kind,
                origin,
                at: self.now(),
            });
        }
    }

    /// Reports what a document's new summary says happened to it: created
    /// (`existed`: it was stored here before), or ended since `ended`.
    pub(crate) fn emit_changes(
        &self,
        key: DocKey,
        existed: bool,
        ended: Option<Status>,
        summary: &Summary,
        origin: Origin,
    ) {
        if !existed && summary.ended.is_none() && summary.deadline.is_some() {
            self.emit(key, EventKind::Created, origin);
        }
        if ended.is_none() {
            match summary.ended {
                Some(Status::Invalidated) => self.emit(key, EventKind::Invalidated, origin),
                Some(Status::Rotated(to)) => self.emit(key, EventKind::Rotated { to }, origin),
                _ => {}
            }
        }
    }

    /// The store, or [`Error::Shutdown`] once closed.
    pub(crate) fn store(&self) -> Result<StoreRef<'_>, Error> {
        let guard = self.store.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(Error::Shutdown);
        }
        Ok(StoreRef(guard))
    }

    /// Closes the store (after the calls in flight), flushing it first when
    /// asked, and releases the data directory. Later calls answer
    /// [`Error::Shutdown`].
    pub(crate) fn close(&self, flush: bool) -> Result<(), Error> {
        let mut guard = self.store.write().unwrap_or_else(PoisonError::into_inner);
        let result = match (&*guard, flush) {
            (Some(open), true) => open.store.flush(),
            _ => Ok(()),
        };
        *guard = None;
        Ok(result?)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub(crate) fn actor(&self) -> ActorId {
        self.actor.clone()
    }

    pub(crate) fn now(&self) -> Millis {
        self.config.clock().now_ms()
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// One more (`true`) or one fewer session stored here.
    pub(crate) fn count_session(&self, added: bool) {
        if added {
            self.sessions.fetch_add(1, Ordering::Relaxed);
        } else {
            self.sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// How stale this node's last-access register may get: the configured
    /// interval, but at most a tenth of the session's idle timeout.
    fn touch_interval(&self, max_idle_ms: u64) -> u64 {
        let cfg = ms(self.config.touch_interval());
        match max_idle_ms {
            0 => cfg,
            idle => cfg.min(idle / 10),
        }
    }

    /// Whether a read at `now` must advance this node's last-access
    /// register (it is older than the touch interval).
    pub(crate) fn touch_due(&self, summary: &Summary, now: Millis) -> bool {
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
        at.saturating_add(ms(self.config.tombstone_grace()))
    }

    /// The summary of `doc`, a document of generation `gen`, as the engine
    /// keeps it (its last access bounded, see [`Shared::clamp`]).
    pub(crate) fn summary_of(
        &self,
        doc: &mut SessionDoc,
        gen: u32,
    ) -> Result<Summary, crate::doc::Error> {
        let mut summary = doc.summary()?;
        summary.gen = gen;
        self.clamp(&mut summary);
        Ok(summary)
    }

    /// Bounds `summary`'s last access by this node's clock plus the clock
    /// tolerance (see [`Summary::clamp_future`]): every summary the engine
    /// keeps goes through here once read or updated.
    pub(crate) fn clamp(&self, summary: &mut Summary) {
        summary.clamp_future(self.now().saturating_add(CLOCK_TOLERANCE_MS));
    }

    /// Refuses a write that would leave the session over its size limit
    /// and larger than it was (`before`). A session can be over the limit
    /// through a merge (two nodes each wrote within it): writes that do not
    /// grow it (removals, increments of existing counters, smaller values,
    /// a rotation) still go through, so it can be brought back under.
    pub(crate) fn check_size(&self, before: usize, size: usize) -> Result<(), Error> {
        let limit = self.config.max_session_bytes();
        if size > limit && size > before {
            return Err(Error::TooLarge { size, limit });
        }
        Ok(())
    }

    /// What `key` holds on disk, read into a slot's state.
    #[tracing::instrument(name = "store.read", level = "trace", skip_all, fields(session = %key.short()))]
    pub(crate) fn read(&self, key: DocKey) -> Result<SlotState, Error> {
        Ok(match self.store()?.load(key)? {
            Stored::Missing => SlotState::Missing,
            Stored::Tombstone { ended } => SlotState::Tombstone { ended },
            Stored::Doc {
                bytes,
                record,
                others,
            } => {
                let mut doc =
                    SessionDoc::load(&bytes, self.actor()).map_err(crate::store::Error::from)?;
                let summary = self
                    .summary_of(&mut doc, record.lineage.gen)
                    .map_err(crate::store::Error::from)?;
                SlotState::Doc {
                    doc,
                    record: Some(record),
                    summary,
                    deferred: Deferred::default(),
                    lineage: record.lineage,
                    others,
                }
            }
        })
    }

    /// What the document in `state` costs in memory, as the cache counts
    /// it. Measured (benches/compare, `--only memory`): about 24 KiB of
    /// automerge structures per document, plus several times its
    /// compressed size.
    pub(crate) fn charge(state: &SlotState) -> usize {
        match state {
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
        }
    }

    /// Persists whatever the document in `state` gained since `heads` and
    /// refreshes its summary; on failure the slot is reset to what is on disk
    /// and the error returned. `exact` is the chunk of the one change the
    /// document gained, when the caller knows it (a local commit, a push that
    /// applied as is): it is stored as is and only the keys it wrote are
    /// read again. Otherwise the gain is extracted from the document and the
    /// summary read in full. The write that would fill the change log to
    /// `compact_every` writes the whole document instead (compaction).
    /// Returns the chunk of what was gained.
    #[tracing::instrument(name = "store.persist", level = "trace", skip_all, fields(session = %key.short()))]
    pub(crate) fn persist(
        &self,
        key: DocKey,
        state: &mut SlotState,
        heads: &[ChangeHash],
        now: Millis,
        exact: Option<Vec<u8>>,
        origin: Origin,
    ) -> Result<Vec<u8>, Error> {
        let SlotState::Doc {
            doc,
            record,
            summary,
            lineage,
            ..
        } = state
        else {
            return Ok(Vec::new());
        };
        let lineage = *lineage;
        let written = exact.as_deref().and_then(written_keys);
        // Indexed before when the document was stored here before (a new one
        // may come with its principal in its summary already).
        let before = record
            .and_then(|_| principal_of(summary))
            .map(str::to_owned);
        let (existed, ended) = (record.is_some(), summary.ended);
        let result = summary
            .update(doc, written.as_deref())
            .map_err(Error::from)
            .and_then(|()| {
                self.clamp(summary);
                super::principals::index(self, key, before.as_deref(), summary)?;
                let chunk = match exact {
                    Some(chunk) => chunk,
                    None => doc.save_after(heads),
                };
                let at = self.index_time(summary, now);
                let hash = digest_hash(lineage, &doc.heads());
                let store = self.store()?;
                let due = record.is_some_and(|r| r.log_count + 1 >= self.config.compact_every());
                let rec = if due {
                    store.snapshot(key, &doc.save(), *record, lineage, at, hash)?
                } else {
                    store.append(key, &chunk, *record, lineage, at, hash)?
                };
                Ok((rec, chunk))
            });
        match result {
            Ok((rec, chunk)) => {
                *record = Some(rec);
                self.emit_changes(key, existed, ended, summary, origin);
                Ok(chunk)
            }
            Err(e) => {
                tracing::error!(session = %key.short(), error = %e, "persist failed; change dropped");
                *state = SlotState::Unloaded;
                Err(e)
            }
        }
    }
}
