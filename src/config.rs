use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::store::Durability;

/// The highest session size limit: a generation's document (at most about
/// twice the session) plus a change must fit in one wire message.
const MAX_SESSION_LIMIT: usize = 4 << 20;

/// Everything a [`Node`](crate::Node) needs, as a value: `Config::new(dir)`
/// plus consuming `with_*` setters.
///
/// # Examples
///
/// ```
/// use sessionmesh::{Config, Durability};
/// use std::time::Duration;
///
/// let config = Config::new("./data/a")
///     .with_durability(Durability::Fsync)
///     .with_max_idle(Duration::from_secs(15 * 60))
///     .with_max_session_bytes(64 * 1024);
/// assert_eq!(config.max_session_bytes(), 64 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    data_dir: PathBuf,
    durability: Durability,
    max_session_bytes: usize,
    cache_bytes: usize,
    compact_every: u32,
    generation_changes: u32,
    generation_growth: u32,
    generations_kept: u32,
    max_idle: Duration,
    absolute_timeout: Duration,
    touch_interval: Duration,
    sweep_interval: Duration,
    gc_horizon: Duration,
    tombstone_grace: Duration,
    wal_salvage: bool,
    net: Option<crate::net::Config>,
    clock: Arc<dyn Clock>,
}

impl Config {
    /// Defaults, with RocksDB in `data_dir` (created if missing):
    ///
    /// | setting | default |
    /// |---|---|
    /// | durability | [`Durability::Process`] |
    /// | max session size | 1 MiB of attribute JSON |
    /// | document cache | 64 MiB (estimated) |
    /// | snapshot every | 32 commits |
    /// | new generation after | 64 changes, or a document twice the session's size |
    /// | earlier generations kept | 4 |
    /// | what bytes from a peer may inflate to | the session limit × (changes per generation + 2), at least 16 MiB ([`Config::max_inflated_bytes`]) |
    /// | idle timeout | 30 minutes |
    /// | absolute timeout | 24 hours |
    /// | touch interval | 60 s (at most a tenth of the idle timeout) |
    /// | sweep interval | 60 s |
    /// | tombstone grace after death | 60 s |
    /// | tombstone GC horizon | 7 days |
    /// | network | none (a node on its own) |
    #[must_use]
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            data_dir: data_dir.as_ref().to_path_buf(),
            durability: Durability::Process,
            max_session_bytes: 1 << 20,
            cache_bytes: 64 << 20,
            compact_every: 32,
            generation_changes: 64,
            generation_growth: 2,
            generations_kept: 4,
            max_idle: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(24 * 3600),
            touch_interval: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(60),
            gc_horizon: Duration::from_secs(7 * 24 * 3600),
            tombstone_grace: Duration::from_secs(60),
            wal_salvage: false,
            net: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// How durable a write is before it is acknowledged.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The largest session, in bytes of attribute keys and JSON values (at
    /// most 4 MiB, so that a session's document and its last change always
    /// fit in one 16 MiB message to a peer); a write past it fails with
    /// [`Error::TooLarge`](crate::Error::TooLarge).
    #[must_use]
    pub fn with_max_session_bytes(mut self, bytes: usize) -> Self {
        self.max_session_bytes = bytes;
        self
    }

    /// Memory for hot documents (an estimate; cold ones stay on disk).
    /// Summaries of documents evicted from it are kept in up to a quarter
    /// as much again, so reads of those sessions need no load.
    #[must_use]
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Fold the change log into a snapshot every `n` commits of a session.
    #[must_use]
    pub fn with_compact_every(mut self, n: u32) -> Self {
        self.compact_every = n;
        self
    }

    /// Start a session's next generation (a fresh document holding its
    /// state, without history) once the current one holds `changes`
    /// changes (at least 2), so that no session's history, size or cost
    /// per request grows with its age.
    #[must_use]
    pub fn with_generation_changes(mut self, changes: u32) -> Self {
        self.generation_changes = changes;
        self
    }

    /// Start the next generation also once the current one's document
    /// takes `factor` times what the session's attributes take (at least
    /// 64 KiB): a few overwrites of a large value end a generation early.
    #[must_use]
    pub fn with_generation_growth(mut self, factor: u32) -> Self {
        self.generation_growth = factor;
        self
    }

    /// Generations a node keeps before the current one, for changes that
    /// arrive late (a node that was cut off, a push overtaken by a switch).
    /// A node that comes back more generations later than this cannot
    /// carry the writes it made meanwhile into the session.
    #[must_use]
    pub fn with_generations_kept(mut self, n: u32) -> Self {
        self.generations_kept = n;
        self
    }

    /// Idle timeout of new sessions (`Duration::ZERO` = none).
    #[must_use]
    pub fn with_max_idle(mut self, idle: Duration) -> Self {
        self.max_idle = idle;
        self
    }

    /// Absolute lifetime of new sessions from creation (`Duration::ZERO` =
    /// none).
    #[must_use]
    pub fn with_absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// How stale this node's last-access register may get before a read
    /// writes it. Last access is replicated data, so it is written coarsely
    /// (every write is history kept forever); a session can therefore expire
    /// up to this long before an exact idle timer would.
    #[must_use]
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// How often the background sweeper turns dead sessions into tombstones.
    #[must_use]
    pub fn with_sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// How long a tombstone is kept before it is forgotten.
    #[must_use]
    pub fn with_gc_horizon(mut self, horizon: Duration) -> Self {
        self.gc_horizon = horizon;
        self
    }

    /// How long a dead session's document is kept before it becomes a
    /// tombstone, so that peers hear of an invalidation (or of a later
    /// access that keeps the session alive) before the document goes.
    #[must_use]
    pub fn with_tombstone_grace(mut self, grace: Duration) -> Self {
        self.tombstone_grace = grace;
        self
    }

    /// Replicates to peers over libp2p.
    #[must_use]
    pub fn with_network(mut self, net: crate::net::Config) -> Self {
        self.net = Some(net);
        self
    }

    /// The clock (tests inject a [`ManualClock`](crate::ManualClock)).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Opens a data directory whose write-ahead log is damaged before its
    /// last record (a disk fault; a crash only tears the last one) at the
    /// last consistent point, logging what was lost. Off by default: such
    /// a node refuses to open ([`store::Error::WalCorrupt`](crate::store::Error::WalCorrupt)).
    #[must_use]
    pub fn with_wal_salvage(mut self, salvage: bool) -> Self {
        self.wal_salvage = salvage;
        self
    }

    /// Whether a damaged write-ahead log is salvaged.
    #[must_use]
    pub fn wal_salvage(&self) -> bool {
        self.wal_salvage
    }

    /// The durability setting.
    #[must_use]
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The session size limit in bytes.
    #[must_use]
    pub fn max_session_bytes(&self) -> usize {
        self.max_session_bytes
    }

    /// What one message from a peer (a pushed change, the changes of a
    /// sync message) may take once the compressed data in it is inflated:
    /// the most a generation can hold, each of its changes writing a whole
    /// session, and at least 16 MiB. Past it the message is refused before
    /// anything is inflated (a "decompression bomb").
    #[must_use]
    pub fn max_inflated_bytes(&self) -> usize {
        let changes = usize::try_from(self.generation_changes).unwrap_or(usize::MAX);
        self.max_session_bytes
            .saturating_mul(changes.saturating_add(2))
            .max(16 << 20)
    }

    /// The estimated memory for loaded documents, in bytes.
    #[must_use]
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Commits of a session between two snapshots of its document.
    #[must_use]
    pub fn compact_every(&self) -> u32 {
        self.compact_every
    }

    /// Changes that end a generation.
    #[must_use]
    pub fn generation_changes(&self) -> u32 {
        self.generation_changes
    }

    /// How large against the session a generation may grow.
    #[must_use]
    pub fn generation_growth(&self) -> u32 {
        self.generation_growth
    }

    /// Earlier generations kept.
    #[must_use]
    pub fn generations_kept(&self) -> u32 {
        self.generations_kept
    }

    /// The idle timeout of new sessions (`Duration::ZERO` = none).
    #[must_use]
    pub fn max_idle(&self) -> Duration {
        self.max_idle
    }

    /// The absolute lifetime of new sessions (`Duration::ZERO` = none).
    #[must_use]
    pub fn absolute_timeout(&self) -> Duration {
        self.absolute_timeout
    }

    /// How stale this node's last-access register may get.
    #[must_use]
    pub fn touch_interval(&self) -> Duration {
        self.touch_interval
    }

    /// How often the sweeper runs.
    #[must_use]
    pub fn sweep_interval(&self) -> Duration {
        self.sweep_interval
    }

    /// How long a tombstone is kept.
    #[must_use]
    pub fn gc_horizon(&self) -> Duration {
        self.gc_horizon
    }

    /// How long a dead session is kept before it becomes a tombstone.
    #[must_use]
    pub fn tombstone_grace(&self) -> Duration {
        self.tombstone_grace
    }

    /// The network settings, when the node replicates over libp2p.
    #[must_use]
    pub fn network(&self) -> Option<&crate::net::Config> {
        self.net.as_ref()
    }

    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub(crate) fn clock_arc(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Refuses settings that cannot work, naming the setting and why.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field: &'static str, why: &'static str| {
            Err(crate::Error::InvalidConfig { field, why })
        };
        if self.compact_every == 0 {
            return bad("compact_every", "must be at least 1");
        }
        if self.generation_changes < 2 {
            return bad("generation_changes", "must be at least 2");
        }
        if self.generation_growth < 2 {
            return bad("generation_growth", "must be at least 2");
        }
        if self.generations_kept == 0 {
            return bad("generations_kept", "must be at least 1");
        }
        if self.sweep_interval.is_zero() {
            return bad("sweep_interval", "must be positive");
        }
        if self.max_session_bytes == 0 || self.max_session_bytes > MAX_SESSION_LIMIT {
            return bad("max_session_bytes", "must be positive and at most 4 MiB");
        }
        match &self.net {
            Some(net) => net.validate(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_cluster_key() {
        let config = Config::new("/tmp/x").with_network(crate::net::Config::new([0xab; 32]));
        let shown = format!("{config:?}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("cluster_key"), "{shown}");
    }
}
