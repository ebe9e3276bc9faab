use libp2p::PeerId;
use thiserror::Error;

/// What can go wrong in the network layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The swarm could not be built or could not listen (address in use,
    /// malformed address). Fix the configuration.
    #[error("network setup: {0}")]
    Setup(String),
    /// A request to a peer failed (disconnected, timed out, refused). The
    /// operation can be retried; anti-entropy repairs what is missed.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The network actor is gone (the node is shutting down).
    #[error("the network is shut down")]
    Closed,
}
