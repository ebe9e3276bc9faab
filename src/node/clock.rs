//! How a node's clock compares with its peers' (see
//! `replicator::clock_sync`).

use super::Node;

impl Node {
    /// How this node's clock compares with its peers': each peer's clock
    /// minus this node's in ms, as last measured by anti-entropy, and what
    /// this node adds to its configured clock to agree with the majority of
    /// them (0 with no peers, or when they agree within a second). Expiry
    /// is decided from times the nodes write into sessions; a peer off by
    /// more than 5 s is also reported in the log.
    #[must_use]
    pub fn clock_offsets(&self) -> (Vec<(crate::net::PeerId, i64)>, i64) {
        match self.shared.replicator.get() {
            Some(repl) => repl.clock_offsets(),
            None => (Vec::new(), self.shared.clock.correction_ms()),
        }
    }
}
