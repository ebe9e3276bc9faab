//! Storage that fails on purpose: a wrapper around the real store that
//! fails a chosen write, or from a crash point on acknowledges writes
//! without making them durable — what a power loss does to writes that
//! were not synced. Tests drive it through [`StorageFaults`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::db_principal::PrincipalKey;
use super::lineage::{Lineage, LineageId};
use super::storage::{ChainWrite, Due, Storage, Stored};
use super::{Error, Record};
use crate::clock::Millis;
use crate::id::DocKey;

/// The kinds of write the engine makes, to aim a fault at one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteKind {
    /// Any write.
    Any,
    /// A change appended to a document's log (a commit, a pushed change).
    Append,
    /// A document written whole, folding its log (compaction).
    Snapshot,
    /// A generation switch, or a late change carried into later
    /// generations: several lineages written at once.
    Chain,
    /// A document moved in the expiry index.
    Reschedule,
    /// A dead document replaced by its tombstone.
    Tombstone,
    /// A tombstone or index entry removed.
    Forget,
}

#[derive(Debug, Default)]
struct Plan {
    /// Writes seen so far.
    writes: u64,
    /// The next write of this kind fails (and is not made).
    fail_next: Option<WriteKind>,
    /// Writes that failed on purpose.
    failed: u64,
    /// From this write on (counting from 1), writes are acknowledged and
    /// lost.
    lose_from: Option<u64>,
}

/// A handle on the faults of one node's storage: share it with the node
/// (`testing::open_with_faults`) and aim faults while the node runs.
///
/// # Examples
///
/// ```
/// use sessionmesh::testing::{StorageFaults, WriteKind};
///
/// let faults = StorageFaults::new();
/// faults.fail_next(WriteKind::Snapshot);
/// assert_eq!(faults.failed(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct StorageFaults {
    plan: Arc<Mutex<Plan>>,
}

impl StorageFaults {
    /// No faults yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next write of `kind` fails with a storage error and is not made.
    pub fn fail_next(&self, kind: WriteKind) {
        self.plan().fail_next = Some(kind);
    }

    /// From now on, every write is acknowledged but lost: the state of the
    /// disk stays what it is now, as after a power loss.
    pub fn crash(&self) {
        let mut plan = self.plan();
        plan.lose_from = Some(plan.writes + 1);
    }

    /// Writes seen so far (made, failed or lost).
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.plan().writes
    }

    /// Writes that failed on purpose so far.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.plan().failed
    }

    /// What to do with the next write of `kind`.
    fn next(&self, kind: WriteKind) -> Fate {
        let mut plan = self.plan();
        plan.writes += 1;
        if plan
            .fail_next
            .is_some_and(|k| k == WriteKind::Any || k == kind)
        {
            plan.fail_next = None;
            plan.failed += 1;
            return Fate::Fail;
        }
        if plan.lose_from.is_some_and(|from| plan.writes >= from) {
            return Fate::Lose;
        }
        Fate::Make
    }
}

enum Fate {
    Make,
    Fail,
    Lose,
}

/// The real store behind a [`StorageFaults`].
#[derive(Debug)]
pub(crate) struct Faulty {
    inner: Box<dyn Storage>,
    faults: StorageFaults,
}

impl Faulty {
    pub(crate) fn new(inner: Box<dyn Storage>, faults: StorageFaults) -> Self {
        Self { inner, faults }
    }

    /// Makes, fails or loses one write; a lost write answers what the real
    /// one would have (`lost`), leaving the disk as it was.
    fn write<R>(
        &self,
        kind: WriteKind,
        make: impl FnOnce(&dyn Storage) -> Result<R, Error>,
        lost: impl FnOnce() -> R,
    ) -> Result<R, Error> {
        match self.faults.next(kind) {
            Fate::Make => make(self.inner.as_ref()),
            Fate::Fail => Err(Error::Injected(format!("{kind:?} write failed"))),
            Fate::Lose => Ok(lost()),
        }
    }
}

/// The record a write would have left, for a write that is lost.
fn would_be(
    old: Option<Record>,
    lineage: LineageId,
    deadline: Millis,
    heads: u64,
    bytes: usize,
) -> Record {
    let mut r = old.unwrap_or(Record {
        lineage,
        ..Record::default()
    });
    r.deadline = deadline;
    r.heads = heads;
    r.next_seq = r.next_seq.saturating_add(1);
    r.log_count = r.log_count.saturating_add(1);
    r.bytes = r.bytes.saturating_add(bytes as u64);
    r
}

impl Storage for Faulty {
    fn index_principal(&self, principal: &PrincipalKey, key: DocKey) -> Result<(), Error> {
        self.inner.index_principal(principal, key)
    }

    fn principal_keys(&self, principal: &PrincipalKey) -> Result<Vec<DocKey>, Error> {
        self.inner.principal_keys(principal)
    }

    fn unindex_principal(&self, principal: &PrincipalKey, key: DocKey) -> Result<(), Error> {
        self.inner.unindex_principal(principal, key)
    }

    fn load(&self, key: DocKey) -> Result<Stored, Error> {
        self.inner.load(key)
    }

    fn quarantine(&self, key: DocKey, due: Option<Due>, now: Millis) -> Result<usize, Error> {
        self.inner.quarantine(key, due, now)
    }

    fn load_lineage(&self, key: DocKey, lineage: &Lineage) -> Result<Vec<u8>, Error> {
        self.inner.load_lineage(key, lineage)
    }

    fn append(
        &self,
        key: DocKey,
        chunk: &[u8],
        old: Option<Record>,
        lineage: LineageId,
        deadline: Millis,
        heads: u64,
    ) -> Result<Record, Error> {
        self.write(
            WriteKind::Append,
            |s| s.append(key, chunk, old, lineage, deadline, heads),
            || would_be(old, lineage, deadline, heads, chunk.len()),
        )
    }

    fn snapshot(
        &self,
        key: DocKey,
        doc: &[u8],
        old: Option<Record>,
        lineage: LineageId,
        deadline: Millis,
        heads: u64,
    ) -> Result<Record, Error> {
        self.write(
            WriteKind::Snapshot,
            |s| s.snapshot(key, doc, old, lineage, deadline, heads),
            || Record {
                log_count: 0,
                bytes: doc.len() as u64,
                ..would_be(old, lineage, deadline, heads, 0)
            },
        )
    }

    fn write_chain(
        &self,
        key: DocKey,
        write: &ChainWrite<'_>,
        old: Option<Record>,
        old_others: &[Lineage],
    ) -> Result<(Record, Vec<Lineage>), Error> {
        self.write(
            WriteKind::Chain,
            |s| s.write_chain(key, write, old, old_others),
            || {
                // What the write would have answered: the records of what
                // it names (their log positions as they were).
                let prior = |id: LineageId| {
                    old_others
                        .iter()
                        .map(|l| l.record)
                        .chain(old)
                        .find(|r| r.lineage == id)
                };
                let current = Record {
                    deadline: write.deadline,
                    heads: write.heads,
                    log_count: 0,
                    bytes: write.current_doc.len() as u64,
                    others: !(write.saved.is_empty() && write.kept.is_empty()),
                    ..prior(write.current).unwrap_or(Record {
                        lineage: write.current,
                        ..Record::default()
                    })
                };
                let mut list: Vec<Lineage> = write
                    .saved
                    .iter()
                    .map(|(id, canonical, heads, doc)| Lineage {
                        id: *id,
                        canonical: *canonical,
                        record: Record {
                            heads: *heads,
                            log_count: 0,
                            bytes: doc.len() as u64,
                            ..prior(*id).unwrap_or(Record {
                                lineage: *id,
                                ..Record::default()
                            })
                        },
                    })
                    .collect();
                list.extend(write.kept.iter().filter_map(|(id, canonical)| {
                    prior(*id).map(|record| Lineage {
                        id: *id,
                        canonical: *canonical,
                        record,
                    })
                }));
                list.sort_by_key(|l| l.id);
                (current, list)
            },
        )
    }

    fn reschedule(&self, key: DocKey, old: Record, deadline: Millis) -> Result<Record, Error> {
        self.write(
            WriteKind::Reschedule,
            |s| s.reschedule(key, old, deadline),
            || Record { deadline, ..old },
        )
    }

    fn tombstone(
        &self,
        key: DocKey,
        old: Option<Record>,
        now: Millis,
        forget_at: Millis,
        ended: bool,
    ) -> Result<(), Error> {
        self.write(
            WriteKind::Tombstone,
            |s| s.tombstone(key, old, now, forget_at, ended),
            || (),
        )
    }

    fn forget(&self, due: Due) -> Result<(), Error> {
        self.write(WriteKind::Forget, |s| s.forget(due), || ())
    }

    fn drop_due(&self, due: Due) -> Result<(), Error> {
        self.write(WriteKind::Forget, |s| s.drop_due(due), || ())
    }

    fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, Error> {
        self.inner.due(now, limit)
    }

    fn digest(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(DocKey, u64)>, Error> {
        self.inner.digest(from, to, now, limit)
    }

    fn count(&self) -> Result<usize, Error> {
        self.inner.count()
    }

    fn flush(&self) -> Result<(), Error> {
        self.inner.flush()
    }
}
