//! A [`tower_sessions::SessionStore`] backed by a [`Node`]: an app that uses
//! tower-sessions switches by replacing its store, and gains replication and
//! per-key merging.
//!
//! ```
//! use axum::{routing::get, Router};
//! use sessionmesh::adapters::tower_sessions::MeshStore;
//! use sessionmesh::{Config, Node};
//! use tower_sessions::{Session, SessionManagerLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sessionmesh::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let node = Node::open(Config::new(dir.path())).await?;
//! // Was: SessionManagerLayer::new(MemoryStore::default())
//! let layer = SessionManagerLayer::new(MeshStore::new(node.clone()));
//! let app: Router = Router::new()
//!     .route("/", get(|s: Session| async move { s.insert("k", 1).await.is_ok().to_string() }))
//!     .layer(layer);
//! # node.shutdown().await
//! # }
//! ```
//!
//! See [the adapters module](super) for how concurrent saves merge. With
//! several nodes behind a balancer, add [`TokenLayer`] outside the session
//! layer: a user then sees their own writes on every node.

use std::collections::BTreeMap;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use super::diff::{self, BASE_KEY};
use super::token;
pub use super::tower_token::{TokenLayer, TokenService};
use crate::doc::{ExpiryMode, Op};
use crate::{Error, Node, SessionId, SessionView};

/// Tries to draw an unused id before giving up.
const CREATE_ATTEMPTS: usize = 3;
/// tower-sessions' own default lifetime, used when a session has no deadline.
const TWO_WEEKS_MS: u64 = 14 * 24 * 3_600_000;

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MeshStore {
    node: Node,
    counters: diff::Counters,
}

impl MeshStore {
    /// A store over `node`.
    #[must_use]
    pub fn new(node: Node) -> Self {
        Self {
            node,
            counters: diff::Counters::default(),
        }
    }

    /// Declares `keys` as counters: a save in which one of them went from
    /// the integer it held when the request loaded it (or from nothing) to
    /// another integer is stored as an increment by the difference, so
    /// read-modify-write increments (`n = n + 1`) made concurrently, on one
    /// node or several, add up exactly as sessionmesh's own `increment`
    /// does. Other keys keep last-writer-wins per key.
    #[must_use]
    pub fn with_counters(mut self, keys: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.counters = std::sync::Arc::new(keys.into_iter().map(Into::into).collect());
        self
    }

    /// The node behind the store.
    #[must_use]
    pub fn node(&self) -> &Node {
        &self.node
    }
}

/// Whether a tower-sessions error is sessionmesh's size limit (answer `413`).
#[must_use]
pub fn is_too_large(err: &tower_sessions::session::Error) -> bool {
    matches!(err, tower_sessions::session::Error::Store(session_store::Error::Backend(m)) if m.starts_with(TOO_LARGE))
}

const TOO_LARGE: &str = "too large: ";

fn backend(e: &Error) -> session_store::Error {
    match e {
        Error::TooLarge { .. } => session_store::Error::Backend(format!("{TOO_LARGE}{e}")),
        Error::Doc(_) => session_store::Error::Encode(e.to_string()),
        _ => session_store::Error::Backend(e.to_string()),
    }
}

fn sid(id: &Id) -> SessionId {
    SessionId::from_bytes(id.0.to_le_bytes())
}

fn ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0)
        .max(1)
}

/// The writes a record implies (all of it for a new session, the changes
/// since load otherwise), plus its expiry date.
fn record_ops(record: &Record, new: bool, counters: &diff::Counters) -> Vec<Op> {
    let mut ops = if new {
        diff::full(&record.data)
    } else {
        diff::ops(&record.data, counters)
    };
    let absolute_ms = ms(record.expiry_date);
    let loaded = record
        .data
        .get(BASE_KEY)
        .and_then(|b| b.get("exp"))
        .and_then(serde_json::Value::as_u64);
    if loaded != Some(absolute_ms) {
        ops.push(Op::SetExpiry {
            mode: ExpiryMode::AtDateTime,
            max_idle_ms: 0,
            absolute_ms,
        });
    }
    ops
}

fn to_record(id: Id, view: SessionView, now_ms: u64, counters: &diff::Counters) -> Record {
    let deadline = match (view.absolute_expiry_ms, view.max_idle_ms) {
        (0, 0) => now_ms.saturating_add(TWO_WEEKS_MS),
        (0, idle) => now_ms.saturating_add(idle),
        (absolute, _) => absolute,
    };
    let mut stamp = diff::stamp(&view.attributes, counters);
    stamp.insert("exp".into(), view.absolute_expiry_ms.into());
    let mut data: std::collections::HashMap<String, serde_json::Value> =
        view.attributes.into_iter().collect();
    data.insert(BASE_KEY.to_owned(), serde_json::Value::Object(stamp));
    let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(deadline) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Record {
        id,
        data,
        expiry_date,
    }
}

#[async_trait]
impl SessionStore for MeshStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // `cycle_id` creates the new id from the old record, marker included:
        // everything is written, not just the changes.
        let ops = record_ops(record, true, &self.counters);
        for attempt in 0..CREATE_ATTEMPTS {
            let id = sid(&record.id);
            match self.node.create(&id, &ops).await {
                Ok(view) => {
                    token::shown(&self.node, &id, &view);
                    return Ok(());
                }
                Err(Error::IdCollision) if attempt + 1 < CREATE_ATTEMPTS => {
                    record.id = Id::default();
                }
                Err(e) => return Err(backend(&e)),
            }
        }
        Err(session_store::Error::Backend(
            "could not draw an unused session id".into(),
        ))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let ops = record_ops(record, false, &self.counters);
        let id = sid(&record.id);
        match self.node.commit(&id, &ops).await {
            Ok(Some(view)) => {
                token::shown(&self.node, &id, &view);
                Ok(())
            }
            // Ended meanwhile (invalidated or rotated by another request):
            // the end wins over this write.
            Ok(None) => {
                tracing::debug!("save to a session that ended meanwhile; the end wins");
                token::ended();
                Ok(())
            }
            Err(e) => Err(backend(&e)),
        }
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        if token::refused() {
            return Err(backend(&Error::Unreachable));
        }
        let id = sid(session_id);
        let seen = token::seen(&self.node, &id);
        let view = self.node.load_seen(&id, seen.as_ref()).await.map_err(|e| {
            token::failed(&e);
            backend(&e)
        })?;
        if let Some(view) = &view {
            token::shown(&self.node, &id, view);
        }
        Ok(view.map(|v| to_record(*session_id, v, self.node.now_ms(), &self.counters)))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.node
            .commit(&sid(session_id), &[Op::Invalidate])
            .await
            .map_err(|e| backend(&e))?;
        token::ended();
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for MeshStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.node.sweep().await.map_err(|e| backend(&e))?;
        Ok(())
    }
}

/// The attributes of a loaded record without the marker.
#[must_use]
pub fn attributes(record: &Record) -> BTreeMap<String, serde_json::Value> {
    record
        .data
        .iter()
        .filter(|(k, _)| k.as_str() != BASE_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every attribute of `session` as it was loaded (tower-sessions' `Session`
/// cannot list its keys; the base marker can). Writes made earlier in the
/// same request are not listed.
///
/// # Errors
///
/// What `Session::get_value` returns when the store fails.
pub async fn entries(
    session: &tower_sessions::Session,
) -> Result<BTreeMap<String, serde_json::Value>, tower_sessions::session::Error> {
    let Some(marker) = session.get_value(BASE_KEY).await? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    if let Some(names) = marker.get("h").and_then(serde_json::Value::as_object) {
        for name in names.keys() {
            if let Some(v) = session.get_value(name).await? {
                out.insert(name.clone(), v);
            }
        }
    }
    Ok(out)
}

/// Whether setting `key` to `value` would take the session over the node's
/// size limit, measured as the node measures it. Check before inserting to
/// answer `413`: a save over the limit fails, and tower-sessions turns a
/// failed save into a `500`.
///
/// # Errors
///
/// What `Session::get_value` returns when the store fails.
pub async fn would_exceed(
    node: &Node,
    session: &tower_sessions::Session,
    key: &str,
    value: &serde_json::Value,
) -> Result<bool, tower_sessions::session::Error> {
    let size = crate::doc::size_with(&entries(session).await?, key, value);
    Ok(size > node.config().max_session_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cycled_record_keeps_its_data_under_the_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = MeshStore::new(Node::open(crate::Config::new(dir.path())).await.unwrap());
        let mut record = Record {
            id: Id::default(),
            data: [("n".to_owned(), serde_json::json!(42))]
                .into_iter()
                .collect(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::days(1),
        };
        store.create(&mut record).await.unwrap();
        let loaded = store.load(&record.id).await.unwrap().unwrap();
        assert_eq!(attributes(&loaded)["n"], 42);
        // What cycle_id does: delete the old id, create the loaded record anew.
        let mut moved = loaded.clone();
        moved.id = Id::default();
        store.delete(&loaded.id).await.unwrap();
        store.create(&mut moved).await.unwrap();
        assert!(store.load(&loaded.id).await.unwrap().is_none());
        let again = store.load(&moved.id).await.unwrap().unwrap();
        assert_eq!(attributes(&again)["n"], 42);
    }

    #[tokio::test]
    async fn create_draws_a_new_id_on_collision_and_expired_deletion_sweeps() {
        let dir = tempfile::tempdir().unwrap();
        let store = MeshStore::new(Node::open(crate::Config::new(dir.path())).await.unwrap());
        let expiry_date = OffsetDateTime::now_utc() + time::Duration::days(1);
        let mut first = Record {
            id: Id::default(),
            data: std::collections::HashMap::new(),
            expiry_date,
        };
        store.create(&mut first).await.unwrap();
        let mut second = Record {
            id: first.id,
            data: std::collections::HashMap::new(),
            expiry_date,
        };
        store.create(&mut second).await.unwrap();
        assert_ne!(second.id, first.id, "an id in use is never reused");
        store.delete(&first.id).await.unwrap();
        store.delete_expired().await.unwrap();
        assert!(store.load(&first.id).await.unwrap().is_none());
        assert!(store.load(&second.id).await.unwrap().is_some());
    }
}
