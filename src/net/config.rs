use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

/// How a commit waits for peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replication {
    /// Answer after the local persist; push to peers in the background.
    #[default]
    Async,
    /// Answer once `acks` peers confirmed they persisted the change (the
    /// counterpart of Hazelcast's synchronous backups), waiting at most the
    /// sync timeout; [`SyncPolicy`] says what happens when fewer confirm.
    Sync {
        /// How many peers must confirm.
        acks: usize,
    },
}

/// What a `Replication::Sync` commit does when fewer peers than asked
/// confirmed in time. The write is durable locally either way, and
/// anti-entropy keeps replicating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Answer success and log a warning (availability first). The default.
    #[default]
    Degrade,
    /// Fail the request with [`Error::NotReplicated`](crate::Error::NotReplicated).
    Fail,
}

/// What a node does with a request whose session token says the client has
/// seen a newer state than this node holds, when catching up (waiting for
/// the change in flight, then pulling it from peers) did not succeed within
/// the catch-up bound. A session the node does not hold at all while the
/// token proves it exists is never served as a fresh one: that is always
/// [`Error::Unreachable`](crate::Error::Unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StaleReads {
    /// Refuse with [`Error::Behind`](crate::Error::Behind): the HTTP layer
    /// answers `503 Service Unavailable` with `Retry-After`, and the client
    /// (or the balancer) tries again. The default: a user never sees their
    /// own write vanish.
    #[default]
    Refuse,
    /// Serve the older state, marked as such
    /// ([`SessionView::behind`](crate::SessionView::behind); the HTTP layer
    /// adds the response header `x-session-stale: true`).
    Serve,
}

/// The network settings of a node.
///
/// # Examples
///
/// ```
/// use sessionmesh::net::{Config, Replication};
///
/// let net = Config::new([7u8; 32])
///     .with_listen("/ip4/127.0.0.1/tcp/7001".parse().unwrap())
///     .with_peer("/ip4/127.0.0.1/tcp/7002".parse().unwrap())
///     .with_replication(Replication::Sync { acks: 1 });
/// assert_eq!(net.replication(), Replication::Sync { acks: 1 });
/// ```
#[derive(Clone)]
pub struct Config {
    pub(super) cluster_key: [u8; 32],
    pub(super) listen: Vec<Multiaddr>,
    pub(super) peers: Vec<Multiaddr>,
    pub(super) allow: Option<Vec<PeerId>>,
    pub(super) mdns: bool,
    pub(super) replication: Replication,
    pub(super) sync_policy: SyncPolicy,
    pub(super) sync_timeout: Duration,
    pub(super) fetch_timeout: Duration,
    pub(super) anti_entropy_interval: Duration,
    pub(super) request_timeout: Duration,
    pub(super) catch_up: Duration,
    pub(super) stale_reads: StaleReads,
}

impl std::fmt::Debug for Config {
    /// Everything but the cluster key, which is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("cluster_key", &"<redacted>")
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("allow", &self.allow)
            .field("mdns", &self.mdns)
            .field("replication", &self.replication)
            .field("sync_policy", &self.sync_policy)
            .field("sync_timeout", &self.sync_timeout)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("anti_entropy_interval", &self.anti_entropy_interval)
            .field("request_timeout", &self.request_timeout)
            .field("catch_up", &self.catch_up)
            .field("stale_reads", &self.stale_reads)
            .finish()
    }
}

impl Config {
    /// A network for the cluster sharing `cluster_key`, listening nowhere
    /// and knowing no peers yet.
    #[must_use]
    pub fn new(cluster_key: [u8; 32]) -> Self {
        Self {
            cluster_key,
            listen: Vec::new(),
            peers: Vec::new(),
            allow: None,
            mdns: false,
            replication: Replication::Async,
            sync_policy: SyncPolicy::Degrade,
            sync_timeout: Duration::from_secs(2),
            fetch_timeout: Duration::from_millis(500),
            anti_entropy_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            catch_up: Duration::from_millis(100),
            stale_reads: StaleReads::Refuse,
        }
    }

    /// Parses a cluster key from 64 hex characters.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong with the text.
    pub fn parse_key(hex: &str) -> Result<[u8; 32], String> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a cluster key is 64 hex characters".into());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(key)
    }

    /// Listens on `addr` (repeatable; `/tcp/0` picks a free port).
    #[must_use]
    pub fn with_listen(mut self, addr: Multiaddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Keeps a connection to the peer at `addr`, redialling with back-off.
    #[must_use]
    pub fn with_peer(mut self, addr: Multiaddr) -> Self {
        self.peers.push(addr);
        self
    }

    /// How many peers to dial were given ([`with_peer`](Self::with_peer)).
    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Accepts connections only from these peers.
    #[must_use]
    pub fn with_allow_list(mut self, peers: impl IntoIterator<Item = PeerId>) -> Self {
        self.allow = Some(peers.into_iter().collect());
        self
    }

    /// Finds peers on the local network by mDNS (development only).
    #[must_use]
    pub fn with_mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }

    /// How commits wait for peers.
    #[must_use]
    pub fn with_replication(mut self, replication: Replication) -> Self {
        self.replication = replication;
        self
    }

    /// What a synchronous commit does when fewer peers confirm in time.
    #[must_use]
    pub fn with_sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// How long a synchronous commit waits for acknowledgements (2 s).
    #[must_use]
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// How long a request for an unknown id waits for peers (500 ms).
    #[must_use]
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// How often peers compare digests (5 s).
    #[must_use]
    pub fn with_anti_entropy_interval(mut self, interval: Duration) -> Self {
        self.anti_entropy_interval = interval;
        self
    }

    /// How long one request to a peer may take before it counts as failed
    /// (10 s).
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a request may wait for this node to catch up to the state
    /// its session token says the client has seen (100 ms): first for the
    /// change already on its way, then pulling it from the peers once.
    #[must_use]
    pub fn with_catch_up(mut self, bound: Duration) -> Self {
        self.catch_up = bound;
        self
    }

    /// What to do when catching up did not succeed in time (refuse, by
    /// default).
    #[must_use]
    pub fn with_stale_reads(mut self, policy: StaleReads) -> Self {
        self.stale_reads = policy;
        self
    }

    /// The catch-up bound.
    #[must_use]
    pub fn catch_up(&self) -> Duration {
        self.catch_up
    }

    /// The stale-read policy.
    #[must_use]
    pub fn stale_reads(&self) -> StaleReads {
        self.stale_reads
    }

    /// The cluster key (a secret: never log it).
    pub(crate) fn cluster_key(&self) -> &[u8; 32] {
        &self.cluster_key
    }

    /// The replication mode.
    #[must_use]
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// What a synchronous commit does when fewer peers confirm in time.
    #[must_use]
    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync_policy
    }

    /// How long a synchronous commit waits for acknowledgements.
    #[must_use]
    pub fn sync_timeout(&self) -> Duration {
        self.sync_timeout
    }

    /// How long a request for an unknown id waits for peers.
    #[must_use]
    pub fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
    }

    /// How often peers compare digests.
    #[must_use]
    pub fn anti_entropy_interval(&self) -> Duration {
        self.anti_entropy_interval
    }

    /// Refuses settings that cannot work, naming the setting and why.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field: &'static str, why: &'static str| {
            Err(crate::Error::InvalidConfig { field, why })
        };
        if self.anti_entropy_interval.is_zero() {
            return bad("anti_entropy_interval", "must be positive");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        if self.catch_up > Duration::from_secs(60) {
            return bad(
                "catch_up",
                "must be at most a minute (a request waits that long)",
            );
        }
        if let Replication::Sync { acks } = self.replication {
            if acks == 0 {
                return bad("replication", "Sync needs at least one ack; use Async");
            }
            if self.sync_timeout.is_zero() {
                return bad("sync_timeout", "must be positive under Replication::Sync");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_cluster_key() {
        let config = Config::new([0xab; 32]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("cluster_key"), "{shown}");
    }
}
