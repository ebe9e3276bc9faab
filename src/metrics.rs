//! A node's metrics, for Prometheus: one registry per node (several nodes
//! in one process keep their figures apart), rendered in the OpenMetrics
//! text format by [`Node::metrics`](crate::Node::metrics).
//!
//! | series | kind | what |
//! |---|---|---|
//! | `sessionmesh_sessions` | gauge | sessions stored on this node |
//! | `sessionmesh_sessions_cached` / `_cache_bytes` | gauge | sessions with a slot in the document cache, and the estimated bytes of the cache |
//! | `sessionmesh_commits_total{kind}` | counter | writes committed: `create`, `commit`, `rotate` |
//! | `sessionmesh_commit_errors_total{error}` | counter | writes refused: `too_large`, `invalid`, `storage`, `other` |
//! | `sessionmesh_commit_seconds` | histogram | time to commit and persist a write |
//! | `sessionmesh_http_responses_total{code}` | counter | answers through the session layer, by status |
//! | `sessionmesh_pushes_sent_total{peer}` / `_acked_` / `_failed_` / `_dropped_` | counter | change chunks pushed to a peer; persisted by it; not (refused, lost, timed out); dropped from a full queue (anti-entropy carries them) |
//! | `sessionmesh_pushes_received_total{outcome}` | counter | chunks peers pushed here: `applied`, `deferred`, `refused` |
//! | `sessionmesh_replication_lag_seconds` | histogram | a chunk's time from its commit to the peer's acknowledgement |
//! | `sessionmesh_peer_lag_seconds{peer}` | gauge | the last acknowledged push's lag, per peer |
//! | `sessionmesh_outbox_chunks` / `_outbox_bytes` | gauge | chunks waiting to be pushed, all peers |
//! | `sessionmesh_anti_entropy_rounds_total{outcome}` | counter | anti-entropy rounds with a peer: `ok`, `failed` |
//! | `sessionmesh_anti_entropy_documents_total` | counter | documents a round found different and synced |
//! | `sessionmesh_fetches_total{outcome}` | counter | lookups of an unknown id on the peers: `hit`, `miss` |
//! | `sessionmesh_sweeps_total` | counter | sweeps run |
//! | `sessionmesh_tombstones_total` / `_tombstones_forgotten_total` | counter | dead sessions tombstoned, tombstones dropped after the horizon |
//! | `sessionmesh_quarantined_total` | counter | stored sessions that did not load, set aside |
//! | `sessionmesh_generation_switches_total` | counter | sessions moved to a fresh document (bounded history) |
//! | `sessionmesh_session_tokens_total{outcome}` | counter | session tokens: `caught_up`, `refused_behind`, `served_stale`, `refused_unreachable`, `ignored` ([`Stats`](crate::Stats)) |
//! | `sessionmesh_peers_connected` | gauge | peers connected now |

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Node::metrics`](crate::Node::metrics)' text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label, by name and value.
pub(crate) type Label = [(&'static str, String); 1];

/// A counter per value of one label.
pub(crate) type Counters = Family<Label, Counter>;

/// The label set `name=value`.
pub(crate) fn label(name: &'static str, value: impl Into<String>) -> Label {
    [(name, value.into())]
}

/// Every series of one node; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) sessions: Gauge,
    pub(crate) sessions_cached: Gauge,
    pub(crate) cache_bytes: Gauge,
    pub(crate) commits: Counters,
    pub(crate) commit_errors: Counters,
    pub(crate) commit_seconds: Histogram,
    pub(crate) http_responses: Counters,
    pub(crate) pushes_sent: Counters,
    pub(crate) pushes_acked: Counters,
    pub(crate) pushes_failed: Counters,
    pub(crate) pushes_dropped: Counters,
    pub(crate) pushes_received: Counters,
    pub(crate) replication_lag: Histogram,
    pub(crate) peer_lag: Family<Label, Gauge<f64, AtomicU64>>,
    pub(crate) outbox_chunks: Gauge,
    pub(crate) outbox_bytes: Gauge,
    pub(crate) anti_entropy_rounds: Counters,
    pub(crate) anti_entropy_documents: Counter,
    pub(crate) fetches: Counters,
    pub(crate) sweeps: Counter,
    pub(crate) tombstones: Counter,
    pub(crate) tombstones_forgotten: Counter,
    pub(crate) quarantined: Counter,
    pub(crate) generation_switches: Counter,
    pub(crate) session_tokens: Counters,
    pub(crate) peers_connected: Gauge,
}

/// Latency buckets from 50 µs to ~13 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series, registered under the `sessionmesh` prefix.
    pub(crate) fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("sessionmesh"),
            sessions: Gauge::default(),
            sessions_cached: Gauge::default(),
            cache_bytes: Gauge::default(),
            commits: Counters::default(),
            commit_errors: Counters::default(),
            commit_seconds: seconds(),
            http_responses: Counters::default(),
            pushes_sent: Counters::default(),
            pushes_acked: Counters::default(),
            pushes_failed: Counters::default(),
            pushes_dropped: Counters::default(),
            pushes_received: Counters::default(),
            replication_lag: seconds(),
            peer_lag: Family::default(),
            outbox_chunks: Gauge::default(),
            outbox_bytes: Gauge::default(),
            anti_entropy_rounds: Counters::default(),
            anti_entropy_documents: Counter::default(),
            fetches: Counters::default(),
            sweeps: Counter::default(),
            tombstones: Counter::default(),
            tombstones_forgotten: Counter::default(),
            quarantined: Counter::default(),
            generation_switches: Counter::default(),
            session_tokens: Counters::default(),
            peers_connected: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "sessions",
            "Sessions stored on this node",
            m.sessions.clone(),
        );
        r.register(
            "sessions_cached",
            "Sessions with a slot in the document cache",
            m.sessions_cached.clone(),
        );
        r.register(
            "cache_bytes",
            "Estimated bytes of the loaded documents",
            m.cache_bytes.clone(),
        );
        r.register("commits", "Writes committed, by kind", m.commits.clone());
        r.register(
            "commit_errors",
            "Writes refused, by error",
            m.commit_errors.clone(),
        );
        r.register(
            "commit_seconds",
            "Time to commit and persist a write",
            m.commit_seconds.clone(),
        );
        r.register(
            "http_responses",
            "Answers through the session layer, by status code",
            m.http_responses.clone(),
        );
        r.register(
            "pushes_sent",
            "Change chunks pushed, by peer",
            m.pushes_sent.clone(),
        );
        r.register(
            "pushes_acked",
            "Change chunks a peer persisted, by peer",
            m.pushes_acked.clone(),
        );
        r.register(
            "pushes_failed",
            "Change chunks a peer did not persist, by peer",
            m.pushes_failed.clone(),
        );
        r.register(
            "pushes_dropped",
            "Change chunks dropped from a full queue, by peer",
            m.pushes_dropped.clone(),
        );
        r.register(
            "pushes_received",
            "Change chunks pushed by peers, by outcome",
            m.pushes_received.clone(),
        );
        r.register(
            "replication_lag_seconds",
            "Time from a chunk's commit to a peer's acknowledgement",
            m.replication_lag.clone(),
        );
        r.register(
            "peer_lag_seconds",
            "The last acknowledged push's time from commit to acknowledgement, by peer",
            m.peer_lag.clone(),
        );
        r.register(
            "outbox_chunks",
            "Chunks waiting to be pushed",
            m.outbox_chunks.clone(),
        );
        r.register(
            "outbox_bytes",
            "Bytes of the chunks waiting to be pushed",
            m.outbox_bytes.clone(),
        );
        r.register(
            "anti_entropy_rounds",
            "Anti-entropy rounds, by outcome",
            m.anti_entropy_rounds.clone(),
        );
        r.register(
            "anti_entropy_documents",
            "Documents anti-entropy found different and synced",
            m.anti_entropy_documents.clone(),
        );
        r.register(
            "fetches",
            "Lookups of an unknown id on the peers, by outcome",
            m.fetches.clone(),
        );
        r.register("sweeps", "Sweeps run", m.sweeps.clone());
        r.register(
            "tombstones",
            "Dead sessions tombstoned",
            m.tombstones.clone(),
        );
        r.register(
            "tombstones_forgotten",
            "Tombstones dropped after the horizon",
            m.tombstones_forgotten.clone(),
        );
        r.register(
            "quarantined",
            "Stored sessions that did not load, set aside",
            m.quarantined.clone(),
        );
        r.register(
            "generation_switches",
            "Sessions moved to a fresh document",
            m.generation_switches.clone(),
        );
        r.register(
            "session_tokens",
            "Session tokens checked, by outcome",
            m.session_tokens.clone(),
        );
        r.register(
            "peers_connected",
            "Peers connected now",
            m.peers_connected.clone(),
        );
        m
    }

    /// The registry in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// `n` as a gauge value (saturating).
pub(crate) fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `d` in seconds, for a histogram.
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
