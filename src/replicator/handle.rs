//! [`Replicator`]: the handle the node holds.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use super::anti_entropy::{anti_entropy, probe_clock};
use super::clock_sync::ClockSync;
use super::exchange::{Exchange, Outcome};
use super::inbound::Inbound;
use super::outbox::Outbox;
use crate::clock::Corrected;
use crate::engine::{Held, Pushes};
use crate::id::DocKey;
use crate::metrics::label;
use crate::net::{self, Handler, PeerEvent, Replication, Request, Response, SyncPolicy, Transport};
use crate::tasks::{blocking, Tasks};
use crate::token::TokenKey;
use crate::Error;

/// Fetches for unknown ids in flight at most: a flood of forged cookies
/// cannot turn into a flood of peer requests. A fetch waits up to its own
/// timeout for a slot, so a real user's lookup is not skipped (which would
/// give them a fresh id) because a flood holds the slots for a moment.
const FETCH_SLOTS: usize = 64;
/// How long an id no peer held is answered "unknown" without asking again.
const UNKNOWN_FOR: std::time::Duration = std::time::Duration::from_secs(2);
/// Ids remembered that way at most (the oldest go first).
const UNKNOWN_IDS: usize = 16_384;

/// Replication for one node over one transport. Cheap to clone; every
/// clone is the same replicator.
#[derive(Debug, Clone)]
pub(crate) struct Replicator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    exchange: Arc<Exchange>,
    inbound: Arc<Inbound>,
    outbox: Arc<Outbox>,
    config: net::Config,
    tasks: Tasks,
    /// Taken by each fetch on miss (see [`FETCH_SLOTS`]).
    fetch_slots: Arc<Semaphore>,
    /// Makes and checks session tokens (derived from the cluster key).
    token: TokenKey,
    /// What this node knows of its peers' clocks; moves its own.
    clock: ClockSync,
    /// Ids that no peer held, and when that was found (see
    /// [`UNKNOWN_FOR`]).
    unknown: std::sync::Mutex<lru::LruCache<DocKey, Instant>>,
}

impl Replicator {
    /// Replicates what `inbound`'s engine commits through `transport`, and
    /// runs anti-entropy with every peer each interval (a task of `tasks`).
    pub(crate) fn start(
        inbound: Arc<Inbound>,
        transport: Arc<dyn Transport>,
        config: net::Config,
        clock: Arc<Corrected>,
        tasks: &Tasks,
    ) -> Self {
        let exchange = Arc::new(Exchange {
            engine: inbound.engine.clone(),
            transport,
            states: Arc::clone(&inbound.states),
        });
        let repl = Self {
            shared: Arc::new(Shared {
                exchange,
                inbound,
                outbox: Arc::new(Outbox::default()),
                token: TokenKey::derive(config.cluster_key()),
                config,
                tasks: tasks.clone(),
                fetch_slots: Arc::new(Semaphore::new(FETCH_SLOTS)),
                clock: ClockSync::new(clock),
                unknown: std::sync::Mutex::new(lru::LruCache::new(
                    std::num::NonZeroUsize::new(UNKNOWN_IDS).unwrap_or(std::num::NonZeroUsize::MIN),
                )),
            }),
        };
        let periodic = repl.clone();
        tasks.every(repl.shared.config.anti_entropy_interval(), move || {
            let repl = periodic.clone();
            async move { repl.anti_entropy().await }
        });
        repl
    }

    /// Listens to peers coming and going: a new connection starts the sync
    /// states with that peer afresh, and one of its two ends (the one with
    /// the smaller peer id) starts anti-entropy at once.
    pub(crate) fn watch_peers(&self, local: PeerId, mut events: mpsc::Receiver<PeerEvent>) {
        let repl = self.clone();
        self.shared.tasks.spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    PeerEvent::Connected(peer) => {
                        repl.shared.exchange.states.forget_peer(peer);
                        // Both ends measure the other's clock at once.
                        let shared = Arc::clone(&repl.shared);
                        repl.shared.tasks.spawn(async move {
                            probe_clock(&shared.exchange, &shared.clock, peer).await;
                        });
                        if local < peer {
                            let shared = Arc::clone(&repl.shared);
                            repl.shared.tasks.spawn(async move {
                                anti_entropy(&shared.exchange, Some(&shared.clock), peer).await;
                            });
                        }
                    }
                    PeerEvent::Disconnected(peer) => repl.shared.exchange.states.forget_peer(peer),
                }
            }
        });
    }

    /// The replication settings.
    pub(crate) fn config(&self) -> &net::Config {
        &self.shared.config
    }

    /// The key of this cluster's session tokens.
    pub(crate) fn token_key(&self) -> &TokenKey {
        &self.shared.token
    }

    /// A receiver that changes whenever a peer's push or sync round was
    /// answered here (changes may have arrived).
    pub(crate) fn arrivals(&self) -> watch::Receiver<u64> {
        self.shared.inbound.arrivals.subscribe()
    }

    /// Answers a peer's request (blocks on storage).
    pub(crate) fn handle(&self, peer: PeerId, req: Request) -> Response {
        self.shared.inbound.on_request(peer, req)
    }

    /// Each peer's clock minus this node's (ms), as last measured, and
    /// what this node adds to its configured clock to agree with them.
    pub(crate) fn clock_offsets(&self) -> (Vec<(PeerId, i64)>, i64) {
        (
            self.shared.clock.offsets(),
            self.shared.clock.correction_ms(),
        )
    }

    /// The peers that can be reached now.
    pub(crate) async fn peers(&self) -> Vec<PeerId> {
        self.shared.exchange.transport.peers().await
    }

    /// Queues `pushes` for every connected peer (see
    /// [`outbox`](super::outbox)). With `wait` and `Replication::Sync {
    /// acks }`, returns once `acks` peers persisted them (or the sync timeout
    /// passed; then the sync policy decides).
    pub(crate) async fn push(&self, pushes: Pushes, wait: bool) -> Result<(), Error> {
        if pushes.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        let cfg = &shared.config;
        let peers = self.peers().await;
        let send = |peer, wait| {
            shared
                .outbox
                .send(&shared.exchange, &shared.tasks, peer, &pushes, wait)
        };
        let acks = match cfg.replication() {
            Replication::Sync { acks } if wait && acks > 0 => acks,
            _ => {
                for peer in peers {
                    send(peer, false);
                }
                return Ok(());
            }
        };
        let mut acked = 0;
        {
            let mut all: FuturesUnordered<_> = peers
                .iter()
                .map(|p| {
                    let receivers = send(*p, true);
                    async move {
                        for rx in receivers {
                            if !rx.await.unwrap_or(false) {
                                return false;
                            }
                        }
                        true
                    }
                })
                .collect();
            let deadline = tokio::time::sleep(cfg.sync_timeout());
            tokio::pin!(deadline);
            while acked < acks {
                tokio::select! {
                    next = all.next() => match next {
                        Some(true) => acked += 1,
                        Some(false) => {}
                        None => break,
                    },
                    () = &mut deadline => break,
                }
            }
        }
        if acked >= acks {
            return Ok(());
        }
        match cfg.sync_policy() {
            SyncPolicy::Fail => Err(Error::NotReplicated {
                acked,
                wanted: acks,
            }),
            SyncPolicy::Degrade => {
                tracing::warn!(
                    acked,
                    wanted = acks,
                    "write confirmed by fewer peers than asked"
                );
                Ok(())
            }
        }
    }

    /// Asks every connected peer for `key`, waiting at most the fetch
    /// timeout for a free slot and as long again for the answers; an id no
    /// peer held (live) a moment ago is not asked for again yet.
    #[tracing::instrument(name = "replication.fetch", level = "debug", skip_all, fields(session = %key.short()))]
    pub(crate) async fn fetch(&self, key: DocKey) {
        let shared = &self.shared;
        let now = Instant::now();
        if self
            .unknown()
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < UNKNOWN_FOR)
        {
            return;
        }
        let wait = shared.config.fetch_timeout();
        let slot = Arc::clone(&shared.fetch_slots).acquire_owned();
        let Ok(Ok(_permit)) = tokio::time::timeout(wait, slot).await else {
            tracing::debug!(session = %key.short(), "too many fetches in flight; treating the id as unknown");
            return;
        };
        let deadline = Instant::now() + shared.config.fetch_timeout();
        self.pull(key, deadline, || false).await;
        let engine = &shared.exchange.engine;
        let missed = matches!(
            blocking(false, || engine.lineages(key)),
            Ok(Held::Missing | Held::Gone { .. })
        );
        if missed {
            self.unknown().put(key, Instant::now());
        }
        let outcome = if missed { "miss" } else { "hit" };
        tracing::debug!(outcome, "fetch on miss");
        let fetches = &engine.metrics().fetches;
        fetches.get_or_create(&label("outcome", outcome)).inc();
    }

    fn unknown(&self) -> std::sync::MutexGuard<'_, lru::LruCache<DocKey, Instant>> {
        self.shared
            .unknown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`pull`](Self::pull) for a request catching up to its token, within
    /// the same bound on pulls in flight as fetches on miss: with every slot
    /// taken, the request only waits for changes to arrive.
    pub(crate) async fn catch_up(
        &self,
        key: DocKey,
        deadline: Instant,
        done: impl Fn() -> bool,
    ) -> bool {
        let Ok(_permit) = Arc::clone(&self.shared.fetch_slots).try_acquire_owned() else {
            tracing::debug!(session = %key.short(), "too many pulls in flight; waiting instead");
            return false;
        };
        self.pull(key, deadline, done).await
    }

    /// Syncs `key` with every connected peer at once, until `done()` says
    /// enough arrived, every exchange ended, or `deadline`. Returns whether
    /// the session is dead elsewhere: ended at a peer (which ends the
    /// search), or expired at a peer while no other delivered it.
    pub(crate) async fn pull(
        &self,
        key: DocKey,
        deadline: Instant,
        done: impl Fn() -> bool,
    ) -> bool {
        let exchange = &self.shared.exchange;
        let peers = self.peers().await;
        let mut all: FuturesUnordered<_> =
            peers.iter().map(|p| exchange.sync_doc(*p, key)).collect();
        // One peer's expiry tombstone is not the last word: another may hold
        // accesses that one never heard of.
        let mut expired = false;
        loop {
            match tokio::time::timeout_at(deadline, all.next()).await {
                Ok(Some(Ok(Outcome::Gone { ended: true }))) => return true,
                Ok(Some(Ok(Outcome::Gone { ended: false }))) => expired = true,
                Ok(Some(_)) if blocking(false, &done) => return false,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return expired && !blocking(false, &done),
            }
        }
    }

    /// Waits until `peers` peers' clocks have been measured, at most
    /// `limit`.
    pub(crate) async fn clock_measured(&self, peers: usize, limit: std::time::Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.shared.clock.measured() < peers {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// Chunks waiting in the outbox, all peers, and their bytes.
    pub(crate) fn outbox_usage(&self) -> (usize, usize) {
        self.shared.outbox.usage()
    }

    /// One anti-entropy round with every connected peer, one after another.
    pub(crate) async fn anti_entropy(&self) {
        for peer in self.peers().await {
            anti_entropy(&self.shared.exchange, Some(&self.shared.clock), peer).await;
        }
    }
}
