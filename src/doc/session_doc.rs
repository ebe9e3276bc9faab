use automerge::{
    transaction::Transactable, ActorId, AutoCommit, ChangeHash, ReadDoc, ScalarValue, Value, ROOT,
};
use serde::Serialize;

use super::layout::{
    count_key, data_key, is_slot_of, prefix_range, touch_key, ABSOLUTE, COUNT, CREATED, DATA,
    EXPIRY, INVALIDATED, MAX_IDLE, SUCCESSOR,
};
use super::{Error, ExpiryMode, Op};
use crate::clock::Millis;
use crate::id::{DocKey, NodeId};

/// Whether a session may be served, decided from replicated data and the
/// time passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exists, not invalidated, not expired.
    Live,
    /// The idle or absolute timeout has passed.
    Expired,
    /// Invalidated (logout); dead on every node.
    Invalidated,
    /// The id was rotated to the successor; the old id is dead.
    Rotated(DocKey),
    /// The document holds no session yet (e.g. an empty replica).
    Empty,
}

/// One session as an automerge document; see the [module docs](super) for
/// the layout and the merge rules.
///
/// # Examples
///
/// ```
/// use automerge::ActorId;
/// use sessionmesh::doc::{SessionDoc, Status};
/// use sessionmesh::NodeId;
///
/// let node = NodeId::random();
/// let mut doc = SessionDoc::new(ActorId::random(), node, 1_000, 60_000, 0);
/// doc.insert("user", &"ada")?;
/// doc.increment("visits", 2, node)?;
/// doc.commit();
/// assert_eq!(doc.get::<String>("user")?, Some("ada".to_owned()));
/// assert_eq!(doc.get::<i64>("visits")?, Some(2));
/// assert_eq!(doc.status(30_000), Status::Live);
/// assert_eq!(doc.status(61_001), Status::Expired);
/// # Ok::<(), sessionmesh::doc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SessionDoc {
    pub(super) doc: AutoCommit,
}

impl SessionDoc {
    /// A new session created at `now` by `node`, with the given idle timeout
    /// and absolute deadline (0 = none). The writes are pending until
    /// [`commit`](Self::commit).
    #[must_use]
    pub fn new(
        actor: ActorId,
        node: NodeId,
        now: Millis,
        max_idle_ms: u64,
        absolute_ms: u64,
    ) -> Self {
        let mut doc = Self {
            doc: AutoCommit::new().with_actor(actor),
        };
        // Writes to a fresh document on the root map cannot fail.
        let _ = doc.put(CREATED, ScalarValue::Timestamp(to_i64(now)));
        let _ = doc.put(&touch_key(node), ScalarValue::Timestamp(to_i64(now)));
        let _ = doc.set_expiry(ExpiryMode::SessionEnd, max_idle_ms, absolute_ms);
        doc
    }

    /// An empty replica: no session yet, filled by merging or loading.
    #[must_use]
    pub fn empty(actor: ActorId) -> Self {
        Self {
            doc: AutoCommit::new().with_actor(actor),
        }
    }

    /// Loads a document from `save()` output, optionally followed by change
    /// chunks, and continues it with `actor`.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when the bytes are not an automerge document.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, Error> {
        Ok(Self {
            doc: AutoCommit::load(bytes)?.with_actor(actor),
        })
    }

    /// Applies a recorded operation (pending until [`commit`](Self::commit)).
    ///
    /// # Errors
    ///
    /// [`Error::NotACounter`] / [`Error::Overflow`] for a bad increment,
    /// [`Error::Automerge`] if automerge refuses the write. An increment
    /// checks overflow of this node's own counter only, not of the
    /// session-wide total: the caller checks that (the node does, against
    /// the summary), and reads saturate.
    pub fn apply(&mut self, op: &Op, node: NodeId) -> Result<(), Error> {
        match op {
            Op::Insert { key, json } => self.insert_json(key, json),
            Op::Remove { key } => self.remove(key),
            Op::Increment { key, by } => self.add_to_slot(key, *by, node),
            Op::Clear => self.clear(),
            Op::SetExpiry {
                mode,
                max_idle_ms,
                absolute_ms,
            } => self.set_expiry(*mode, *max_idle_ms, *absolute_ms),
            Op::Invalidate => self.invalidate(),
        }
    }

    /// Sets attribute `key` to `value`, serialized as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] when `value` has no JSON form; nothing is written.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        let json = serde_json::to_string(value).map_err(Error::Serialize)?;
        self.insert_json(key, &json)
    }

    /// Sets attribute `key` to already-serialized JSON text.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn insert_json(&mut self, key: &str, json: &str) -> Result<(), Error> {
        self.delete_counters(key)?;
        self.put(&data_key(key), ScalarValue::Str(json.into()))
    }

    /// Removes attribute `key` (value or counter).
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn remove(&mut self, key: &str) -> Result<(), Error> {
        self.delete_counters(key)?;
        self.delete(&data_key(key))
    }

    /// Adds `by` to counter `key` on behalf of `node`, returning the new
    /// total as this replica sees it. A plain integer value is folded into
    /// the counter; any other value is [`Error::NotACounter`].
    ///
    /// # Errors
    ///
    /// [`Error::NotACounter`], [`Error::Overflow`], [`Error::Automerge`].
    pub fn increment(&mut self, key: &str, by: i64, node: NodeId) -> Result<i64, Error> {
        let overflow = || Error::Overflow {
            key: key.to_owned(),
        };
        let base = match self.data_value(key)? {
            Some(value) => value.as_i64().ok_or_else(|| Error::NotACounter {
                key: key.to_owned(),
            })?,
            None => 0,
        };
        let total = self.counter_total(key)?.unwrap_or(0);
        let new = total
            .checked_add(base)
            .and_then(|t| t.checked_add(by))
            .ok_or_else(overflow)?;
        self.add_to_slot(key, by, node)?;
        Ok(new)
    }

    /// [`increment`](Self::increment) without reading the other nodes'
    /// counters, which costs a walk over every increment they ever made:
    /// what a commit applies, its caller having checked the total against
    /// the summary. Overflow is checked on this node's own counter.
    pub(crate) fn add_to_slot(&mut self, key: &str, by: i64, node: NodeId) -> Result<(), Error> {
        let overflow = || Error::Overflow {
            key: key.to_owned(),
        };
        let mut amount = by;
        if let Some(value) = self.data_value(key)? {
            let base = value.as_i64().ok_or_else(|| Error::NotACounter {
                key: key.to_owned(),
            })?;
            amount = base.checked_add(by).ok_or_else(overflow)?;
            self.delete(&data_key(key))?;
        }
        match self.own_slot(key, node) {
            Some((slot, value)) => {
                value.checked_add(amount).ok_or_else(overflow)?;
                self.doc.increment(ROOT, slot.as_str(), amount)?;
            }
            None => {
                // A new slot under a key of its own: a slot of this node's
                // that this replica does not see (a generation's copy still
                // on its way) is never overwritten by a concurrent one, and
                // automerge would keep one of two values at a key.
                let mut suffix = [0u8; 8];
                getrandom::fill(&mut suffix).map_err(|e| Error::Sync(e.to_string()))?;
                let slot = format!(
                    "{}.{:016x}",
                    count_key(key, node),
                    u64::from_be_bytes(suffix)
                );
                self.doc
                    .put(ROOT, slot.as_str(), ScalarValue::counter(amount))?;
            }
        }
        Ok(())
    }

    /// This node's counter slot for `key` and its value, if it has one
    /// (`count/<key>/<node>`, or that with a `.<suffix>`).
    fn own_slot(&self, key: &str, node: NodeId) -> Option<(String, i64)> {
        let exact = count_key(key, node);
        let prefix = format!("{COUNT}{key}/");
        self.doc
            .map_range(ROOT, prefix_range(&prefix))
            .filter(|item| {
                item.key == exact
                    || item
                        .key
                        .strip_prefix(exact.as_str())
                        .is_some_and(|rest| rest.starts_with('.') && !rest.contains('/'))
            })
            .find_map(|item| match item.value {
                automerge::ValueRef::Scalar(automerge::ScalarValueRef::Counter(c)) => {
                    Some((item.key.into_owned(), c))
                }
                _ => None,
            })
    }

    /// Removes every attribute.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn clear(&mut self) -> Result<(), Error> {
        let keys: Vec<String> = self
            .doc
            .keys(ROOT)
            .filter(|k| k.starts_with(DATA) || k.starts_with(COUNT))
            .collect();
        for k in keys {
            self.doc.delete(ROOT, k.as_str())?;
        }
        Ok(())
    }

    /// Marks the session invalid for good and drops its attributes.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn invalidate(&mut self) -> Result<(), Error> {
        self.clear()?;
        self.put(INVALIDATED, ScalarValue::Boolean(true))
    }

    /// Records that the session moved to `successor` and kills this id.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn set_successor(&mut self, successor: DocKey) -> Result<(), Error> {
        self.put(SUCCESSOR, ScalarValue::Bytes(successor.as_bytes().to_vec()))?;
        self.invalidate()
    }

    /// Sets how the session expires (0 = no such timeout).
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn set_expiry(
        &mut self,
        mode: ExpiryMode,
        max_idle_ms: u64,
        absolute_ms: u64,
    ) -> Result<(), Error> {
        self.put(EXPIRY, ScalarValue::Str(mode.as_str().into()))?;
        self.put(MAX_IDLE, ScalarValue::Int(to_i64(max_idle_ms)))?;
        self.put(ABSOLUTE, ScalarValue::Timestamp(to_i64(absolute_ms)))
    }

    /// Records that `node` saw an access at `now`; no-op unless it raises
    /// that node's register.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn touch(&mut self, node: NodeId, now: Millis) -> Result<(), Error> {
        let key = touch_key(node);
        if self.time(&key)?.is_some_and(|t| t >= now) {
            return Ok(());
        }
        self.put(&key, ScalarValue::Timestamp(to_i64(now)))
    }

    /// Writes this node's last-access register even when it is current
    /// (with the later of its value and `now`): a change that depends on
    /// every head, merging concurrent branches into one.
    pub(crate) fn touch_always(&mut self, node: NodeId, now: Millis) -> Result<(), Error> {
        let key = touch_key(node);
        let at = self.time(&key)?.map_or(now, |t| t.max(now));
        self.put(&key, ScalarValue::Timestamp(to_i64(at)))
    }

    /// Closes the pending operations into one change; `None` if nothing was
    /// written.
    pub fn commit(&mut self) -> Option<ChangeHash> {
        self.doc.commit()
    }

    /// [`commit`](Self::commit) with the change's time given (ms), for a
    /// change that must be the same bytes wherever it is made.
    pub fn commit_at(&mut self, time: Millis) -> Option<ChangeHash> {
        let t = i64::try_from(time).unwrap_or(i64::MAX);
        self.doc
            .commit_with(automerge::transaction::CommitOptions::default().with_time(t))
    }

    /// Drops the pending operations.
    pub fn rollback(&mut self) {
        self.doc.rollback();
    }

    /// An independent copy that writes as `actor`.
    #[must_use]
    pub fn fork_as(&mut self, actor: ActorId) -> Self {
        Self {
            doc: self.doc.fork().with_actor(actor),
        }
    }

    /// Copies every attribute of `other`, counters slot by slot (each
    /// node's at its total): the first half of rotating a session id. A
    /// late increment carried over from `other` then finds its slot.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign value, [`Error::Automerge`].
    pub fn copy_attributes_from(&mut self, other: &SessionDoc) -> Result<(), Error> {
        for k in other.doc.keys(ROOT) {
            let Some((Value::Scalar(s), _)) = other.doc.get(ROOT, k.as_str())? else {
                continue;
            };
            if k.starts_with(DATA) {
                self.put(&k, s.into_owned())?;
            } else if k.starts_with(COUNT) {
                let total = match s.as_ref() {
                    ScalarValue::Counter(c) => i64::from(c),
                    ScalarValue::Int(n) => *n,
                    _ => {
                        return Err(Error::Corrupt {
                            key: k.trim_start_matches(COUNT).to_owned(),
                        })
                    }
                };
                self.put(&k, ScalarValue::counter(total))?;
            }
        }
        Ok(())
    }

    fn put(&mut self, key: &str, value: ScalarValue) -> Result<(), Error> {
        put_over(&mut self.doc, key, value)
    }

    fn delete(&mut self, key: &str) -> Result<(), Error> {
        if self.doc.get(ROOT, key)?.is_some() {
            self.doc.delete(ROOT, key)?;
        }
        Ok(())
    }

    fn delete_counters(&mut self, key: &str) -> Result<(), Error> {
        let prefix = format!("{COUNT}{key}/");
        let slots: Vec<String> = self
            .doc
            .map_range(ROOT, prefix_range(&prefix))
            .filter(|item| is_slot_of(&item.key, &prefix))
            .map(|item| item.key.into_owned())
            .collect();
        for s in slots {
            self.doc.delete(ROOT, s.as_str())?;
        }
        Ok(())
    }
}

/// Sets `key` on the root of `doc` to `value`. Over a conflict, the values
/// are deleted first: automerge writes a value equal to the conflict's
/// winner as deletions of the losing values only, a change that, carried
/// to another generation key by key (or lifted back), would delete the key
/// outright — a logout repeated after two concurrent ones undid them all.
pub(super) fn put_over(
    doc: &mut automerge::AutoCommit,
    key: &str,
    value: impl Into<ScalarValue>,
) -> Result<(), Error> {
    if doc.get_all(ROOT, key)?.len() > 1 {
        doc.delete(ROOT, key)?;
    }
    doc.put(ROOT, key, value.into())?;
    Ok(())
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
