//! [`Node`]: the public handle over the engine, the replicator and the
//! node's tasks.

use std::sync::Arc;

use super::catch_up;
use super::shared::Shared;
use super::stats::{Count, Stats};
use crate::clock::Millis;
use crate::doc::Op;
use crate::engine::{Engine, Pushes, SessionView, SweepReport, Version, Wrap};
use crate::id::{DocKey, NodeId, SessionId};
use crate::metrics::{gauge_value, label};
use crate::net::{self, Multiaddr, Network, PeerId, Request, Response, Transport};
use crate::replicator::{Inbound, Replicator};
use crate::store::Durability;
use crate::tasks::blocking;
use crate::{Config, Error};

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
    pub(super) shared: Arc<Shared>,
}

impl Node {
    /// Opens (or creates) the node's data directory, starts the sweeper and,
    /// when configured, the network. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a setting that cannot work;
    /// [`Error::DataDir`] when the directory cannot be created or read;
    /// [`Error::AlreadyOpen`] when another node holds it; [`Error::Store`]
    /// when RocksDB finds it corrupt; [`Error::Net`] when the network cannot
    /// listen.
    pub async fn open(config: Config) -> Result<Self, Error> {
        Self::open_with(config, None).await
    }

    /// [`open`](Self::open), with the store wrapped by `wrap` (tests inject
    /// storage faults this way).
    pub(crate) async fn open_with(config: Config, wrap: Option<Wrap>) -> Result<Self, Error> {
        Ok(Self {
            shared: Arc::new(Shared::open(config, wrap).await?),
        })
    }

    #[cfg(feature = "testing")]
    pub(crate) fn engine_for_tests(&self) -> &Engine {
        self.engine()
    }

    fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    pub(super) fn replicator(&self) -> Option<&Replicator> {
        self.shared.replicator.get()
    }

    fn network(&self) -> Result<&Network, Error> {
        self.shared.network.as_ref().ok_or(Error::NoNetwork)
    }

    /// Runs engine work from async code: marked as blocking under
    /// `Durability::Fsync`, where every write waits for the device.
    pub(super) fn run<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        let fsync = self.engine().config().durability() == Durability::Fsync;
        blocking(fsync, || f(self.engine()))
    }

    /// This node's stable id.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.engine().node_id()
    }

    /// This node's libp2p peer id, when it has a network.
    #[must_use]
    pub fn peer_id(&self) -> Option<PeerId> {
        self.shared.network.as_ref().map(Network::local_peer_id)
    }

    /// The addresses the network listens on (empty without a network).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        match &self.shared.network {
            Some(net) => net.listen_addrs().await,
            None => Vec::new(),
        }
    }

    /// The peers this node is connected to.
    pub async fn peers(&self) -> Vec<PeerId> {
        match self.replicator() {
            Some(repl) => repl.peers().await,
            None => Vec::new(),
        }
    }

    /// Keeps a connection to the peer at `addr` from now on.
    ///
    /// # Errors
    ///
    /// [`Error::NoNetwork`] without a network; [`Error::Net`] when it is shut
    /// down.
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<(), Error> {
        Ok(self.network()?.add_peer(addr).await?)
    }

    /// Blocks `peer` (its connections close and it cannot reconnect) or
    /// lifts the block: for evicting a node, and for partition tests.
    ///
    /// # Errors
    ///
    /// [`Error::NoNetwork`] without a network; [`Error::Net`] when it is shut
    /// down.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), Error> {
        Ok(self.network()?.set_blocked(peer, blocked).await?)
    }

    /// Replicates through `transport` with the settings of `config` (its
    /// listen and peer addresses are not used), for a node opened without a
    /// network: another transport than libp2p, or a simulated one in tests.
    /// Peers reach this node by calling [`handle`](Self::handle).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyReplicating`] when the node already has a transport;
    /// [`Error::InvalidConfig`] for a setting of `config` that cannot work.
    pub fn attach_transport(
        &self,
        transport: Arc<dyn Transport>,
        config: net::Config,
    ) -> Result<(), Error> {
        config.validate()?;
        let mut started = false;
        self.shared.replicator.get_or_init(|| {
            started = true;
            let inbound = Arc::new(Inbound::new(self.engine().clone()));
            let clock = Arc::clone(&self.shared.clock);
            Replicator::start(inbound, transport, config, clock, &self.shared.tasks)
        });
        if started {
            Ok(())
        } else {
            Err(Error::AlreadyReplicating)
        }
    }

    /// Answers a peer's replication request: applies and persists what it
    /// carries, then replies. Blocks on storage; the libp2p network calls
    /// it on the blocking pool. A malformed request is refused, never
    /// applied, and so is every request to a node that does not replicate
    /// or is shut down.
    #[must_use]
    pub fn handle(&self, peer: PeerId, req: Request) -> Response {
        let refused = |reason: &str| Response::Refused {
            reason: reason.into(),
        };
        if self.shared.tasks.stopping() {
            return refused("shutting down");
        }
        match self.replicator() {
            Some(repl) => repl.handle(peer, req),
            None => refused("this node does not replicate"),
        }
    }

    /// Counts since the node opened: catch-ups to session tokens and their
    /// failures.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// This node's metrics in the OpenMetrics text format, which Prometheus
    /// scrapes (the [`metrics`](crate::metrics) module lists the series).
    /// Serve it on a route of your own with the `Content-Type`
    /// [`metrics::CONTENT_TYPE`](crate::metrics::CONTENT_TYPE).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sessionmesh::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let node = sessionmesh::Node::open(sessionmesh::Config::new(dir.path())).await?;
    /// node.create(&sessionmesh::SessionId::random(), &[]).await?;
    /// let text = node.metrics().await;
    /// assert!(text.contains("sessionmesh_commits_total{kind=\"create\"} 1"));
    /// assert!(text.contains("sessionmesh_sessions 1"));
    /// # node.shutdown().await
    /// # }
    /// ```
    pub async fn metrics(&self) -> String {
        let engine = self.engine();
        let m = engine.metrics();
        m.sessions.set(gauge_value(engine.session_count()));
        let (cached, bytes) = engine.cache_usage();
        m.sessions_cached.set(gauge_value(cached));
        m.cache_bytes.set(gauge_value(bytes));
        if let Some(repl) = self.shared.replicator.get() {
            let (chunks, bytes) = repl.outbox_usage();
            m.outbox_chunks.set(gauge_value(chunks));
            m.outbox_bytes.set(gauge_value(bytes));
            m.peers_connected.set(gauge_value(repl.peers().await.len()));
        }
        m.encode()
    }

    /// The live sessions of `principal` (see
    /// [`Session::set_principal`](crate::http::Session::set_principal)),
    /// by document key. Every node holds every session, so any node
    /// answers for the whole cluster, as far as replication has reached it.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the index or a session cannot be read;
    /// [`Error::Shutdown`].
    pub async fn sessions_of(&self, principal: &str) -> Result<Vec<(DocKey, SessionView)>, Error> {
        self.run(|e| e.sessions_of(principal))
    }

    /// Invalidates every live session of `principal` — "log out
    /// everywhere" — and returns how many it ended. Each end is replicated
    /// like a logout (with `Replication::Sync`, this waits for the acks);
    /// a session of the principal this node has not received yet is not
    /// ended (call it again, or on another node, to catch those).
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::NotReplicated`] (ended here, not
    /// confirmed by enough peers); [`Error::Shutdown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sessionmesh::Error> {
    /// use sessionmesh::doc::Op;
    /// use sessionmesh::{Node, SessionId, PRINCIPAL_ATTRIBUTE};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let node = Node::open(sessionmesh::Config::new(dir.path())).await?;
    /// let ops = [Op::Insert {
    ///     key: PRINCIPAL_ATTRIBUTE.into(),
    ///     json: "\"user-42\"".into(),
    /// }];
    /// node.create(&SessionId::random(), &ops).await?;
    /// node.create(&SessionId::random(), &ops).await?;
    /// assert_eq!(node.sessions_of("user-42").await?.len(), 2);
    /// assert_eq!(node.invalidate_all_of("user-42").await?, 2);
    /// assert!(node.sessions_of("user-42").await?.is_empty());
    /// # node.shutdown().await
    /// # }
    /// ```
    pub async fn invalidate_all_of(&self, principal: &str) -> Result<usize, Error> {
        let (ended, pushes) = self.run(|e| e.invalidate_all_of(principal))?;
        self.push(pushes, true).await?;
        Ok(ended)
    }

    /// A stream of this node's session lifecycle events from now on
    /// (see [`events`](crate::events)): sessions created, rotated,
    /// invalidated or expired here, and — marked
    /// [`Origin::Replicated`](crate::events::Origin::Replicated) — those
    /// this node learns of from its peers. A subscriber that falls more than
    /// 4,096 events behind is told how many it missed
    /// (`RecvError::Lagged`) and goes on from there.
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::Event> {
        self.engine().subscribe()
    }

    /// Each connected peer with the lag of the last push it acknowledged
    /// (commit to acknowledgement; `None` before the first).
    pub async fn peer_lags(&self) -> Vec<(PeerId, Option<std::time::Duration>)> {
        let lags = &self.engine().metrics().peer_lag;
        self.peers()
            .await
            .into_iter()
            .map(|p| {
                let lag = lags
                    .get(&label("peer", p.to_string()))
                    .map(|g| std::time::Duration::from_secs_f64(g.get().max(0.0)));
                (p, lag)
            })
            .collect()
    }

    /// This node's transient attributes (the session layer's).
    pub(crate) fn transients(&self) -> &super::transient::Transients {
        &self.shared.transients
    }

    /// Counts an answer the session layer gave.
    pub(crate) fn count_answer(&self, code: http::StatusCode) {
        let answers = &self.engine().metrics().http_responses;
        answers.get_or_create(&label("code", code.as_str())).inc();
    }

    /// The configuration the node was opened with.
    #[must_use]
    pub fn config(&self) -> &Config {
        self.engine().config()
    }

    /// Sessions stored on this node (live ones and dead ones the sweeper has
    /// not collected yet).
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.engine().session_count()
    }

    /// Now, by the node's clock.
    #[must_use]
    pub fn now_ms(&self) -> Millis {
        self.engine().now()
    }

    /// [`load`](Self::load), at least as new as `seen`: the state the
    /// client's session token says it has seen (see
    /// [`read_token`](Self::read_token)). When this node is behind, it waits
    /// for the changes on their way, then pulls them from its peers (once),
    /// within the network's catch-up bound; past it, the stale-read policy
    /// decides. Without `seen`, or on a node that does not replicate, this is
    /// [`load`](Self::load).
    ///
    /// # Errors
    ///
    /// [`Error::Behind`] when the node could not catch up in time and the
    /// policy refuses stale reads; [`Error::Unreachable`] when the node does
    /// not hold the session at all and no reachable peer does, though the
    /// token proves it exists; as [`load`](Self::load) otherwise.
    pub async fn load_seen(
        &self,
        id: &SessionId,
        seen: Option<&Version>,
    ) -> Result<Option<SessionView>, Error> {
        let (Some(seen), Some(repl)) = (seen, self.replicator()) else {
            return self.load(id).await;
        };
        catch_up::load_seen(
            self.engine(),
            repl,
            &self.shared.counters,
            id.doc_key(),
            seen,
        )
        .await
    }

    /// The session token for `version` of session `id`: what a client keeps
    /// beside its session cookie so that any node serves it at least that
    /// state (the HTTP layer and the adapters' token layer set it). `None`
    /// on a node that does not replicate: one node is always current.
    #[must_use]
    pub fn token(&self, id: &SessionId, version: &Version) -> Option<String> {
        let repl = self.replicator()?;
        Some(repl.token_key().issue(id.doc_key(), version, self.now_ms()))
    }

    /// What a session token says the client has seen of session `id`.
    /// `None` (no guarantee asked for) for a token that is malformed,
    /// forged, made for another session or another cluster, older than the
    /// tombstone GC horizon or issued in the future — none of which can make
    /// a node wait or ask its peers for anything.
    #[must_use]
    pub fn read_token(&self, id: &SessionId, token: &str) -> Option<Version> {
        let repl = self.replicator()?;
        let max_age = u64::try_from(self.config().gc_horizon().as_millis()).unwrap_or(u64::MAX);
        match repl
            .token_key()
            .read(id.doc_key(), token, self.now_ms(), max_age)
        {
            Ok(version) => Some(version),
            Err(why) => {
                tracing::debug!(session = %id.doc_key().short(), ?why, "session token ignored");
                self.shared.counters.bump(Count::TokenIgnored);
                None
            }
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
    #[tracing::instrument(name = "session.create", level = "debug", skip_all, fields(session = %id.doc_key().short()))]
    pub async fn create(&self, id: &SessionId, ops: &[Op]) -> Result<SessionView, Error> {
        let (view, pushes) = self.run(|e| e.create(id.doc_key(), ops))?;
        self.push(pushes, true).await?;
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
    #[tracing::instrument(name = "session.commit", level = "debug", skip_all, fields(session = %id.doc_key().short(), ops = ops.len()))]
    pub async fn commit(&self, id: &SessionId, ops: &[Op]) -> Result<Option<SessionView>, Error> {
        let (view, pushes) = self.run(|e| e.commit(id.doc_key(), ops))?;
        self.push(pushes, true).await?;
        Ok(view)
    }

    /// Moves the live session `old` to the new id `new` with its attributes,
    /// applies `ops` there, and kills `old` (its `meta/successor` is set).
    /// `None` when `old` is gone.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`commit`](Self::commit).
    #[tracing::instrument(
        name = "session.rotate",
        level = "debug",
        skip_all,
        fields(session = %old.doc_key().short(), to = %new.doc_key().short())
    )]
    pub async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        ops: &[Op],
    ) -> Result<Option<SessionView>, Error> {
        let (view, pushes) = self.run(|e| e.rotate(old.doc_key(), new.doc_key(), ops))?;
        self.push(pushes, true).await?;
        Ok(view)
    }

    /// Hands what a commit persisted to the replicator, if there is one;
    /// `wait`: as the replication mode says (a write), or never (a touch).
    pub(super) async fn push(&self, pushes: Pushes, wait: bool) -> Result<(), Error> {
        match self.replicator() {
            Some(repl) => repl.push(pushes, wait).await,
            None => Ok(()),
        }
    }

    /// Turns sessions that died (expired, invalidated, rotated) into
    /// tombstones once their grace has passed, and forgets tombstones past
    /// the GC horizon. The background sweeper runs this every sweep interval.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::Shutdown`].
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        self.run(Engine::sweep)
    }

    /// Compares digests with every connected peer now and syncs what
    /// differs (the background task does this every anti-entropy interval).
    pub async fn anti_entropy(&self) {
        if let Some(repl) = self.replicator() {
            repl.anti_entropy().await;
        }
    }

    /// Stops the network and every background task and waits until each has
    /// ended, then flushes the WAL and releases the data directory (another
    /// node may open it at once). Later calls on any clone return
    /// [`Error::Shutdown`].
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the final WAL flush fails.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.shared.tasks.shutdown().await;
        self.engine().close(true)?;
        tracing::info!(node = %self.node_id(), "node shut down");
        Ok(())
    }
}
