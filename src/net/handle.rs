use std::sync::Arc;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::actor::{Actor, Links};
use super::command::{Command, Handler, PeerEvent, COMMAND_QUEUE, EVENT_QUEUE};
use super::config::Config;
use super::error::Error;
use super::message::{Request, Response};
use crate::tasks::Tasks;

/// A cloneable handle to the network actor; each call sends one command and
/// waits for its reply. The actor is a task of the node's [`Tasks`]: it
/// ends when the node stops, or when every handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    cmds: mpsc::Sender<Command>,
    local: PeerId,
}

impl Network {
    /// Builds the swarm, starts listening and dialling, and spawns the actor
    /// as a task of `tasks`. Peers coming and going arrive on the returned
    /// receiver; requests from peers are answered by `handler`.
    pub(crate) async fn start(
        keypair: Keypair,
        config: &Config,
        handler: Arc<dyn Handler>,
        tasks: &Tasks,
    ) -> Result<(Self, mpsc::Receiver<PeerEvent>), Error> {
        let local = keypair.public().to_peer_id();
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let actor = Actor::new(
            keypair,
            config,
            Links {
                handler,
                cmds: rx,
                cmd_tx: tx.downgrade(),
                events: events_tx,
                tasks: tasks.clone(),
            },
        )?;
        tasks.spawn(actor.run());
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
        Ok((net, events))
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
}
