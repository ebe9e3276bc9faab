//! The document-level steps of a generation switch, each deterministic: any
//! node that takes one from the same inputs produces the same bytes, so
//! automerge deduplicates the results by hash and nothing counts twice.
//!
//! - A **mark** (`meta/next`) ends a generation. Concurrent marks are
//!   concurrent writes of one key: automerge's winner is the same on every
//!   node that has seen them all, and a mark that loses can never win later
//!   (a later mark can only raise the maximum).
//! - The next generation's **base** is the state at the winning mark (its
//!   causal past), written as one change by an actor derived from the mark,
//!   with keys in sorted order and the mark's time.
//! - A change of one generation that the base does not hold (made
//!   concurrently with the mark, or later by a node that had not seen it) is
//!   **translated**: the same operations, applied at the translation of its
//!   dependencies, by an actor derived from the change, with its time.

use std::collections::{HashMap, HashSet};

use automerge::transaction::{CommitOptions, Transactable as _};
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjId, ReadDoc, ScalarValue, ROOT};
use sha2::{Digest, Sha256};

use super::layout::NEXT;
use super::{Error, SessionDoc};

/// An actor no process ever draws: derived from what a step is about.
pub(crate) fn derived_actor(parts: &[&[u8]]) -> ActorId {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    ActorId::from(&digest[..16])
}

/// What every carried change's actor starts with: longer than any other
/// actor this crate makes, so a carried change is known as one even where
/// its source is not held.
const CARRY_TAG: &[u8; 4] = b"smc1";

/// The actor of the translation of change `src` carried onto the lineage
/// whose base is `base`.
pub(crate) fn carry_actor(seed: &[u8], base: &ChangeHash, src: &ChangeHash) -> ActorId {
    let derived = derived_actor(&[b"carry", seed, &base.0, &src.0]);
    ActorId::from([&CARRY_TAG[..], derived.to_bytes()].concat())
}

/// Whether `actor` is one [`carry_actor`] makes.
pub(crate) fn is_carry_actor(actor: &ActorId) -> bool {
    let b = actor.to_bytes();
    b.len() == CARRY_TAG.len() + 16 && b.starts_with(CARRY_TAG)
}

impl SessionDoc {
    /// Ends this generation: the next one starts from the state at the
    /// winning mark (pending until committed).
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub(crate) fn mark(&mut self) -> Result<(), Error> {
        self.doc.put(ROOT, NEXT, 1)?;
        Ok(())
    }

    /// Makes this process's later writes to the document its own: a base
    /// is built by an actor derived from the mark, which every node shares,
    /// and two nodes writing as that actor would clash.
    pub(crate) fn set_actor(&mut self, actor: ActorId) {
        self.doc.set_actor(actor);
    }

    /// Every counter slot (`count/<key>/<node>` → value), for diagnostics.
    #[cfg(feature = "testing")]
    pub(crate) fn counter_slots(&self) -> Vec<(String, i64)> {
        self.doc
            .map_range(ROOT, super::layout::prefix_range(super::layout::COUNT))
            .filter_map(|item| match item.value {
                automerge::ValueRef::Scalar(automerge::ScalarValueRef::Counter(c)) => {
                    Some((item.key.chars().rev().take(4).collect::<String>(), c))
                }
                _ => None,
            })
            .collect()
    }

    /// Every change that writes a counter slot: hash, actor, deps (first
    /// bytes) and the operations, for diagnostics.
    #[cfg(feature = "testing")]
    pub(crate) fn counter_changes(&mut self) -> Vec<String> {
        self.doc
            .get_changes(&[])
            .iter()
            .filter_map(|c| {
                let ops: Vec<String> = c
                    .decode()
                    .operations
                    .iter()
                    .filter_map(|op| match &op.key {
                        automerge::legacy::Key::Map(k) if k.starts_with("count/") => {
                            Some(format!("{}:{:?}", &k[k.len() - 4..], op.action))
                        }
                        automerge::legacy::Key::Map(k) if k == NEXT => Some("MARK".into()),
                        _ => None,
                    })
                    .collect();
                (!ops.is_empty()).then(|| {
                    format!(
                        "{:02x} by {} deps {:02x?} {:?}",
                        c.hash().0[0],
                        &c.actor_id().to_hex_string()[..4],
                        c.deps().iter().map(|d| d.0[0]).collect::<Vec<_>>(),
                        ops
                    )
                })
            })
            .collect()
    }

    /// Operations written and not committed yet.
    pub(crate) fn pending(&self) -> usize {
        self.doc.pending_ops()
    }

    /// Whether any mark has been written.
    pub(crate) fn is_marked(&self) -> bool {
        self.doc.get(ROOT, NEXT).ok().flatten().is_some()
    }

    /// Every mark's change, the winner first.
    pub(crate) fn marks(&mut self) -> Vec<ChangeHash> {
        let ids: Vec<ObjId> = match self.doc.get_all(ROOT, NEXT) {
            Ok(all) => all.into_iter().map(|(_, id)| id).collect(),
            Err(_) => return Vec::new(),
        };
        let changes = self.doc.get_changes(&[]);
        // automerge lists the winner last.
        ids.iter()
            .rev()
            .filter_map(|id| change_of(&changes, id))
            .collect()
    }

    /// The winning mark's change, if the generation is marked.
    pub(crate) fn winning_mark(&mut self) -> Option<ChangeHash> {
        let id = self.doc.get(ROOT, NEXT).ok().flatten()?.1;
        let changes = self.doc.get_changes(&[]);
        change_of(&changes, &id)
    }

    /// Every change, dependencies before dependents.
    pub(crate) fn all_changes(&mut self) -> Vec<Change> {
        self.doc.get_changes(&[])
    }

    /// The changes not in the causal past of `heads`, dependencies first.
    pub(crate) fn changes_after(&mut self, heads: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(heads)
    }

    /// The changes in the causal past of `heads` (themselves included).
    pub(crate) fn past_of(&mut self, heads: &[ChangeHash]) -> HashSet<ChangeHash> {
        let deps: HashMap<ChangeHash, Vec<ChangeHash>> = self
            .doc
            .get_changes(&[])
            .iter()
            .map(|c| (c.hash(), c.deps().to_vec()))
            .collect();
        let mut past = HashSet::new();
        let mut stack: Vec<ChangeHash> = heads.to_vec();
        while let Some(h) = stack.pop() {
            if past.insert(h) {
                stack.extend(deps.get(&h).into_iter().flatten().copied());
            }
        }
        past
    }

    /// The first document of the next generation: the state at `mark` as
    /// one change by an actor derived from `seed` and the mark (the mark
    /// itself and every conflict loser left out). Returns it and its hash.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when `mark` is not a change of this document.
    pub(crate) fn base_at(
        &mut self,
        mark: ChangeHash,
        seed: &[u8],
    ) -> Result<(SessionDoc, ChangeHash), Error> {
        let time = self
            .doc
            .get_change_by_hash(&mark)
            .map_or(0, |c| c.timestamp());
        let at = self.doc.fork_at(&[mark])?;
        let actor = derived_actor(&[b"base", seed, &mark.0]);
        let mut base = AutoCommit::new().with_actor(actor);
        let mut keys: Vec<String> = at.keys(ROOT).collect();
        keys.sort();
        for key in keys {
            if key == NEXT {
                continue;
            }
            if let Some((automerge::Value::Scalar(v), _)) = at.get(ROOT, key.as_str())? {
                base.put(ROOT, key.as_str(), owned(v.as_ref()))?;
            }
        }
        let hash = match base.commit_with(CommitOptions::default().with_time(time)) {
            Some(h) => h,
            None => base.empty_change(CommitOptions::default().with_time(time)),
        };
        Ok((SessionDoc { doc: base }, hash))
    }

    /// Applies `source` (a change of another document) here at `deps` (the
    /// translations of its dependencies), as `actor`, dropping its marks:
    /// the same operations on the same keys with the same time. Returns the
    /// new change's hash; translating the same source at the same place
    /// again gives the same change, which automerge keeps once.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when `deps` are not all here or an operation
    /// does not apply.
    pub(crate) fn translate(
        &mut self,
        source: &Change,
        deps: &[ChangeHash],
        actor: ActorId,
    ) -> Result<ChangeHash, Error> {
        self.translate_with(source, deps, actor, |key| key == NEXT)
    }

    /// [`translate`](Self::translate), leaving out the operations on the
    /// keys `skip` names.
    pub(crate) fn translate_with(
        &mut self,
        source: &Change,
        deps: &[ChangeHash],
        actor: ActorId,
        skip: impl Fn(&str) -> bool,
    ) -> Result<ChangeHash, Error> {
        let mut fork = self.doc.fork_at(deps)?.with_actor(actor);
        let mut wrote = false;
        for op in source.decode().operations {
            let (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(key)) =
                (&op.obj, &op.key)
            else {
                continue;
            };
            let key = key.to_string();
            if skip(&key) {
                continue;
            }
            match op.action {
                automerge::legacy::OpType::Put(v) => {
                    super::session_doc::put_over(&mut fork, &key, v)?;
                }
                automerge::legacy::OpType::Increment(n) => {
                    if let Some((automerge::Value::Scalar(s), _)) = fork.get(ROOT, key.as_str())? {
                        if s.is_counter() {
                            fork.increment(ROOT, key.as_str(), n)?;
                        }
                    }
                }
                automerge::legacy::OpType::Delete => {
                    if fork.get(ROOT, key.as_str())?.is_some() {
                        fork.delete(ROOT, key.as_str())?;
                    }
                }
                _ => continue,
            }
            wrote = true;
        }
        let options = || CommitOptions::default().with_time(source.timestamp());
        let hash = match wrote.then(|| fork.commit_with(options())).flatten() {
            Some(h) => h,
            None => fork.empty_change(options()),
        };
        let change = fork
            .get_change_by_hash(&hash)
            .ok_or_else(|| Error::Sync("translated change vanished".into()))?;
        self.doc.apply_changes([change])?;
        Ok(hash)
    }
}

/// The change that made the operation `id`.
pub(super) fn change_of(changes: &[Change], id: &ObjId) -> Option<ChangeHash> {
    let ObjId::Id(counter, actor, _) = id else {
        return None;
    };
    changes
        .iter()
        .find(|c| c.actor_id() == actor && c.start_op().get() <= *counter && *counter <= c.max_op())
        .map(Change::hash)
}

/// A scalar as its owned value (counters stay counters, at their total).
fn owned(v: &ScalarValue) -> ScalarValue {
    match v {
        ScalarValue::Counter(c) => ScalarValue::counter(i64::from(c)),
        other => other.clone(),
    }
}
