use std::collections::BTreeMap;

use automerge::{
    transaction::Transactable, ActorId, AutoCommit, ChangeHash, ReadDoc, ScalarValue, Value, ROOT,
};
use serde::{de::DeserializeOwned, Serialize};

use super::{Error, ExpiryMode, Op};
use crate::clock::Millis;
use crate::id::{DocKey, NodeId};

const DATA: &str = "data/";
const COUNT: &str = "count/";
const TOUCH: &str = "meta/touch/";
const CREATED: &str = "meta/created";
const MAX_IDLE: &str = "meta/max_idle";
const ABSOLUTE: &str = "meta/absolute_expiry";
const EXPIRY: &str = "meta/expiry";
const INVALIDATED: &str = "meta/invalidated";
const SUCCESSOR: &str = "meta/successor";

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
    doc: AutoCommit,
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
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn apply(&mut self, op: &Op, node: NodeId) -> Result<(), Error> {
        match op {
            Op::Insert { key, json } => self.insert_json(key, json),
            Op::Remove { key } => self.remove(key),
            Op::Increment { key, by } => self.increment(key, *by, node).map(|_| ()),
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
        let mut base = 0i64;
        if let Some(value) = self.data_value(key)? {
            base = value.as_i64().ok_or_else(|| Error::NotACounter {
                key: key.to_owned(),
            })?;
            self.delete(&data_key(key))?;
        }
        let total = self.counter_total(key)?.unwrap_or(0);
        let amount = base.checked_add(by).ok_or_else(|| Error::Overflow {
            key: key.to_owned(),
        })?;
        let new = total.checked_add(amount).ok_or_else(|| Error::Overflow {
            key: key.to_owned(),
        })?;
        let slot = count_key(key, node);
        if matches!(self.doc.get(ROOT, slot.as_str())?, Some((Value::Scalar(s), _)) if s.is_counter())
        {
            self.doc.increment(ROOT, slot.as_str(), amount)?;
        } else {
            self.doc
                .put(ROOT, slot.as_str(), ScalarValue::counter(amount))?;
        }
        Ok(new)
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

    /// Reads attribute `key` into `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Deserialize`] when the value does not fit `T`,
    /// [`Error::Corrupt`] for a foreign value.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get_json(key)?
            .map(|v| {
                serde_json::from_value(v).map_err(|source| Error::Deserialize {
                    key: key.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Reads attribute `key` as JSON (a counter reads as its total).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign value.
    pub fn get_json(&self, key: &str) -> Result<Option<serde_json::Value>, Error> {
        if let Some(total) = self.counter_total(key)? {
            return Ok(Some(total.into()));
        }
        self.data_value(key)
    }

    /// Every value concurrently written to attribute `key`, winner first.
    /// More than one means a same-key conflict that no later write has
    /// resolved yet.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign value.
    pub fn conflicts(&self, key: &str) -> Result<Vec<serde_json::Value>, Error> {
        let dk = data_key(key);
        let mut all = self.doc.get_all(ROOT, dk.as_str())?;
        all.reverse(); // automerge lists the winner last
        all.into_iter()
            .map(|(v, _)| scalar_to_json(key, &v))
            .collect()
    }

    /// Every attribute with its value.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign value.
    pub fn attributes(&self) -> Result<BTreeMap<String, serde_json::Value>, Error> {
        let mut out = BTreeMap::new();
        for k in self.doc.keys(ROOT) {
            if let Some(name) = k.strip_prefix(DATA) {
                if let Some(v) = self.data_value(name)? {
                    out.insert(name.to_owned(), v);
                }
            } else if let Some(rest) = k.strip_prefix(COUNT) {
                if let Some((name, _node)) = rest.rsplit_once('/') {
                    if !out.contains_key(name) {
                        if let Some(total) = self.counter_total(name)? {
                            out.insert(name.to_owned(), total.into());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Bytes the attributes take as JSON (keys plus values): what the size
    /// limit is measured on. History is not counted, so a session that is
    /// rewritten often does not grow unwritable.
    #[must_use]
    pub fn state_size(&self) -> usize {
        self.doc
            .keys(ROOT)
            .filter(|k| k.starts_with(DATA) || k.starts_with(COUNT))
            .map(|k| {
                let value = match self.doc.get(ROOT, k.as_str()) {
                    Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                        ScalarValue::Str(s) => s.len(),
                        _ => 8,
                    },
                    _ => 0,
                };
                k.len() + value
            })
            .sum()
    }

    /// Liveness at `now`.
    #[must_use]
    pub fn status(&self, now: Millis) -> Status {
        if let Ok(Some((Value::Scalar(s), _))) = self.doc.get(ROOT, SUCCESSOR) {
            if let ScalarValue::Bytes(b) = s.as_ref() {
                if let Some(k) = DocKey::from_slice(b) {
                    return Status::Rotated(k);
                }
            }
        }
        if self.is_invalidated() {
            return Status::Invalidated;
        }
        match self.deadline() {
            None => Status::Empty,
            Some(d) if now > d => Status::Expired,
            Some(_) => Status::Live,
        }
    }

    /// Whether `meta/invalidated` is set on any branch (invalidation wins
    /// even while a concurrent write conflicts with it).
    #[must_use]
    pub fn is_invalidated(&self) -> bool {
        self.doc.get_all(ROOT, INVALIDATED).is_ok_and(|all| {
            all.iter().any(
                |(v, _)| matches!(v, Value::Scalar(s) if s.as_ref() == &ScalarValue::Boolean(true)),
            )
        })
    }

    /// The last access any node recorded (or the creation time).
    #[must_use]
    pub fn last_access(&self) -> Option<Millis> {
        let created = self.time(CREATED).ok().flatten()?;
        let touched = self
            .doc
            .keys(ROOT)
            .filter(|k| k.starts_with(TOUCH))
            .filter_map(|k| self.time(&k).ok().flatten())
            .max();
        Some(touched.map_or(created, |t| t.max(created)))
    }

    /// When the session expires unless accessed again; `None` for a
    /// document that holds no session.
    #[must_use]
    pub fn deadline(&self) -> Option<Millis> {
        let last = self.last_access()?;
        let idle = self.int(MAX_IDLE).unwrap_or(0);
        let absolute = self.time(ABSOLUTE).ok().flatten().unwrap_or(0);
        let by_idle = if idle == 0 {
            Millis::MAX
        } else {
            last.saturating_add(idle)
        };
        let by_absolute = if absolute == 0 { Millis::MAX } else { absolute };
        Some(by_idle.min(by_absolute))
    }

    /// The idle timeout in ms (0 = none).
    #[must_use]
    pub fn max_idle_ms(&self) -> u64 {
        self.int(MAX_IDLE).unwrap_or(0)
    }

    /// The absolute deadline in ms (0 = none).
    #[must_use]
    pub fn absolute_expiry_ms(&self) -> u64 {
        self.time(ABSOLUTE).ok().flatten().unwrap_or(0)
    }

    /// How the cookie should expire.
    #[must_use]
    pub fn expiry_mode(&self) -> ExpiryMode {
        match self.doc.get(ROOT, EXPIRY) {
            Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Str(m) => ExpiryMode::parse(m).unwrap_or(ExpiryMode::SessionEnd),
                _ => ExpiryMode::SessionEnd,
            },
            _ => ExpiryMode::SessionEnd,
        }
    }

    /// Closes the pending operations into one change; `None` if nothing was
    /// written.
    pub fn commit(&mut self) -> Option<ChangeHash> {
        self.doc.commit()
    }

    /// Drops the pending operations.
    pub fn rollback(&mut self) {
        self.doc.rollback();
    }

    /// The current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The whole document, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Every change not reachable from `heads`, as change chunks.
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// Merges every change of `other` that this document lacks.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when the other document's changes do not apply.
    pub fn merge(&mut self, other: &mut SessionDoc) -> Result<(), Error> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    /// Applies change chunks or a saved document (from disk or a peer).
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when the bytes do not decode.
    pub fn load_incremental(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.doc.load_incremental(bytes)?;
        Ok(())
    }

    /// An independent copy that writes as `actor`.
    #[must_use]
    pub fn fork_as(&mut self, actor: ActorId) -> Self {
        Self {
            doc: self.doc.fork().with_actor(actor),
        }
    }

    /// Copies every attribute of `other` (counters stay counters, credited
    /// to `node`): the first half of rotating a session id.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign value, [`Error::Automerge`].
    pub fn copy_attributes_from(&mut self, other: &SessionDoc, node: NodeId) -> Result<(), Error> {
        let mut counters = BTreeMap::new();
        for k in other.doc.keys(ROOT) {
            if let Some(name) = k.strip_prefix(DATA) {
                if let Some((Value::Scalar(s), _)) = other.doc.get(ROOT, k.as_str())? {
                    self.put(&data_key(name), s.into_owned())?;
                }
            } else if let Some((name, _)) = k.strip_prefix(COUNT).and_then(|r| r.rsplit_once('/')) {
                if !counters.contains_key(name) {
                    counters.insert(name.to_owned(), other.counter_total(name)?.unwrap_or(0));
                }
            }
        }
        for (name, total) in counters {
            self.increment(&name, total, node)?;
        }
        Ok(())
    }

    fn put(&mut self, key: &str, value: ScalarValue) -> Result<(), Error> {
        self.doc.put(ROOT, key, value)?;
        Ok(())
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
            .keys(ROOT)
            .filter(|k| is_slot_of(k, &prefix))
            .collect();
        for s in slots {
            self.doc.delete(ROOT, s.as_str())?;
        }
        Ok(())
    }

    fn counter_total(&self, key: &str) -> Result<Option<i64>, Error> {
        let prefix = format!("{COUNT}{key}/");
        let mut total: Option<i64> = None;
        for slot in self.doc.keys(ROOT).filter(|k| is_slot_of(k, &prefix)) {
            if let Some((Value::Scalar(s), _)) = self.doc.get(ROOT, slot.as_str())? {
                let n = match s.as_ref() {
                    ScalarValue::Counter(c) => i64::from(c),
                    ScalarValue::Int(i) => *i,
                    _ => {
                        return Err(Error::Corrupt {
                            key: key.to_owned(),
                        })
                    }
                };
                total = Some(total.unwrap_or(0).saturating_add(n));
            }
        }
        Ok(total)
    }

    fn data_value(&self, key: &str) -> Result<Option<serde_json::Value>, Error> {
        match self.doc.get(ROOT, data_key(key).as_str())? {
            Some((v, _)) => scalar_to_json(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn time(&self, key: &str) -> Result<Option<Millis>, Error> {
        Ok(match self.doc.get(ROOT, key)? {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Timestamp(t) | ScalarValue::Int(t) => {
                    Some(u64::try_from(*t).unwrap_or(0))
                }
                _ => None,
            },
            _ => None,
        })
    }

    fn int(&self, key: &str) -> Option<u64> {
        self.time(key).ok().flatten()
    }
}

fn is_slot_of(k: &str, prefix: &str) -> bool {
    // `count/<key>/<32 hex>`: the node part has no '/', so a key that is a
    // prefix of another ("a" vs "a/b") never picks up the other's slots.
    k.strip_prefix(prefix)
        .is_some_and(|node| !node.contains('/'))
}

fn scalar_to_json(key: &str, value: &Value<'_>) -> Result<serde_json::Value, Error> {
    let corrupt = || Error::Corrupt {
        key: key.to_owned(),
    };
    let Value::Scalar(s) = value else {
        return Err(corrupt());
    };
    Ok(match s.as_ref() {
        ScalarValue::Str(text) => serde_json::from_str(text).map_err(|_| corrupt())?,
        ScalarValue::Int(i) => (*i).into(),
        ScalarValue::Uint(u) => (*u).into(),
        ScalarValue::Counter(c) => i64::from(c).into(),
        ScalarValue::Boolean(b) => (*b).into(),
        ScalarValue::Null => serde_json::Value::Null,
        _ => return Err(corrupt()),
    })
}

fn data_key(key: &str) -> String {
    format!("{DATA}{key}")
}

fn count_key(key: &str, node: NodeId) -> String {
    format!("{COUNT}{key}/{node}")
}

fn touch_key(node: NodeId) -> String {
    format!("{TOUCH}{node}")
}

fn to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
