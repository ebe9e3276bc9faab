//! What a node is made of, and how it is opened: the engine on its data
//! directory, the task owner with the sweeper, and — with a network — the
//! libp2p actor and the replicator.

use std::sync::{Arc, OnceLock};

use super::stats::Counters;
use crate::clock::Corrected;
use crate::engine::{Engine, Wrap};
use crate::net::{self, Network};
use crate::replicator::{Inbound, Replicator};
use crate::store::IDENTITY_FILE;
use crate::tasks::{blocking, Tasks};
use crate::{Config, Error};

/// How long opening waits for a first peer's clock (see `clock_sync.rs`).
const CLOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(3);

/// Everything a node is, behind its handles.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) engine: Engine,
    /// Owns every task the node starts.
    pub(super) tasks: Tasks,
    /// The libp2p network, when the node was opened with one.
    pub(super) network: Option<Network>,
    /// Replication, once the node has a transport: from `open` with a
    /// network, or later from [`Node::attach_transport`](crate::Node::attach_transport).
    pub(super) replicator: OnceLock<Replicator>,
    /// What [`Node::stats`](crate::Node::stats) reports.
    pub(super) counters: Counters,
    /// The node's clock: the configured one, corrected toward the peers'.
    pub(super) clock: Arc<Corrected>,
    /// Transient attributes of the sessions served here.
    pub(crate) transients: super::transient::Transients,
}

impl Drop for Shared {
    /// The last handle is gone without `Node::shutdown` (a crash, as far
    /// as the data is concerned): the tasks are stopped and the data
    /// directory is released at once, without a final flush.
    fn drop(&mut self) {
        self.tasks.abort();
        let _ = self.engine.close(false);
    }
}

impl Shared {
    /// Opens the data directory (through `wrap`, when given), starts the
    /// sweeper and, when configured, the network and the replicator.
    pub(super) async fn open(config: Config, wrap: Option<Wrap>) -> Result<Self, Error> {
        let clock = Arc::new(Corrected::new(config.clock_arc()));
        let config = config.with_clock(Arc::clone(&clock));
        let cfg = config.clone();
        // The store, and the network identity when there is a network: file
        // work, off the async threads. A failure drops what was opened.
        let opened = tokio::task::spawn_blocking(move || {
            let engine = Engine::open(cfg.clone(), wrap)?;
            let keypair = match cfg.network() {
                Some(_) => {
                    let path = cfg.data_dir().join(IDENTITY_FILE);
                    let key = net::load_or_create_identity(&path)
                        .map_err(|source| Error::DataDir { path, source })?;
                    Some(key)
                }
                None => None,
            };
            Ok::<_, Error>((engine, keypair))
        })
        .await;
        let (engine, keypair) = match opened {
            Ok(opened) => opened?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(Error::Shutdown),
        };
        let tasks = Tasks::new();
        let replicator = OnceLock::new();
        let mut network = None;
        if let (Some(net_cfg), Some(keypair)) = (config.network(), keypair) {
            let inbound = Arc::new(Inbound::new(engine.clone()));
            let started = Network::start(keypair, net_cfg, inbound.clone(), &tasks).await;
            let (net, events) = match started {
                Ok(started) => started,
                Err(e) => {
                    tasks.shutdown().await;
                    engine.close(false)?;
                    return Err(e.into());
                }
            };
            tracing::info!(peer_id = %net.local_peer_id(), "network up");
            let transport = Arc::new(net.clone());
            let repl = Replicator::start(
                inbound,
                transport,
                net_cfg.clone(),
                Arc::clone(&clock),
                &tasks,
            );
            repl.watch_peers(net.local_peer_id(), events);
            // A node with peers to dial does not serve before it has checked
            // its clock against them (briefly: a peer may be down).
            let peers = net_cfg.peer_count();
            if peers > 0 && !repl.clock_measured(peers, CLOCK_CHECK).await {
                tracing::warn!("not every peer answered within {CLOCK_CHECK:?}; serving with the clock as measured so far");
            }
            let _ = replicator.set(repl);
            network = Some(net);
        }
        // The sweeper judges expiry by the clock: it starts once the clock
        // is checked (a first sweep with a clock far ahead would tombstone
        // every session).
        let sweeper = engine.clone();
        tasks.every(config.sweep_interval(), move || {
            let engine = sweeper.clone();
            async move { blocking(true, || engine.background_sweep()) }
        });
        tracing::info!(node = %engine.node_id(), sessions = engine.session_count(), "node open");
        let counters = Counters::new(engine.metrics().session_tokens.clone());
        Ok(Self {
            engine,
            tasks,
            network,
            replicator,
            counters,
            clock,
            transients: super::transient::Transients::default(),
        })
    }
}
