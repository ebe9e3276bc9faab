use std::collections::{BTreeMap, BTreeSet};

use automerge::legacy::{Key, ObjectId};

use automerge::{ReadDoc, ScalarValueRef, ValueRef, ROOT};

use super::read::{attribute_of, deadline_of, entry_size, scalar_to_json};
use super::session_doc::{
    ABSOLUTE, COUNT, CREATED, DATA, EXPIRY, INVALIDATED, MAX_IDLE, SUCCESSOR, TOUCH,
};
use super::{Error, ExpiryMode, Op, SessionDoc, Status};
use crate::clock::Millis;

/// Everything a request needs from a document, read out once after each
/// change, so that serving a session reads no automerge data at all.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Summary {
    /// Every attribute (a counter reads as its total).
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// How the cookie expires.
    pub expiry: ExpiryMode,
    /// Idle timeout in ms (0 = none).
    pub max_idle_ms: u64,
    /// Absolute deadline in ms since the epoch (0 = none).
    pub absolute_expiry_ms: Millis,
    /// The last access any node recorded.
    pub last_access: Option<Millis>,
    /// When the session expires unless accessed again.
    pub deadline: Option<Millis>,
    /// `Invalidated` or `Rotated` once the session has ended for good.
    pub ended: Option<Status>,
}

impl Summary {
    /// Liveness at `now`; the same answer as [`SessionDoc::status`].
    #[must_use]
    pub fn status(&self, now: Millis) -> Status {
        if let Some(ended) = self.ended {
            return ended;
        }
        match self.deadline {
            None => Status::Empty,
            Some(d) if now > d => Status::Expired,
            Some(_) => Status::Live,
        }
    }

    /// Bytes the attributes take, as the size limit counts them
    /// ([`entry_size`]).
    #[must_use]
    pub fn state_size(&self) -> usize {
        self.attributes.iter().map(|(k, v)| entry_size(k, v)).sum()
    }

    /// What [`state_size`](Self::state_size) becomes once `ops` are applied
    /// to the latest document, computed without touching it, so an
    /// oversized write is refused before anything is written.
    #[must_use]
    pub fn state_size_after(&self, ops: &[Op]) -> usize {
        let mut sizes: BTreeMap<&str, usize> = self
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), entry_size(k, v)))
            .collect();
        for op in ops {
            match op {
                Op::Insert { key, json } => {
                    let size = match serde_json::from_str::<serde_json::Value>(json) {
                        Ok(v) => entry_size(key, &v),
                        Err(_) => 5 + key.len() + json.len(),
                    };
                    sizes.insert(key, size);
                }
                Op::Increment { key, .. } => {
                    sizes.insert(key, entry_size(key, &serde_json::Value::from(0)));
                }
                Op::Remove { key } => {
                    sizes.remove(key.as_str());
                }
                Op::Clear | Op::Invalidate => sizes.clear(),
                Op::SetExpiry { .. } => {}
            }
        }
        sizes.values().sum()
    }

    /// Brings the summary up to date after `doc` gained changes that wrote
    /// the root keys `written` and nothing else: only those attributes (and
    /// the metadata, if any `meta/` key is among them) are read again, so
    /// the cost follows what changed, not the size of the session.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign attribute value.
    pub fn refresh<'k>(
        &mut self,
        doc: &SessionDoc,
        written: impl IntoIterator<Item = &'k str>,
    ) -> Result<(), Error> {
        let mut names = BTreeSet::new();
        let mut meta = false;
        for key in written {
            match attribute_of(key) {
                Some(name) => {
                    names.insert(name);
                }
                None => meta = true,
            }
        }
        for name in names {
            match doc.get_json(name)? {
                Some(v) => {
                    self.attributes.insert(name.to_owned(), v);
                }
                None => {
                    self.attributes.remove(name);
                }
            }
        }
        if meta {
            let attributes = std::mem::take(&mut self.attributes);
            *self = doc.summary_without_attributes(attributes);
        }
        Ok(())
    }
}

/// A time or integer value in ms (as `SessionDoc::time` reads it).
fn millis(value: &ValueRef<'_>) -> Option<Millis> {
    match value {
        ValueRef::Scalar(ScalarValueRef::Timestamp(t) | ScalarValueRef::Int(t)) => {
            Some(u64::try_from(*t).unwrap_or(0))
        }
        _ => None,
    }
}

/// The root keys one change chunk writes, or `None` when `chunk` is not
/// exactly one change or writes anywhere but the root map (then the caller
/// reads the whole summary again).
#[must_use]
pub fn written_keys(chunk: &[u8]) -> Option<Vec<String>> {
    let change = automerge::Change::from_bytes(chunk.to_vec()).ok()?;
    change
        .decode()
        .operations
        .iter()
        .map(|op| match (&op.obj, &op.key) {
            (ObjectId::Root, Key::Map(k)) => Some(k.to_string()),
            _ => None,
        })
        .collect()
}

impl SessionDoc {
    /// Reads the [`Summary`] out of the document.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign attribute value.
    pub fn summary(&self) -> Result<Summary, Error> {
        // One pass over the root map instead of a lookup per key (each
        // lookup seeks and walks that key's history).
        let mut values: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let mut counters: BTreeMap<String, i64> = BTreeMap::new();
        let mut invalidated = false;
        let mut successor = None;
        let (mut created, mut touched) = (None, None::<Millis>);
        let (mut max_idle_ms, mut absolute_expiry_ms) = (0, 0);
        let mut expiry = ExpiryMode::SessionEnd;
        for item in self.doc.map_range(ROOT, ..) {
            let key = item.key.as_ref();
            if let Some(name) = key.strip_prefix(DATA) {
                let value = scalar_to_json(name, &item.value.into_value())?;
                values.insert(name.to_owned(), value);
            } else if let Some(rest) = key.strip_prefix(COUNT) {
                let Some((name, _node)) = rest.rsplit_once('/') else {
                    continue;
                };
                let ValueRef::Scalar(ScalarValueRef::Counter(n) | ScalarValueRef::Int(n)) =
                    item.value
                else {
                    return Err(Error::Corrupt {
                        key: name.to_owned(),
                    });
                };
                let total = counters.entry(name.to_owned()).or_insert(0);
                *total = total.saturating_add(n);
            } else if key.starts_with(TOUCH) {
                if let ValueRef::Scalar(ScalarValueRef::Timestamp(t) | ScalarValueRef::Int(t)) =
                    item.value
                {
                    if let Ok(t) = u64::try_from(t) {
                        touched = Some(touched.map_or(t, |m| m.max(t)));
                    }
                }
            } else {
                match key {
                    CREATED => created = millis(&item.value),
                    MAX_IDLE => max_idle_ms = millis(&item.value).unwrap_or(0),
                    ABSOLUTE => absolute_expiry_ms = millis(&item.value).unwrap_or(0),
                    EXPIRY => {
                        if let ValueRef::Scalar(ScalarValueRef::Str(m)) = &item.value {
                            expiry = ExpiryMode::parse(m).unwrap_or(ExpiryMode::SessionEnd);
                        }
                    }
                    // Invalidation wins on any branch, not only the winner.
                    INVALIDATED => {
                        invalidated =
                            item.conflict || item.value == ScalarValueRef::Boolean(true).into();
                    }
                    SUCCESSOR => successor = Some(()),
                    _ => {}
                }
            }
        }
        for (name, total) in counters {
            values.entry(name).or_insert_with(|| total.into());
        }
        let ended = if successor.is_some() || invalidated {
            // Rare: read exactly as `status` does.
            self.ended()
        } else {
            None
        };
        let last_access = created.map(|c| touched.map_or(c, |t| t.max(c)));
        Ok(Summary {
            attributes: values,
            expiry,
            max_idle_ms,
            absolute_expiry_ms,
            last_access,
            deadline: last_access.map(|l| deadline_of(l, max_idle_ms, absolute_expiry_ms)),
            ended,
        })
    }

    fn summary_without_attributes(
        &self,
        attributes: BTreeMap<String, serde_json::Value>,
    ) -> Summary {
        // Each metadata key read once: automerge walks a key's history on
        // every read.
        let max_idle_ms = self.max_idle_ms();
        let absolute_expiry_ms = self.absolute_expiry_ms();
        let last_access = self.last_access();
        Summary {
            attributes,
            expiry: self.expiry_mode(),
            max_idle_ms,
            absolute_expiry_ms,
            last_access,
            deadline: last_access.map(|l| deadline_of(l, max_idle_ms, absolute_expiry_ms)),
            ended: self.ended(),
        }
    }
}
