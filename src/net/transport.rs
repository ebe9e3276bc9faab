use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use libp2p::PeerId;

use super::error::Error;
use super::handle::Network;
use super::message::{Request, Response};

/// A boxed, sendable future (what [`Transport`] methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What replication needs of a network: ask a peer, list the peers. The
/// libp2p network implements it; a node can also be given another one with
/// [`Node::attach_transport`](crate::Node::attach_transport), and the
/// receiving side answers through [`Node::handle`](crate::Node::handle) —
/// which is how the property tests run the real protocol over a simulated,
/// faulty network.
pub trait Transport: Send + Sync + Debug + 'static {
    /// Sends `req` to `peer` and waits for its answer.
    fn request(&self, peer: PeerId, req: Request) -> BoxFuture<'_, Result<Response, Error>>;
    /// The peers that can be asked now.
    fn peers(&self) -> BoxFuture<'_, Vec<PeerId>>;
}

impl Transport for Network {
    fn request(&self, peer: PeerId, req: Request) -> BoxFuture<'_, Result<Response, Error>> {
        Box::pin(Network::request(self, peer, req))
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
        Box::pin(Network::peers(self))
    }
}
