//! [`Node::fingerprint`]: one value that says whether two nodes hold the
//! same sessions, without reading any of them.

use sha2::{Digest as _, Sha256};

use super::Node;
use crate::Error;

/// Sessions read per page while folding the fingerprint.
const PAGE: usize = 1024;

/// What [`Node::fingerprint`] returns: how many live sessions a node holds
/// and a hash over each one's key, generation and heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Live sessions: not ended, their deadline ahead.
    pub sessions: usize,
    /// Equal on two nodes exactly when they hold the same live sessions in
    /// the same states (up to hash collisions).
    pub hash: u64,
}

impl Node {
    /// A fingerprint of every live session this node holds. Nodes that have
    /// converged — the same sessions, each with the same changes — have
    /// equal fingerprints; a node that missed a write, a logout or a
    /// generation switch has a different one. It reads the index only (no
    /// document is loaded, nothing is recorded as an access), so an
    /// operator or a test can poll it to see when a cluster has settled.
    /// It walks the whole index: its cost grows with the sessions stored.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the index cannot be read; [`Error::Shutdown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sessionmesh::Error> {
    /// use sessionmesh::{Config, Node, SessionId};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let node = Node::open(Config::new(dir.path())).await?;
    /// let before = node.fingerprint().await?;
    /// node.create(&SessionId::random(), &[]).await?;
    /// let after = node.fingerprint().await?;
    /// assert_eq!((before.sessions, after.sessions), (0, 1));
    /// assert_ne!(before.hash, after.hash);
    /// # node.shutdown().await
    /// # }
    /// ```
    pub async fn fingerprint(&self) -> Result<Fingerprint, Error> {
        // A walk over every session: marked as blocking, so the worker
        // hands its other tasks on meanwhile.
        let engine = &self.shared.engine;
        crate::tasks::blocking(true, || {
            let mut hasher = Sha256::new();
            let mut sessions = 0;
            let mut from: Vec<u8> = Vec::new();
            loop {
                let page = engine.live_digest(&from, PAGE)?;
                let full = page.len() == PAGE;
                for (key, heads) in &page {
                    hasher.update(key.as_bytes());
                    hasher.update(heads.to_le_bytes());
                }
                sessions += page.len();
                match page.last() {
                    Some((last, _)) if full => {
                        // The next page starts just after the last key.
                        from = last.as_bytes().to_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
            let hash = hasher.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&hash[..8]);
            Ok(Fingerprint {
                sessions,
                hash: u64::from_le_bytes(first),
            })
        })
    }
}
