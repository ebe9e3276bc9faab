//! Writes that reach a rotated session late. A rotation copies the
//! session's state into its successor and ends the old id in one change;
//! a write made elsewhere before that node heard of the rotation lands in
//! the old document afterwards. Each such change is carried into the
//! successor the way a generation carries one (see `chain.rs`): the same
//! operations, at the translation of its dependencies (the successor's
//! first change for those the rotation had seen), by an actor derived from
//! the change, at its time. Every node that carries it makes the same
//! change, so a late increment counts once.

use std::collections::{HashMap, HashSet};

use automerge::{Change, ChangeHash, ReadDoc, ROOT};

use super::generation::{change_of, derived_actor};
use super::layout::{NEXT, SUCCESSOR};
use super::{Error, SessionDoc};
use crate::id::DocKey;

/// The changes of a rotated session that its rotation had not seen.
#[derive(Debug, Default)]
pub(crate) struct Late {
    /// The rotation's causal past (the rotation included).
    past: HashSet<ChangeHash>,
    /// The changes outside it, dependencies first.
    changes: Vec<Change>,
}

impl Late {
    /// Whether there is nothing to carry.
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl SessionDoc {
    /// Whether this document names a successor (pending writes included):
    /// a rotated session's generations stop, so that what reaches it late
    /// is carried from the generation the rotation was written in.
    pub(crate) fn is_rotated(&self) -> bool {
        self.doc.get(ROOT, SUCCESSOR).ok().flatten().is_some()
    }

    /// The successor this document was rotated to (the winning one, if
    /// rotations raced) and every change the rotation that named it had not
    /// seen; `None` unless rotated.
    pub(crate) fn late_changes(&mut self) -> Option<(DocKey, Late)> {
        let (value, id) = self.doc.get(ROOT, SUCCESSOR).ok().flatten()?;
        let successor = match value {
            automerge::Value::Scalar(s) => match s.as_ref() {
                automerge::ScalarValue::Bytes(b) => DocKey::from_slice(b)?,
                _ => return None,
            },
            automerge::Value::Object(_) => return None,
        };
        let all = self.all_changes();
        let rotation = change_of(&all, &id)?;
        let past = self.past_of(&[rotation]);
        let changes = all
            .into_iter()
            .filter(|c| !past.contains(&c.hash()))
            .collect();
        Some((successor, Late { past, changes }))
    }

    /// Carries `late` (of the session `self` succeeds, whose key is
    /// `successor`) into this document, the successor's first generation.
    /// A rotation that lost a race is carried as an empty change (the
    /// successor stays live, its attributes kept); anything else as it
    /// is, an invalidation included. Returns
    /// the translations that were new here, as one chunk; `None` when
    /// nothing was new or this document is not the successor's beginning
    /// (it has not arrived yet).
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when a translation does not apply.
    pub(crate) fn carry_late(
        &mut self,
        successor: DocKey,
        late: &Late,
    ) -> Result<Option<Vec<u8>>, Error> {
        // The successor's first change: the copy the rotation made.
        let all = self.all_changes();
        let Some(first) = all.iter().find(|c| c.deps().is_empty()).map(Change::hash) else {
            return Ok(None);
        };
        let heads = self.heads();
        let mut carried: HashMap<ChangeHash, ChangeHash> = HashMap::new();
        for change in &late.changes {
            let deps = change
                .deps()
                .iter()
                .map(|d| {
                    if late.past.contains(d) {
                        Some(first)
                    } else {
                        carried.get(d).copied()
                    }
                })
                .collect::<Option<Vec<_>>>();
            let Some(mut deps) = deps else {
                continue;
            };
            deps.sort_unstable();
            deps.dedup();
            let rotates = change
                .decode()
                .operations
                .iter()
                .any(|op| matches!(&op.key, automerge::legacy::Key::Map(k) if k == SUCCESSOR));
            let actor = derived_actor(&[b"rotated", successor.as_bytes(), &change.hash().0]);
            // A rotation that lost moved the state to an id of its own; of
            // it only its place in the history is carried.
            let h = self.translate_with(change, &deps, actor, |key| rotates || key == NEXT)?;
            carried.insert(change.hash(), h);
        }
        if self.heads() == heads {
            return Ok(None);
        }
        Ok(Some(self.save_after(&heads)))
    }
}
