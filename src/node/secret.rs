//! A secret for what applications sign (their cookies): the same on every
//! node of a cluster, and the same across restarts of a node on its own.

use super::Node;
use crate::store::write_private_file;
use crate::Error;

/// The file, in the data directory, that holds a lone node's secret.
const SECRET_FILE: &str = "cookie-secret";

impl Node {
    /// 32 secret bytes for the application to key its cookie signing (or
    /// encryption) with, so that cookies outlive a restart and every node
    /// of a cluster accepts every other's. With a network, they are derived
    /// from the cluster key (the same on every node); on a node on its own,
    /// they are drawn once and kept in the data directory (readable by its
    /// owner only). Derive what you need from them with a label of your
    /// own, as [`MeshStore::cookie_key`](crate::adapters) does.
    ///
    /// # Errors
    ///
    /// [`Error::DataDir`] when a lone node's secret cannot be read or
    /// written.
    pub fn cookie_secret(&self) -> Result<[u8; 32], Error> {
        use sha2::{Digest, Sha256};
        let config = self.config();
        if let Some(net) = config.network() {
            let mut h = Sha256::new();
            h.update(b"sessionmesh cookie secret");
            h.update(net.cluster_key());
            return Ok(h.finalize().into());
        }
        let path = config.data_dir().join(SECRET_FILE);
        let dir_error = |source| Error::DataDir {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                dir_error(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the cookie secret is not 32 bytes",
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: [u8; 32] = crate::id::random_bytes();
                write_private_file(&path, &secret).map_err(dir_error)?;
                Ok(secret)
            }
            Err(e) => Err(dir_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Node};

    #[tokio::test]
    async fn a_lone_node_keeps_its_secret_across_restarts_and_a_cluster_shares_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let node = Node::open(Config::new(dir.path())).await.unwrap();
            let s = node.cookie_secret().unwrap();
            assert_eq!(node.cookie_secret().unwrap(), s);
            node.shutdown().await.unwrap();
            s
        };
        let node = Node::open(Config::new(dir.path())).await.unwrap();
        assert_eq!(node.cookie_secret().unwrap(), first);
        node.shutdown().await.unwrap();
        let other = tempfile::tempdir().unwrap();
        let node = Node::open(Config::new(other.path())).await.unwrap();
        assert_ne!(node.cookie_secret().unwrap(), first, "drawn per node");
        node.shutdown().await.unwrap();
        // Nodes of one cluster: one secret, from the cluster key.
        let secret_of = |dir: &std::path::Path| {
            let net = crate::net::Config::new([7; 32]);
            let config = Config::new(dir).with_network(net);
            async move {
                let node = Node::open(config).await.unwrap();
                let secret = node.cookie_secret().unwrap();
                node.shutdown().await.unwrap();
                secret
            }
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(secret_of(a.path()).await, secret_of(b.path()).await);
    }
}
