use std::collections::{BTreeMap, BTreeSet};

use automerge::legacy::{Key, ObjectId};

use automerge::transaction::Transactable as _;
use automerge::{ChangeHash, ReadDoc, ScalarValueRef, ValueRef, ROOT};

use super::layout::{
    attribute_of, prefix_range, ABSOLUTE, CREATED, EXPIRY, INVALIDATED, MAX_IDLE, META, SUCCESSOR,
    TOUCH,
};
use super::read::{deadline_of, entry_size};
use super::{Error, ExpiryMode, Op, SessionDoc, Status};
use crate::clock::Millis;

/// What a write would do to a session's limits ([`Summary::after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct After {
    /// The size the attributes would take ([`entry_size`]).
    pub(crate) size: usize,
    /// The first counter whose total would leave the `i64` range.
    pub(crate) overflow: Option<String>,
}

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
    /// The document's heads (sorted): which state this summary describes.
    pub heads: Vec<ChangeHash>,
    /// The generation the document belongs to (the node sets it; a
    /// document alone does not know it). Kept by every refresh.
    pub gen: u32,
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

    /// Takes a last access later than `limit` as `limit`: a time written by
    /// a node whose clock runs ahead neither extends the session past what
    /// this node's clock allows (plus the tolerance in `limit`).
    pub fn clamp_future(&mut self, limit: Millis) {
        if self.last_access.is_some_and(|l| l > limit) {
            self.last_access = Some(limit);
            self.deadline = Some(deadline_of(
                limit,
                self.max_idle_ms,
                self.absolute_expiry_ms,
            ));
        }
    }

    /// Bytes the attributes take, as the size limit counts them
    /// ([`entry_size`]).
    #[must_use]
    pub fn state_size(&self) -> usize {
        self.attributes.iter().map(|(k, v)| entry_size(k, v)).sum()
    }

    /// What `ops` would do to the limits, worked out from the summary
    /// without touching the document, so that a write over a limit is
    /// refused before anything is written.
    pub(crate) fn after(&self, ops: &[Op]) -> After {
        // Per key: its size, and its value when it is an integer.
        let mut entries: BTreeMap<&str, (usize, Option<i64>)> = self
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), (entry_size(k, v), v.as_i64())))
            .collect();
        let mut overflow = None;
        for op in ops {
            match op {
                Op::Insert { key, json } => {
                    let entry = match serde_json::from_str::<serde_json::Value>(json) {
                        Ok(v) => (entry_size(key, &v), v.as_i64()),
                        Err(_) => (5 + key.len() + json.len(), None),
                    };
                    entries.insert(key, entry);
                }
                Op::Increment { key, by } => {
                    let current = entries.get(key.as_str()).and_then(|e| e.1).unwrap_or(0);
                    let total = current.checked_add(*by);
                    if total.is_none() && overflow.is_none() {
                        overflow = Some(key.clone());
                    }
                    let size = entry_size(key, &serde_json::Value::from(0));
                    entries.insert(key, (size, Some(total.unwrap_or(current))));
                }
                Op::Remove { key } => {
                    entries.remove(key.as_str());
                }
                Op::Clear | Op::Invalidate => entries.clear(),
                Op::SetExpiry { .. } => {}
            }
        }
        After {
            size: entries.values().map(|e| e.0).sum(),
            overflow,
        }
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
        doc: &mut SessionDoc,
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
            let gen = self.gen;
            *self = doc.summary_with(std::mem::take(&mut self.attributes));
            self.gen = gen;
        } else if doc.doc.pending_ops() == 0 {
            self.heads = doc.sorted_heads();
        }
        Ok(())
    }

    /// [`refresh`](Self::refresh) when the keys the new changes wrote are
    /// known, otherwise reads the summary in full.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign attribute value.
    pub fn update(
        &mut self,
        doc: &mut SessionDoc,
        written: Option<&[String]>,
    ) -> Result<(), Error> {
        match written {
            Some(keys) => self.refresh(doc, keys.iter().map(String::as_str)),
            None => {
                let gen = self.gen;
                *self = doc.summary()?;
                self.gen = gen;
                Ok(())
            }
        }
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

/// The root keys whose change moves a session in the expiry index: its end
/// (logout, rotation) and its timeouts. A change writing one of them
/// changes where the session's deadline lies, not only when it was last
/// used.
pub const DEADLINE_KEYS: [&str; 5] = [INVALIDATED, SUCCESSOR, MAX_IDLE, ABSOLUTE, EXPIRY];

/// Whether the change chunk `chunk` may write one of the root keys `keys`:
/// its bytes name one (an uncompressed change keeps its keys as plain
/// strings; a name inside another key's bytes also counts), or it is
/// compressed and its decoded keys include one, or it does not decode.
/// Cheap for the common uncompressed change; never `false` for a change
/// that writes one of `keys`.
#[must_use]
pub fn may_write(chunk: &[u8], keys: &[&str]) -> bool {
    /// The chunk type byte of a compressed change (after magic and checksum).
    const COMPRESSED_CHANGE: u8 = 2;
    if chunk.get(8) == Some(&COMPRESSED_CHANGE) {
        return written_keys(chunk)
            .is_none_or(|written| written.iter().any(|k| keys.contains(&k.as_str())));
    }
    keys.iter()
        .any(|key| chunk.windows(key.len()).any(|w| w == key.as_bytes()))
}

impl SessionDoc {
    /// Reads the [`Summary`] out of the document.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign attribute value.
    pub fn summary(&mut self) -> Result<Summary, Error> {
        let attributes = self.attributes()?;
        Ok(self.summary_with(attributes))
    }

    /// A summary of `attributes` and the document's metadata, read in one
    /// pass over the `meta/` keys.
    fn summary_with(&mut self, attributes: BTreeMap<String, serde_json::Value>) -> Summary {
        // Reading the heads commits pending operations; a summary of an
        // uncommitted state (a size check before the commit) has none, and
        // the commit's own refresh fills them in.
        let heads = if self.doc.pending_ops() == 0 {
            self.sorted_heads()
        } else {
            Vec::new()
        };
        let mut rare_end = false;
        let (mut created, mut touched) = (None, None::<Millis>);
        let (mut max_idle_ms, mut absolute_expiry_ms) = (0, 0);
        let mut expiry = ExpiryMode::SessionEnd;
        for item in self.doc.map_range(ROOT, prefix_range(META)) {
            let key = item.key.as_ref();
            if key.starts_with(TOUCH) {
                if let ValueRef::Scalar(ScalarValueRef::Timestamp(t) | ScalarValueRef::Int(t)) =
                    item.value
                {
                    if let Ok(t) = u64::try_from(t) {
                        touched = Some(touched.map_or(t, |m| m.max(t)));
                    }
                }
                continue;
            }
            match key {
                CREATED => created = millis(&item.value),
                MAX_IDLE => max_idle_ms = millis(&item.value).unwrap_or(0),
                ABSOLUTE => absolute_expiry_ms = millis(&item.value).unwrap_or(0),
                EXPIRY => {
                    if let ValueRef::Scalar(ScalarValueRef::Str(m)) = &item.value {
                        expiry = ExpiryMode::parse(m).unwrap_or(ExpiryMode::SessionEnd);
                    }
                }
                INVALIDATED | SUCCESSOR => rare_end = true,
                _ => {}
            }
        }
        let last_access = created.map(|c| touched.map_or(c, |t| t.max(c)));
        Summary {
            attributes,
            expiry,
            max_idle_ms,
            absolute_expiry_ms,
            last_access,
            deadline: last_access.map(|l| deadline_of(l, max_idle_ms, absolute_expiry_ms)),
            // Rare: read exactly as `status` reads it (invalidation on any
            // branch of a conflict).
            ended: if rare_end { self.ended() } else { None },
            heads,
            gen: 0,
        }
    }
}
