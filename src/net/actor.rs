//! The one task that owns the Swarm. It turns commands into swarm calls and
//! swarm events into replies; inbound requests are answered by the node's
//! [`Handler`] on the blocking pool, so storage never stalls the event loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::Transport as _;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, mdns, noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm,
    SwarmBuilder,
};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::command::{Command, Handler, PeerEvent};
use super::config::Config;
use super::error::Error;
use super::message::{Request, Response};
use crate::tasks::Tasks;

const PROTOCOL: &str = "/sessionmesh/repl/1";
/// Inbound requests handled at once; more are refused with `busy` and the
/// sender's anti-entropy retries later.
const INBOUND_CONCURRENCY: usize = 64;
const MAX_CONNECTIONS: u32 = 256;
const REDIAL_MIN: Duration = Duration::from_millis(100);
const REDIAL_MAX: Duration = Duration::from_secs(5);

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub(super) struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    allowed: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    limits: connection_limits::Behaviour,
    repl: request_response::Behaviour<super::wire::Codec>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// A bootstrap address this node keeps a connection to.
#[derive(Debug)]
struct Bootstrap {
    addr: Multiaddr,
    /// The connection dialled to it, while dialling or connected.
    connection: Option<ConnectionId>,
    next_attempt: Instant,
    backoff: Duration,
}

/// What the actor talks to besides the swarm.
pub(super) struct Links {
    /// Answers peers' requests.
    pub(super) handler: Arc<dyn Handler>,
    pub(super) cmds: mpsc::Receiver<Command>,
    /// For tasks that answer inbound requests and send the answer back here.
    /// Weak, so that the actor ends when the last handle is dropped.
    pub(super) cmd_tx: mpsc::WeakSender<Command>,
    /// Where peers coming and going are reported.
    pub(super) events: mpsc::Sender<PeerEvent>,
    /// Where inbound requests are answered.
    pub(super) tasks: Tasks,
}

pub(super) struct Actor {
    swarm: Swarm<Behaviour>,
    links: Links,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, Error>>>,
    bootstrap: Vec<Bootstrap>,
    listen_addrs: Vec<Multiaddr>,
    inbound: Arc<Semaphore>,
}

fn setup<E: std::fmt::Display>(e: E) -> Error {
    Error::Setup(e.to_string())
}

impl Actor {
    pub(super) fn new(keypair: Keypair, config: &Config, links: Links) -> Result<Self, Error> {
        let psk = PreSharedKey::new(config.cluster_key);
        let allow = config.allow.clone();
        let use_mdns = config.mdns;
        let request_timeout = config.request_timeout;
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|key| {
                let noise = noise::Config::new(key)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                        .upgrade(Version::V1)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .timeout(Duration::from_secs(20)),
                )
            })
            .map_err(setup)?
            .with_behaviour(|key| {
                let repl = request_response::Behaviour::with_codec(
                    super::wire::Codec,
                    [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(request_timeout),
                );
                let allowed = allow.map(|peers| {
                    let mut b =
                        allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
                    for p in peers {
                        b.allow_peer(p);
                    }
                    b
                });
                let mdns = if use_mdns {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config::default(),
                        key.public().to_peer_id(),
                    )?)
                } else {
                    None
                };
                let limits = connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(MAX_CONNECTIONS))
                        .with_max_established_per_peer(Some(4)),
                );
                Ok(Behaviour {
                    blocked: allow_block_list::Behaviour::default(),
                    allowed: allowed.into(),
                    limits,
                    repl,
                    mdns: mdns.into(),
                })
            })
            .map_err(setup)?
            // A cluster's connections are kept open; the default would close
            // them after 10 s without traffic.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(u64::MAX)))
            .build();
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(setup)?;
        }
        let now = Instant::now();
        let bootstrap = config
            .peers
            .iter()
            .map(|addr| Bootstrap {
                addr: addr.clone(),
                connection: None,
                next_attempt: now,
                backoff: REDIAL_MIN,
            })
            .collect();
        Ok(Self {
            swarm,
            links,
            pending: HashMap::new(),
            bootstrap,
            listen_addrs: Vec::new(),
            inbound: Arc::new(Semaphore::new(INBOUND_CONCURRENCY)),
        })
    }

    pub(super) async fn run(mut self) {
        let mut redial = tokio::time::interval(Duration::from_millis(100));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.links.cmds.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = redial.tick() => self.redial(),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { peer, req, reply } => {
                if self.swarm.is_connected(&peer) {
                    let id = self.swarm.behaviour_mut().repl.send_request(&peer, req);
                    self.pending.insert(id, reply);
                } else {
                    let _ = reply.send(Err(Error::Request {
                        peer,
                        reason: "not connected".into(),
                    }));
                }
            }
            Command::Respond { channel, resp } => {
                // The peer may have gone meanwhile; nothing else to do then.
                let _ = self.swarm.behaviour_mut().repl.send_response(channel, resp);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::AddPeer { addr } => {
                if !self.bootstrap.iter().any(|b| b.addr == addr) {
                    self.bootstrap.push(Bootstrap {
                        addr,
                        connection: None,
                        next_attempt: Instant::now(),
                        backoff: REDIAL_MIN,
                    });
                    self.redial();
                }
            }
            Command::Block { peer, blocked } => {
                let b = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    b.block_peer(peer);
                } else {
                    b.unblock_peer(peer);
                    // The peer may sit behind any unconnected address (they
                    // are dialled without a peer id): try them all now
                    // instead of when their back-off, grown while the peer
                    // was refused, runs out.
                    let now = Instant::now();
                    for boot in &mut self.bootstrap {
                        if boot.connection.is_none() {
                            boot.next_attempt = now;
                            boot.backoff = REDIAL_MIN;
                        }
                    }
                    self.redial();
                }
            }
        }
    }

    fn redial(&mut self) {
        let now = Instant::now();
        for b in &mut self.bootstrap {
            if b.connection.is_some() || now < b.next_attempt {
                continue;
            }
            let opts = DialOpts::unknown_peer_id().address(b.addr.clone()).build();
            let id = opts.connection_id();
            b.next_attempt = now + b.backoff;
            b.backoff = (b.backoff * 2).min(REDIAL_MAX);
            if self.swarm.dial(opts).is_ok() {
                b.connection = Some(id);
            }
        }
    }

    fn forget_connection(&mut self, id: ConnectionId) {
        for b in &mut self.bootstrap {
            if b.connection == Some(id) {
                b.connection = None;
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                for b in &mut self.bootstrap {
                    if b.connection == Some(connection_id) {
                        b.backoff = REDIAL_MIN;
                    }
                }
                if num_established.get() == 1 {
                    tracing::debug!(peer = %peer_id, "peer connected");
                    self.report(PeerEvent::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.forget_connection(connection_id);
                if num_established == 0 {
                    tracing::debug!(peer = %peer_id, "peer disconnected");
                    self.report(PeerEvent::Disconnected(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                tracing::trace!(%error, "dial failed");
                self.forget_connection(connection_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Repl(event)) => self.on_repl(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            _ => {}
        }
    }

    fn on_repl(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let Ok(permit) = Arc::clone(&self.inbound).try_acquire_owned() else {
                    let busy = Response::Refused {
                        reason: "busy".into(),
                    };
                    let _ = self.swarm.behaviour_mut().repl.send_response(channel, busy);
                    return;
                };
                let handler = Arc::clone(&self.links.handler);
                let weak_tx = self.links.cmd_tx.clone();
                // Answered on the blocking pool (storage work); the answer
                // goes back through the command queue.
                self.links.tasks.spawn_blocking(move || {
                    let resp = handler.on_request(peer, request);
                    drop(permit);
                    if let Some(tx) = weak_tx.upgrade() {
                        // Fails only once the actor is gone.
                        let _ = tx.blocking_send(Command::Respond { channel, resp });
                    }
                });
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(Error::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Tells the node a peer came or went, without waiting.
    fn report(&self, event: PeerEvent) {
        if self.links.events.try_send(event).is_err() {
            tracing::debug!(?event, "peer event dropped: the node is busy or gone");
        }
    }
}
