//! What the network actor and the rest of the node exchange: commands from
//! the [`Network`](super::Network) handle, peer events out, and the
//! [`Handler`] that answers peers' requests.

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::error::Error;
use super::message::{Request, Response};

/// What the network asks of the node: answer a peer's request. Called on
/// the blocking pool, outside the actor task, so it may block on storage.
pub(crate) trait Handler: Send + Sync + 'static {
    fn on_request(&self, peer: PeerId, req: Request) -> Response;
}

/// A peer came or went (its first connection opened, its last closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerEvent {
    Connected(PeerId),
    Disconnected(PeerId),
}

/// Peer events queued at most; past this an event is dropped (and logged):
/// periodic anti-entropy covers a missed connect.
pub(super) const EVENT_QUEUE: usize = 1024;

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
}

/// Bound on queued commands: a full queue makes callers wait (back-pressure)
/// instead of growing memory without limit.
pub(super) const COMMAND_QUEUE: usize = 1024;
