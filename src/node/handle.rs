use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use automerge::ActorId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Config, SessionView, SweepReport};
use crate::clock::Millis;
use crate::doc::Op;
use crate::id::{random_bytes, NodeId, SessionId};
use crate::store::{Cache, Db, Durability};
use crate::Error;

/// One sessionmesh node: the sessions of this web server, persisted in
/// RocksDB. Cheap to clone; every clone is the same node.
///
/// # Examples
///
/// ```
/// use sessionmesh::{doc::Op, Config, Node, SessionId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sessionmesh::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::open(Config::new(dir.path())).await?;
/// let id = SessionId::random();
/// let ops = [Op::Insert { key: "user".into(), json: "\"ada\"".into() }];
/// node.create(&id, &ops).await?;
/// let view = node.load(&id).await?.expect("live");
/// assert_eq!(view.attributes["user"], "ada");
/// node.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) cache: Cache,
    pub(crate) config: Config,
    pub(crate) node_id: NodeId,
    /// Fresh per process start: a restarted node that lost its last
    /// unflushed change must never write another change under the same
    /// (actor, seq).
    pub(crate) actor: ActorId,
    pub(crate) sessions: AtomicUsize,
    pub(crate) closed: AtomicBool,
    pub(crate) shutdown: watch::Sender<bool>,
    // std Mutex: only taken at start and at shutdown to move the handle.
    pub(crate) sweeper: Mutex<Option<JoinHandle<()>>>,
}

impl Node {
    /// Opens (or creates) the node's data directory and starts the sweeper.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unusable setting; [`Error::Store`] when
    /// RocksDB cannot open the directory (for example another process holds
    /// it) or finds it corrupt.
    pub async fn open(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let cfg = config.clone();
        let (db, node_id, sessions) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&cfg.data_dir)
                .map_err(|e| Error::Config(format!("data dir {}: {e}", cfg.data_dir.display())))?;
            let db = Db::open(&cfg.data_dir, cfg.durability)?;
            let node_id = db.node_id()?;
            let sessions = db.count()?;
            Ok::<_, Error>((db, node_id, sessions))
        })
        .await
        .map_err(|e| Error::Config(format!("opening the store did not finish: {e}")))??;
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            db,
            cache: Cache::new(config.cache_bytes),
            node_id,
            actor: ActorId::from(random_bytes::<16>()),
            sessions: AtomicUsize::new(sessions),
            closed: AtomicBool::new(false),
            shutdown,
            sweeper: Mutex::new(None),
            config,
        });
        let handle = super::sweeper::spawn(&inner);
        *inner.sweeper.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        tracing::info!(node = %node_id, sessions, "node open");
        Ok(Self { inner })
    }

    /// This node's stable id.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The configuration the node was opened with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Sessions stored on this node (live ones and dead ones the sweeper has
    /// not collected yet).
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.inner.sessions.load(Ordering::Relaxed)
    }

    /// Now, by the node's clock.
    #[must_use]
    pub fn now_ms(&self) -> Millis {
        self.inner.config.clock.now_ms()
    }

    /// The live session `id`, or `None` when it is unknown, expired,
    /// invalidated or rotated. Counts as an access: when this node's
    /// last-access register is older than the touch interval, it is
    /// advanced (one small persisted write).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the document cannot be read or the touch cannot
    /// be persisted; [`Error::Shutdown`].
    pub async fn load(&self, id: &SessionId) -> Result<Option<SessionView>, Error> {
        self.run(|inner| inner.load(id.doc_key()))
    }

    /// Creates session `id` with the node's default timeouts and applies
    /// `ops`, as one persisted commit.
    ///
    /// # Errors
    ///
    /// [`Error::IdCollision`] if `id` exists or is a tombstone;
    /// [`Error::TooLarge`]; [`Error::Doc`] for a bad operation;
    /// [`Error::Store`] if the commit could not be persisted (nothing was
    /// created); [`Error::Shutdown`].
    pub async fn create(&self, id: &SessionId, ops: &[Op]) -> Result<SessionView, Error> {
        self.run(|inner| inner.create(id.doc_key(), ops, None))
    }

    /// Applies `ops` to the live session `id` as one persisted commit and
    /// returns the merged result. `None` when the session is gone (unknown or
    /// dead); the operations are then dropped, because invalidation wins over
    /// every later write.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] (nothing applied); [`Error::Doc`] for a bad
    /// operation (nothing applied); [`Error::Store`] when the commit could not
    /// be persisted (nothing applied); [`Error::Shutdown`].
    pub async fn commit(&self, id: &SessionId, ops: &[Op]) -> Result<Option<SessionView>, Error> {
        self.run(|inner| inner.commit(id.doc_key(), ops))
    }

    /// Moves the live session `old` to the new id `new` with its attributes,
    /// applies `ops` there, and kills `old` (its `meta/successor` is set).
    /// `None` when `old` is gone.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`commit`](Self::commit).
    pub async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        ops: &[Op],
    ) -> Result<Option<SessionView>, Error> {
        self.run(|inner| inner.rotate(old.doc_key(), new.doc_key(), ops))
    }

    /// Turns sessions that died (expired, invalidated, rotated) into
    /// tombstones and forgets tombstones past the GC horizon. The background
    /// sweeper runs this every sweep interval.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::Shutdown`].
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        self.run(Inner::sweep)
    }

    /// Stops the sweeper, waits for it, and flushes the WAL. Later calls on
    /// any clone return [`Error::Shutdown`].
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the final WAL flush fails.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.shutdown.send_replace(true);
        let handle = self
            .inner
            .sweeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        self.inner.db.flush()?;
        tracing::info!(node = %self.inner.node_id, "node shut down");
        Ok(())
    }

    /// Runs a store operation; with `Durability::Fsync` on a multi-threaded
    /// runtime it is marked as blocking so the device flush does not stall
    /// other tasks on this worker.
    fn run<R>(&self, f: impl FnOnce(&Inner) -> Result<R, Error>) -> Result<R, Error> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Shutdown);
        }
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if self.inner.config.durability == Durability::Fsync && multi {
            tokio::task::block_in_place(|| f(&self.inner))
        } else {
            f(&self.inner)
        }
    }
}
