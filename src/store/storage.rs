//! The seam under the engine: the few reads and writes it makes of the
//! disk. RocksDB ([`Db`](super::Db)) implements it; tests put a wrapper
//! around that which fails chosen writes or loses every write after a crash
//! point, so that each failure path of the engine runs in a test.

use std::fmt::Debug;

use super::db_principal::PrincipalKey;
use super::lineage::{Lineage, LineageId};
use super::{Error, Record};
use crate::clock::Millis;
use crate::id::DocKey;

/// What an expiry-index entry asks the sweeper to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DueKind {
    /// Check the session; tombstone it if it is dead.
    Expire,
    /// The tombstone has outlived the GC horizon; forget it.
    Forget,
}

/// One expiry-index entry that has come due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) at: Millis,
    pub(crate) kind: DueKind,
    pub(crate) key: DocKey,
}

/// A stored session: its current lineage's bytes (`snap ‖ chunks`) and
/// record, and the other lineages it keeps.
#[derive(Debug)]
pub(crate) enum Stored {
    Missing,
    /// `ended`: invalidated or rotated (dead everywhere), not merely expired
    /// here (which a peer that saw later accesses may disagree with).
    Tombstone {
        ended: bool,
    },
    Doc {
        bytes: Vec<u8>,
        record: Record,
        others: Vec<Lineage>,
    },
}

/// One step of a session's chain written at once: its current lineage
/// whole, other lineages whole or as they are. Every lineage the session
/// had that is neither is deleted.
#[derive(Debug)]
pub(crate) struct ChainWrite<'a> {
    /// The current lineage after the write.
    pub(crate) current: LineageId,
    /// Its whole document.
    pub(crate) current_doc: &'a [u8],
    /// What anti-entropy digests compare for the session.
    pub(crate) heads: u64,
    /// The session's place in the expiry index.
    pub(crate) deadline: Millis,
    /// Other lineages written whole: id, canonical, heads hash, document.
    pub(crate) saved: Vec<(LineageId, bool, u64, Vec<u8>)>,
    /// Other lineages kept as stored, with whether they are canonical.
    pub(crate) kept: Vec<(LineageId, bool)>,
}

/// Every call the engine makes of the disk. Each write is atomic: after a
/// crash, all of it is there or none of it.
pub(crate) trait Storage: Send + Sync + Debug {
    /// Records that `key` may belong to `principal` (written before the
    /// document naming it; readers check).
    fn index_principal(&self, principal: &PrincipalKey, key: DocKey) -> Result<(), Error>;

    /// Every key recorded for `principal`.
    fn principal_keys(&self, principal: &PrincipalKey) -> Result<Vec<DocKey>, Error>;

    /// Drops the record of `key` under `principal`.
    fn unindex_principal(&self, principal: &PrincipalKey, key: DocKey) -> Result<(), Error>;

    /// The document `key`, its tombstone, or nothing.
    fn load(&self, key: DocKey) -> Result<Stored, Error>;

    /// The bytes of one of the session's other lineages.
    fn load_lineage(&self, key: DocKey, lineage: &Lineage) -> Result<Vec<u8>, Error>;

    /// Appends one change chunk to the current lineage (`lineage`; `old`
    /// is its record, `None` before its first write), records the heads
    /// hash and moves the expiry index.
    fn append(
        &self,
        key: DocKey,
        chunk: &[u8],
        old: Option<Record>,
        lineage: LineageId,
        deadline: Millis,
        heads: u64,
    ) -> Result<Record, Error>;

    /// Replaces whatever is stored for the current lineage with the whole
    /// document `doc` (folding the change log into one snapshot) and moves
    /// the expiry index.
    fn snapshot(
        &self,
        key: DocKey,
        doc: &[u8],
        old: Option<Record>,
        lineage: LineageId,
        deadline: Millis,
        heads: u64,
    ) -> Result<Record, Error>;

    /// Writes one step of the session's chain (see [`ChainWrite`]); `old`
    /// and `old_others` are what is stored now. Returns the new current
    /// record and the other lineages.
    fn write_chain(
        &self,
        key: DocKey,
        write: &ChainWrite<'_>,
        old: Option<Record>,
        old_others: &[Lineage],
    ) -> Result<(Record, Vec<Lineage>), Error>;

    /// Moves a live document's place in the expiry index.
    fn reschedule(&self, key: DocKey, old: Record, deadline: Millis) -> Result<Record, Error>;

    /// Deletes a dead session (every lineage) and leaves a tombstone until
    /// `forget_at`.
    fn tombstone(
        &self,
        key: DocKey,
        old: Option<Record>,
        now: Millis,
        forget_at: Millis,
        ended: bool,
    ) -> Result<(), Error>;

    /// Moves everything stored for `key` aside (its bytes no longer load)
    /// and drops its expiry index entries, `due` among them: the key then
    /// reads as missing. Returns how many stored entries moved.
    fn quarantine(&self, key: DocKey, due: Option<Due>, now: Millis) -> Result<usize, Error>;

    /// Drops a tombstone whose GC horizon has passed.
    fn forget(&self, due: Due) -> Result<(), Error>;

    /// Removes an index entry that no longer matches its document.
    fn drop_due(&self, due: Due) -> Result<(), Error>;

    /// Up to `limit` index entries due at or before `now`, oldest first.
    fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, Error>;

    /// Documents with keys in `[from, to)` (`to = None`: to the end) whose
    /// deadline has not passed, with their heads hash; at most `limit`.
    fn digest(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(DocKey, u64)>, Error>;

    /// Number of stored (not tombstoned) documents.
    fn count(&self) -> Result<usize, Error>;

    /// Makes every write so far durable (clean shutdown).
    fn flush(&self) -> Result<(), Error>;
}
