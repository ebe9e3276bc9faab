//! [`Engine`]: the handle the async layers hold.

use std::sync::Arc;
use std::time::Instant;

use automerge::sync;

use super::lineages::{self, Held};
use super::replica::{Applied, Step};
use super::requests::Loaded;
use super::shared::{Pushes, Shared, Wrap};
use super::view::{SessionView, SweepReport, Version};
use super::{principals, replica, requests, sweep};
use crate::clock::Millis;
use crate::doc::Op;
use crate::id::{DocKey, NodeId};
use crate::metrics::{label, secs, Metrics};
use crate::store::LineageId;
use crate::{Config, Error};

/// A node's sessions, synchronously: every method runs to its end on the
/// calling thread (storage included) and returns what must be replicated
/// instead of sending it. Cheap to clone; every clone is the same engine.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// Opens the data directory (see [`Shared::open`]).
    pub(crate) fn open(config: Config, wrap: Option<Wrap>) -> Result<Self, Error> {
        Ok(Self {
            shared: Arc::new(Shared::open(config, wrap)?),
        })
    }

    /// Closes the store once the calls in flight are done (flushing it
    /// first when asked) and releases the data directory; every later call
    /// answers [`Error::Shutdown`].
    pub(crate) fn close(&self, flush: bool) -> Result<(), Error> {
        self.shared.close(flush)
    }

    fn check_open(&self) -> Result<(), Error> {
        self.shared.store().map(drop)
    }

    pub(crate) fn config(&self) -> &Config {
        self.shared.config()
    }

    pub(crate) fn node_id(&self) -> NodeId {
        self.shared.node_id()
    }

    pub(crate) fn session_count(&self) -> usize {
        self.shared.session_count()
    }

    pub(crate) fn now(&self) -> Millis {
        self.shared.now()
    }

    /// A receiver of every lifecycle event from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::Event> {
        self.shared.subscribe()
    }

    /// The node's metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Documents loaded in memory, and their estimated bytes.
    pub(crate) fn cache_usage(&self) -> (usize, usize) {
        self.shared.cache().usage()
    }

    /// Runs the write `f`, counting it (or its error) and its time.
    fn timed<T>(
        &self,
        kind: &'static str,
        f: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let start = Instant::now();
        let out = f();
        let m = &self.shared.metrics;
        match &out {
            Ok(_) => {
                m.commit_seconds.observe(secs(start.elapsed()));
                m.commits.get_or_create(&label("kind", kind)).inc();
            }
            Err(e) => {
                let error = match e {
                    Error::TooLarge { .. } => "too_large",
                    Error::Doc(_) => "invalid",
                    Error::Store(_) => "storage",
                    _ => "other",
                };
                m.commit_errors.get_or_create(&label("error", error)).inc();
            }
        }
        out
    }

    /// The session `key` as a request sees it, checked against `seen` (the
    /// state the client has seen); advances this node's last-access register
    /// when it is due.
    pub(crate) fn load(
        &self,
        key: DocKey,
        seen: Option<&Version>,
    ) -> Result<(Loaded, Pushes), Error> {
        self.check_open()?;
        requests::load(&self.shared, key, seen)
    }

    /// Whether this node holds every change of `seen` for `key`.
    pub(crate) fn holds(&self, key: DocKey, seen: &Version) -> Result<bool, Error> {
        self.check_open()?;
        requests::holds(&self.shared, key, seen)
    }

    /// Creates session `key` and applies `ops`.
    pub(crate) fn create(&self, key: DocKey, ops: &[Op]) -> Result<(SessionView, Pushes), Error> {
        self.check_open()?;
        self.timed("create", || requests::create(&self.shared, key, ops, None))
    }

    /// Applies `ops` to the live session `key`.
    pub(crate) fn commit(
        &self,
        key: DocKey,
        ops: &[Op],
    ) -> Result<(Option<SessionView>, Pushes), Error> {
        self.check_open()?;
        self.timed("commit", || requests::commit(&self.shared, key, ops))
    }

    /// Moves the live session `old` to `new`, applies `ops`, ends `old`.
    pub(crate) fn rotate(
        &self,
        old: DocKey,
        new: DocKey,
        ops: &[Op],
    ) -> Result<(Option<SessionView>, Pushes), Error> {
        self.check_open()?;
        self.timed("rotate", || requests::rotate(&self.shared, old, new, ops))
    }

    /// A peer's change chunk for lineage `lineage` of `key`, persisted
    /// before this returns.
    pub(crate) fn apply_push(&self, key: DocKey, lineage: LineageId, chunk: &[u8]) -> Applied {
        let applied = replica::apply_push(&self.shared, key, lineage, chunk);
        let outcome = match applied {
            Applied::Yes => "applied",
            Applied::MissingDeps => "deferred",
            Applied::No => "refused",
        };
        let m = &self.shared.metrics;
        m.pushes_received
            .get_or_create(&label("outcome", outcome))
            .inc();
        applied
    }

    /// One step of automerge's sync protocol for lineage `lineage` of `key`
    /// with the peer whose state is `state`.
    pub(crate) fn sync_step(
        &self,
        key: DocKey,
        lineage: LineageId,
        state: &mut sync::State,
        msg: Option<&[u8]>,
    ) -> Result<Step, Error> {
        replica::sync_step(&self.shared, key, lineage, state, msg)
    }

    /// What this node holds of `key`: its lineages, a tombstone, nothing.
    pub(crate) fn lineages(&self, key: DocKey) -> Result<Held, Error> {
        self.check_open()?;
        lineages::lineages(&self.shared, key)
    }

    /// Takes `target`, a lineage of `key`'s oldest generation held here, as
    /// that generation's canonical one (see [`lineages::retrust`]).
    pub(crate) fn retrust(&self, key: DocKey, target: LineageId) -> Result<bool, Error> {
        self.check_open()?;
        lineages::retrust(&self.shared, key, target)
    }

    /// Every lineage of `key` held here, described (diagnostics).
    #[cfg(feature = "testing")]
    pub(crate) fn describe(&self, key: DocKey) -> Result<String, Error> {
        lineages::describe(&self.shared, key)
    }

    /// Makes `target` the current lineage of `key`, dropping the
    /// generations before it (see [`lineages::adopt`]).
    pub(crate) fn adopt(&self, key: DocKey, target: LineageId) -> Result<bool, Error> {
        self.check_open()?;
        lineages::adopt(&self.shared, key, target)
    }

    /// Ends `key` here because a peer holds it as ended for good.
    pub(crate) fn end(&self, key: DocKey) -> Result<Pushes, Error> {
        replica::end(&self.shared, key)
    }

    /// Up to `limit` documents in `[from, to)` with their heads hash.
    pub(crate) fn digest(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(DocKey, u64)>, Error> {
        replica::digest(&self.shared, from, to, limit)
    }

    /// Up to `limit` live sessions from `from` on, with their heads hash.
    pub(crate) fn live_digest(
        &self,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(DocKey, u64)>, Error> {
        replica::live_digest(&self.shared, from, limit)
    }

    /// The live sessions of `principal` held here.
    pub(crate) fn sessions_of(&self, principal: &str) -> Result<Vec<(DocKey, SessionView)>, Error> {
        self.check_open()?;
        principals::sessions_of(&self.shared, principal)
    }

    /// Invalidates every live session of `principal` held here.
    pub(crate) fn invalidate_all_of(&self, principal: &str) -> Result<(usize, Pushes), Error> {
        self.check_open()?;
        principals::invalidate_all_of(&self.shared, principal)
    }

    /// Tombstones dead sessions and forgets old tombstones.
    pub(crate) fn sweep(&self) -> Result<SweepReport, Error> {
        let report = sweep::sweep(&self.shared)?;
        let m = &self.shared.metrics;
        m.sweeps.inc();
        m.tombstones.inc_by(report.tombstoned as u64);
        m.tombstones_forgotten.inc_by(report.forgotten as u64);
        Ok(report)
    }

    /// [`sweep`](Self::sweep) as the background sweeper runs it: a failure
    /// is logged, and the next run tries again.
    pub(crate) fn background_sweep(&self) {
        match self.sweep() {
            Ok(r) if r.tombstoned + r.forgotten > 0 => {
                tracing::debug!(tombstoned = r.tombstoned, forgotten = r.forgotten, "sweep");
            }
            Ok(_) | Err(Error::Shutdown) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed; will retry"),
        }
    }

    /// `key`'s current generation, its document's change count and how
    /// many other lineages it keeps (tests).
    #[cfg(test)]
    pub(crate) fn generation(&self, key: DocKey) -> Option<(u32, u64, usize)> {
        super::slots::with_slot(&self.shared, key, |state| {
            Ok(match state {
                crate::store::SlotState::Doc {
                    doc,
                    lineage,
                    others,
                    ..
                } => Some((lineage.gen, doc.change_count(), others.len())),
                _ => None,
            })
        })
        .ok()
        .flatten()
    }

    /// The summary the cache kept for `key`'s evicted document, if any.
    #[cfg(test)]
    pub(crate) fn kept_summary(&self, key: DocKey) -> Option<crate::doc::Summary> {
        self.shared.cache().with_kept(key, Clone::clone)
    }
}
