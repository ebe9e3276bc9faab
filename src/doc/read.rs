//! The read side of [`SessionDoc`]: attribute values, conflicts, liveness.

use std::collections::BTreeMap;

use automerge::{ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef, ROOT};
use serde::de::DeserializeOwned;

use super::layout::{
    data_key, is_slot_of, prefix_range, ABSOLUTE, COUNT, CREATED, DATA, EXPIRY, INVALIDATED,
    MAX_IDLE, SUCCESSOR, TOUCH,
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

    /// Reads attribute `key` as JSON (a counter reads as its total). When a
    /// value and a counter exist at once (a set concurrent with an
    /// increment), the value wins until the next write to the key.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign value.
    pub fn get_json(&self, key: &str) -> Result<Option<serde_json::Value>, Error> {
        if let Some(value) = self.data_value(key)? {
            return Ok(Some(value));
        }
        Ok(self.counter_total(key)?.map(Into::into))
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

    /// Every attribute with its value, read in one pass over the value keys
    /// and one over the counter keys (a lookup per key would seek and walk
    /// that key's history each time).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign value.
    pub fn attributes(&self) -> Result<BTreeMap<String, serde_json::Value>, Error> {
        let mut out = BTreeMap::new();
        for item in self.doc.map_range(ROOT, prefix_range(DATA)) {
            if let Some(name) = item.key.strip_prefix(DATA) {
                out.insert(
                    name.to_owned(),
                    scalar_to_json(name, &item.value.into_value())?,
                );
            }
        }
        let mut counters: BTreeMap<String, i64> = BTreeMap::new();
        for item in self.doc.map_range(ROOT, prefix_range(COUNT)) {
            let Some((name, _node)) = item
                .key
                .strip_prefix(COUNT)
                .and_then(|r| r.rsplit_once('/'))
            else {
                continue;
            };
            let ValueRef::Scalar(ScalarValueRef::Counter(n) | ScalarValueRef::Int(n)) = item.value
            else {
                return Err(Error::Corrupt {
                    key: name.to_owned(),
                });
            };
            let total = counters.entry(name.to_owned()).or_insert(0);
            *total = total.saturating_add(n);
        }
        // A value beats counters under the same key (see `get_json`).
        for (name, total) in counters {
            out.entry(name).or_insert_with(|| total.into());
        }
        Ok(out)
    }

    /// Bytes the attributes take (see [`entry_size`]): what the size limit
    /// is measured on. History is not counted, so a session that is
    /// rewritten often does not grow unwritable.
    #[must_use]
    pub fn state_size(&self) -> usize {
        self.attributes()
            .map(|a| a.iter().map(|(k, v)| entry_size(k, v)).sum())
            .unwrap_or(0)
    }

    /// Liveness at `now`.
    #[must_use]
    pub fn status(&self, now: Millis) -> Status {
        self.status_at(now, Some(self.deadline()))
    }

    /// [`status`](Self::status), with the deadline read only when it
    /// decides (`None`: the caller needs no more than whether it ended).
    fn status_at(&self, now: Millis, deadline: Option<Option<Millis>>) -> Status {
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
        match deadline {
            None | Some(None) => Status::Empty,
            Some(Some(d)) if now > d => Status::Expired,
            Some(Some(_)) => Status::Live,
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
            .map_range(ROOT, prefix_range(TOUCH))
            .filter_map(|item| match item.value {
                ValueRef::Scalar(ScalarValueRef::Timestamp(t) | ScalarValueRef::Int(t)) => {
                    u64::try_from(t).ok()
                }
                _ => None,
            })
            .max();
        Some(touched.map_or(created, |t| t.max(created)))
    }

    /// When the session expires unless accessed again; `None` for a
    /// document that holds no session.
    #[must_use]
    pub fn deadline(&self) -> Option<Millis> {
        let last = self.last_access()?;
        Some(deadline_of(
            last,
            self.max_idle_ms(),
            self.absolute_expiry_ms(),
        ))
    }

    /// `Invalidated` or `Rotated` once the session has ended for good.
    pub(super) fn ended(&self) -> Option<Status> {
        match self.status_at(0, None) {
            s @ (Status::Invalidated | Status::Rotated(_)) => Some(s),
            _ => None,
        }
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
        for item in self.doc.map_range(ROOT, prefix_range(&prefix)) {
            if !is_slot_of(&item.key, &prefix) {
                continue;
            }
            let ValueRef::Scalar(ScalarValueRef::Counter(n) | ScalarValueRef::Int(n)) = item.value
            else {
                return Err(Error::Corrupt {
                    key: key.to_owned(),
                });
            };
            total = Some(total.unwrap_or(0).saturating_add(n));
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

/// When a session last accessed at `last` expires, given its idle timeout
/// and absolute deadline (0 = none).
pub(super) fn deadline_of(last: Millis, max_idle_ms: u64, absolute_ms: Millis) -> Millis {
    let by_idle = if max_idle_ms == 0 {
        Millis::MAX
    } else {
        last.saturating_add(max_idle_ms)
    };
    let by_absolute = if absolute_ms == 0 {
        Millis::MAX
    } else {
        absolute_ms
    };
    by_idle.min(by_absolute)
}

/// What one attribute counts toward the session's size limit: its name
/// plus a fixed 5 bytes, and 8 bytes for an integer or its JSON text
/// otherwise.
#[must_use]
pub fn entry_size(name: &str, value: &serde_json::Value) -> usize {
    let value = if value.is_i64() {
        8
    } else {
        value.to_string().len()
    };
    5 + name.len() + value
}

/// The size of `entries` as [`entry_size`] counts them.
pub fn size_of_entries<'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
) -> usize {
    entries.into_iter().map(|(k, v)| entry_size(k, v)).sum()
}

/// The size of `entries` (as [`entry_size`] counts them) with `key` set to
/// `value`: what a write of `key` would leave.
pub fn size_with<'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
    key: &str,
    value: &serde_json::Value,
) -> usize {
    entries
        .into_iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(k, v)| entry_size(k, v))
        .sum::<usize>()
        + entry_size(key, value)
}

pub(super) fn scalar_to_json(key: &str, value: &Value<'_>) -> Result<serde_json::Value, Error> {
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
