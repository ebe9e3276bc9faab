use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use automerge::{sync, ActorId};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::inner::{Loaded, Pushes};
use super::replicate;
use super::{Config, SessionView, SweepReport};
use crate::clock::Millis;
use crate::doc::Op;
use crate::id::{random_bytes, DocKey, NodeId, SessionId};
use crate::net::{Handler, Multiaddr, Network, PeerId, Request, Response, Transport};
use crate::store::{Cache, Db, Durability};
use crate::Error;

/// Fetches for unknown ids in flight at most: a flood of forged cookies
/// cannot turn into a flood of peer requests.
const FETCH_SLOTS: usize = 64;

/// One sessionmesh node: the sessions of this web server, persisted in
/// RocksDB and, with a network configured, replicated to its peers. Cheap to
/// clone; every clone is the same node.
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
    // std Mutex: only taken at start and at shutdown to move the handles.
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The libp2p network, when the node runs one (set once it is up: it
    /// needs a handle back to this node).
    pub(crate) net: OnceLock<Network>,
    /// What replication sends through, and its settings: the libp2p network
    /// or a transport attached by the embedder.
    pub(crate) repl: OnceLock<Repl>,
    /// automerge sync state per (peer, document). std Mutex: held for a
    /// map lookup only.
    pub(crate) sync_states: Mutex<HashMap<(PeerId, DocKey), sync::State>>,
    /// Change chunks on their way to each peer.
    pub(crate) outbox: super::outbox::Outbox,
    pub(crate) fetch_slots: Arc<Semaphore>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) me: Weak<Inner>,
}

/// A transport and the replication settings that go with it.
#[derive(Debug)]
pub(crate) struct Repl {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) config: crate::net::Config,
}

/// Runs storage work; with `Durability::Fsync` on a multi-threaded runtime
/// it is marked as blocking so a device flush does not stall other tasks on
/// this worker.
pub(crate) fn run_sync<R>(
    inner: &Inner,
    f: impl FnOnce(&Inner) -> Result<R, Error>,
) -> Result<R, Error> {
    run(inner, inner.config.durability == Durability::Fsync, f)
}

/// [`run_sync`] for a batch of documents: tens of milliseconds of work, so
/// on a multi-threaded runtime it is always marked as blocking and the
/// worker hands its other tasks (the network among them) to another thread.
pub(crate) fn run_batch<R>(
    inner: &Inner,
    f: impl FnOnce(&Inner) -> Result<R, Error>,
) -> Result<R, Error> {
    run(inner, true, f)
}

fn run<R>(
    inner: &Inner,
    blocking: bool,
    f: impl FnOnce(&Inner) -> Result<R, Error>,
) -> Result<R, Error> {
    if inner.closed.load(Ordering::SeqCst) {
        return Err(Error::Shutdown);
    }
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if blocking && multi {
        tokio::task::block_in_place(|| f(inner))
    } else {
        f(inner)
    }
}

impl Node {
    /// Opens (or creates) the node's data directory, starts the sweeper and,
    /// when configured, the network. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unusable setting; [`Error::Store`] when
    /// RocksDB cannot open the directory (for example another process holds
    /// it) or finds it corrupt; [`Error::Net`] when the network cannot
    /// listen.
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
        let inner = Arc::new_cyclic(|me| Inner {
            db,
            cache: Cache::new(config.cache_bytes),
            node_id,
            actor: ActorId::from(random_bytes::<16>()),
            sessions: AtomicUsize::new(sessions),
            closed: AtomicBool::new(false),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            net: OnceLock::new(),
            repl: OnceLock::new(),
            sync_states: Mutex::new(HashMap::new()),
            outbox: super::outbox::Outbox::default(),
            fetch_slots: Arc::new(Semaphore::new(FETCH_SLOTS)),
            runtime: tokio::runtime::Handle::current(),
            me: me.clone(),
            config,
        });
        let mut tasks = vec![super::sweeper::spawn(&inner)];
        if let Some(net_cfg) = &inner.config.net {
            let keypair = inner.db.keypair()?;
            let weak: Weak<dyn Handler> = Arc::downgrade(&inner) as Weak<dyn Handler>;
            let net = Network::start(keypair, net_cfg, weak).await?;
            tracing::info!(peer_id = %net.local_peer_id(), "network up");
            let transport: Arc<dyn Transport> = Arc::new(net.clone());
            let _ = inner.repl.set(Repl {
                transport,
                config: net_cfg.clone(),
            });
            let _ = inner.net.set(net);
            tasks.extend(replicate::spawn_periodic(&inner));
        }
        inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tasks);
        tracing::info!(node = %node_id, sessions, "node open");
        Ok(Self { inner })
    }

    /// This node's stable id.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// This node's libp2p peer id, when it has a network.
    #[must_use]
    pub fn peer_id(&self) -> Option<PeerId> {
        self.inner.net.get().map(Network::local_peer_id)
    }

    /// The addresses the network listens on (empty without a network).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        match self.inner.net.get() {
            Some(net) => net.listen_addrs().await,
            None => Vec::new(),
        }
    }

    /// The peers this node is connected to.
    pub async fn peers(&self) -> Vec<PeerId> {
        match self.inner.repl.get() {
            Some(repl) => repl.transport.peers().await,
            None => Vec::new(),
        }
    }

    /// Keeps a connection to the peer at `addr` from now on.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] without a network; [`Error::Net`] when it is shut down.
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<(), Error> {
        let net = self
            .inner
            .net
            .get()
            .ok_or_else(|| Error::Config("no network configured".into()))?;
        Ok(net.add_peer(addr).await?)
    }

    /// Blocks `peer` (its connections close and it cannot reconnect) or
    /// lifts the block: for evicting a node, and for partition tests.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] without a network; [`Error::Net`] when it is shut down.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), Error> {
        let net = self
            .inner
            .net
            .get()
            .ok_or_else(|| Error::Config("no network configured".into()))?;
        Ok(net.set_blocked(peer, blocked).await?)
    }

    /// Replicates through `transport` with the settings of `config` (its
    /// listen and peer addresses are not used), for a node opened without a
    /// network: another transport than libp2p, or a simulated one in tests.
    /// Peers reach this node by calling [`handle`](Self::handle).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the node already replicates.
    pub fn attach_transport(
        &self,
        transport: Arc<dyn Transport>,
        config: crate::net::Config,
    ) -> Result<(), Error> {
        self.inner
            .repl
            .set(Repl { transport, config })
            .map_err(|_| Error::Config("the node already has a transport".into()))?;
        if let Some(task) = replicate::spawn_periodic(&self.inner) {
            self.inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(task);
        }
        Ok(())
    }

    /// Answers a peer's replication request: applies and persists what it
    /// carries, then replies. Blocks on storage; the libp2p network calls
    /// it on the blocking pool. A malformed request is refused, never
    /// applied.
    #[must_use]
    pub fn handle(&self, peer: PeerId, req: Request) -> Response {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Response::Refused {
                reason: "shutting down".into(),
            };
        }
        Handler::on_request(self.inner.as_ref(), peer, req)
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
    /// invalidated or rotated. An id this node has never seen is first asked
    /// of the connected peers (bounded by the fetch timeout). Counts as an
    /// access: when this node's last-access register is older than the
    /// touch interval, it is advanced (one small persisted write).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the document cannot be read or the touch cannot
    /// be persisted; [`Error::Shutdown`].
    pub async fn load(&self, id: &SessionId) -> Result<Option<SessionView>, Error> {
        let key = id.doc_key();
        let (found, pushes) = run_sync(&self.inner, |i| i.load(key))?;
        replicate::push(&self.inner, pushes, false).await?;
        match found {
            Loaded::Live(view) => Ok(Some(view)),
            Loaded::Missing if self.inner.repl.get().is_some() => {
                replicate::fetch(&self.inner, key).await;
                let (found, pushes) = run_sync(&self.inner, |i| i.load(key))?;
                replicate::push(&self.inner, pushes, false).await?;
                Ok(match found {
                    Loaded::Live(view) => Some(view),
                    _ => None,
                })
            }
            Loaded::Gone | Loaded::Missing => Ok(None),
        }
    }

    /// Creates session `id` with the node's default timeouts and applies
    /// `ops`, as one persisted (and replicated) commit.
    ///
    /// # Errors
    ///
    /// [`Error::IdCollision`] if `id` exists or is a tombstone;
    /// [`Error::TooLarge`]; [`Error::Doc`] for a bad operation;
    /// [`Error::Store`] if the commit could not be persisted (nothing was
    /// created); [`Error::NotReplicated`]; [`Error::Shutdown`].
    pub async fn create(&self, id: &SessionId, ops: &[Op]) -> Result<SessionView, Error> {
        let (view, pushes) = run_sync(&self.inner, |i| i.create(id.doc_key(), ops, None))?;
        self.replicate(pushes).await?;
        Ok(view)
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
    /// be persisted (nothing applied); [`Error::NotReplicated`] (applied and
    /// persisted here, but not confirmed by enough peers); [`Error::Shutdown`].
    pub async fn commit(&self, id: &SessionId, ops: &[Op]) -> Result<Option<SessionView>, Error> {
        let (view, pushes) = run_sync(&self.inner, |i| i.commit(id.doc_key(), ops))?;
        self.replicate(pushes).await?;
        Ok(view)
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
        let (view, pushes) =
            run_sync(&self.inner, |i| i.rotate(old.doc_key(), new.doc_key(), ops))?;
        self.replicate(pushes).await?;
        Ok(view)
    }

    async fn replicate(&self, pushes: Pushes) -> Result<(), Error> {
        replicate::push(&self.inner, pushes, true).await
    }

    /// Turns sessions that died (expired, invalidated, rotated) into
    /// tombstones once their grace has passed, and forgets tombstones past
    /// the GC horizon. The background sweeper runs this every sweep interval.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::Shutdown`].
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        run_sync(&self.inner, Inner::sweep)
    }

    /// Compares digests with every connected peer now and syncs what
    /// differs (the background task does this every anti-entropy interval).
    pub async fn anti_entropy(&self) {
        for peer in self.peers().await {
            replicate::anti_entropy(Arc::clone(&self.inner), peer).await;
        }
    }

    /// Stops the network and the background tasks, waits for them, and
    /// flushes the WAL. Later calls on any clone return [`Error::Shutdown`].
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the final WAL flush fails.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.inner.shutdown.send_replace(true);
        if let Some(net) = self.inner.net.get() {
            net.shutdown().await;
        }
        self.inner.closed.store(true, Ordering::SeqCst);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in tasks {
            let _ = t.await;
        }
        self.inner.db.flush()?;
        tracing::info!(node = %self.inner.node_id, "node shut down");
        Ok(())
    }
}
