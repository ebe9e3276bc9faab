//! Persistence: every session document in RocksDB, plus a bounded cache of
//! hot documents.
//!
//! # On disk
//!
//! | column family | key | value |
//! |---|---|---|
//! | `snap` | doc key (16 B) | automerge `save()` of generation 0 |
//! | `log` | doc key ‖ seq (u32 BE) | one commit's change chunk (generation 0) |
//! | `gsnap` | doc key ‖ gen (u32 BE) ‖ base (32 B) | `save()` of a later generation's lineage |
//! | `glog` | doc key ‖ gen ‖ base ‖ seq | its change chunks |
//! | `meta` | doc key | record of the current lineage: deadline, next log seq, chunks since the snapshot, heads hash, generation and base |
//! | `lineages` | doc key | the session's other lineages (kept generations, concurrent ones): id, canonical or not, record |
//! | `exp` | time (u64 BE) ‖ kind (u8) ‖ doc key | empty: the expiry index the sweeper walks |
//! | `tomb` | doc key | time the session was tombstoned |
//! | `quarantine` | doc key ‖ time (u64 BE) ‖ family (u8) ‖ original key | what was stored for a session whose bytes stopped loading, moved aside |
//! | `principals` | principal hash (16 B) ‖ doc key | empty: the sessions that may belong to a principal (a superset, checked on read) |
//! | `default` | `node_id` | this node's [`NodeId`](crate::NodeId) |
//!
//! A document is `snap ‖ log chunks in seq order`, which automerge loads as
//! one byte string. A commit appends one chunk and moves the expiry index in
//! one `WriteBatch` through the WAL, before the response goes out. The
//! commit that would make the log `compact_every` chunks long writes the
//! whole document as the new snapshot instead and deletes the folded
//! chunks, in the same kind of batch, so a crash leaves either the old pair
//! or the new one, and a failed compaction is a failed commit.
//!
//! The engine reaches the disk only through the crate-private `Storage`
//! trait (`store/storage.rs`), which RocksDB implements and tests wrap to fail
//! chosen writes or lose everything after a crash point. A data directory
//! is held by one process at a time (an advisory lock on
//! `LOCK.sessionmesh`).
//!
//! Dead sessions (expired, invalidated, rotated) become tombstones: the
//! document goes, a `tomb` entry stays until the GC horizon has passed, so
//! a replica cannot bring the session back in that window.
//!
//! A session that switched generations keeps its current lineage in `meta`
//! and the ones it still needs (earlier generations kept for late changes,
//! concurrent lineages not yet folded in) in `lineages`; a switch writes
//! the new current lineage whole and the list in one batch. Generation 0
//! lives where every document lived before generations existed, so a data
//! directory written by an earlier version opens as it is.

mod cache;
mod db;
mod db_chain;
mod db_open;
mod db_principal;
mod db_quarantine;
mod error;
#[cfg(any(test, feature = "testing"))]
mod faults;
mod files;
mod lineage;
mod lock;
mod record;
mod storage;

pub(crate) use cache::{Cache, Deferred, SlotState};
pub(crate) use db::{Db, IDENTITY_FILE};
pub(crate) use db_principal::PrincipalKey;
pub use error::Error;
#[cfg(any(test, feature = "testing"))]
pub(crate) use faults::Faulty;
#[cfg(any(test, feature = "testing"))]
pub use faults::{StorageFaults, WriteKind};
pub(crate) use files::write_private_file;
pub(crate) use lineage::{Lineage, LineageId, MAX_LINEAGES};
pub(crate) use lock::DirLock;
pub(crate) use record::Record;
pub(crate) use storage::{ChainWrite, Due, DueKind, Storage, Stored};

/// How far an acknowledged write must have got before the caller hears of it.
///
/// # Examples
///
/// ```
/// use sessionmesh::{Config, Durability};
///
/// let config = Config::new("/tmp/sessions").with_durability(Durability::Fsync);
/// assert_eq!(config.durability(), Durability::Fsync);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to RocksDB's WAL in the OS page cache: survives the process
    /// being killed (`kill -9`), not a power loss. The default.
    #[default]
    Process,
    /// The WAL is fsynced before the write is acknowledged: also survives a
    /// power loss, at the cost of one device flush per commit.
    Fsync,
}
