use std::sync::Weak;

use libp2p::identity::Keypair;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::{Config, Error, Request, Response};

/// What the network asks of the node: answer a peer's request, and hear
/// about peers coming and going. Called outside the actor task, so it may
/// block on storage.
pub(crate) trait Handler: Send + Sync + 'static {
    fn on_request(&self, peer: PeerId, req: Request) -> Response;
    fn on_connected(&self, peer: PeerId);
    fn on_disconnected(&self, peer: PeerId);
}

pub(super) enum Command {
    Request {
        peer: PeerId,
        req: Request,
        reply: oneshot::Sender<Result<Response, Error>>,
    },
    Respond {
        channel: ResponseChannel<Response>,
        resp: Response,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    AddPeer {
        addr: Multiaddr,
    },
    Block {
        peer: PeerId,
        blocked: bool,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Bound on queued commands: a full queue makes callers wait (back-pressure)
/// instead of growing memory without limit.
pub(super) const COMMAND_QUEUE: usize = 1024;

/// A cloneable handle to the network actor; each call sends one command and
/// waits for its reply. The actor ends when every handle is dropped or on
/// [`shutdown`](Self::shutdown).
#[derive(Debug, Clone)]
pub(crate) struct Network {
    cmds: mpsc::Sender<Command>,
    local: PeerId,
}

impl Network {
    /// Builds the swarm, starts listening and dialling, and spawns the actor.
    pub(crate) async fn start(
        keypair: Keypair,
        config: &Config,
        handler: Weak<dyn Handler>,
    ) -> Result<Self, Error> {
        let local = keypair.public().to_peer_id();
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let actor = super::actor::Actor::new(keypair, config, handler, rx, tx.downgrade())?;
        tokio::spawn(actor.run());
        let net = Self { cmds: tx, local };
        // Wait until the listeners are bound, so callers can read the addresses.
        if !config.listen.is_empty() {
            for _ in 0..200 {
                if !net.listen_addrs().await.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        Ok(net)
    }

    pub(crate) fn local_peer_id(&self) -> PeerId {
        self.local
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(make(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Sends `req` to `peer` and waits for the answer.
    pub(crate) async fn request(&self, peer: PeerId, req: Request) -> Result<Response, Error> {
        self.ask(|reply| Command::Request { peer, req, reply })
            .await?
    }

    /// Peers with at least one open connection.
    pub(crate) async fn peers(&self) -> Vec<PeerId> {
        self.ask(|reply| Command::Peers { reply })
            .await
            .unwrap_or_default()
    }

    /// The addresses the node listens on.
    pub(crate) async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ask(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// Keeps a connection to `addr` from now on.
    pub(crate) async fn add_peer(&self, addr: Multiaddr) -> Result<(), Error> {
        self.cmds
            .send(Command::AddPeer { addr })
            .await
            .map_err(|_| Error::Closed)
    }

    /// Blocks (or unblocks) a peer: its connections close and it cannot
    /// connect again until unblocked.
    pub(crate) async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), Error> {
        self.cmds
            .send(Command::Block { peer, blocked })
            .await
            .map_err(|_| Error::Closed)
    }

    /// Stops the actor and waits until the swarm is dropped.
    pub(crate) async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}
