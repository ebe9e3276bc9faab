//! The read side of [`SessionDoc`]: attribute values, conflicts, liveness.

use std::collections::BTreeMap;

use automerge::{ReadDoc, ScalarValue, Value, ROOT};
use serde::de::DeserializeOwned;

use super::session_doc::{
    data_key, ABSOLUTE, COUNT, CREATED, DATA, EXPIRY, INVALIDATED, MAX_IDLE, SUCCESSOR, TOUCH,
};
use super::{Error, ExpiryMode, SessionDoc, Status};
use crate::clock::Millis;
use crate::id::DocKey;

impl SessionDoc {
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

    pub(super) fn counter_total(&self, key: &str) -> Result<Option<i64>, Error> {
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

    pub(super) fn data_value(&self, key: &str) -> Result<Option<serde_json::Value>, Error> {
        match self.doc.get(ROOT, data_key(key).as_str())? {
            Some((v, _)) => scalar_to_json(key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn time(&self, key: &str) -> Result<Option<Millis>, Error> {
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

pub(super) fn is_slot_of(k: &str, prefix: &str) -> bool {
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
