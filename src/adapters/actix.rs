//! An [`actix_session::storage::SessionStore`] backed by a [`Node`]: an
//! actix-web app switches by replacing its store, and gains replication and
//! per-key merging.
//!
//! ```no_run
//! use actix_session::SessionMiddleware;
//! use actix_web::App;
//! use sessionmesh::adapters::actix::MeshStore;
//! use sessionmesh::{Config, Node};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::open(Config::new("./data/actix")).await?;
//! let store = MeshStore::new(node.clone());
//! // Shared by the cluster, kept across restarts (not `Key::generate()`).
//! let key = store.cookie_key()?;
//! // Was: SessionMiddleware::new(RedisSessionStore::new(..).await?, key)
//! let app = App::new().wrap(SessionMiddleware::new(store, key));
//! # let _ = app; Ok(()) }
//! ```
//!
//! actix-session keeps every value as JSON text; the store keeps them as
//! JSON values, so the other paths read the same attributes. See [the
//! adapters module](super) for how concurrent updates merge. With several
//! nodes behind a balancer, wrap [`TokenMiddleware`] outside the session
//! middleware: a user then sees their own writes on every node.

use std::collections::{BTreeMap, HashMap};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;
use serde_json::Value;

pub use super::actix_token::{TokenMiddleware, TokenService};
use super::diff::{self, BASE_KEY};
use super::token;
use crate::doc::{ExpiryMode, Op};
use crate::{Error, Node, SessionId};

/// Tries to draw an unused id before giving up.
const CREATE_ATTEMPTS: usize = 3;

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

    /// A key for [`SessionMiddleware`](actix_session::SessionMiddleware)'s
    /// cookies that every node of the cluster shares and that outlives a
    /// restart (from [`Node::cookie_secret`]); with `Key::generate()`
    /// instead, every session is lost when the process restarts.
    ///
    /// # Errors
    ///
    /// As [`Node::cookie_secret`].
    pub fn cookie_key(&self) -> Result<actix_web::cookie::Key, Error> {
        use sha2::{Digest, Sha512};
        let secret = self.node.cookie_secret()?;
        let derived = Sha512::new()
            .chain_update(b"sessionmesh actix cookies")
            .chain_update(secret)
            .finalize();
        Ok(actix_web::cookie::Key::from(&derived[..]))
    }
}

fn id_of(key: &SessionKey) -> Option<SessionId> {
    key.as_ref().parse().ok()
}

fn key_of(id: SessionId) -> Result<SessionKey, anyhow::Error> {
    SessionKey::try_from(id.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn ttl_ms(ttl: &Duration) -> u64 {
    u64::try_from(ttl.whole_milliseconds()).unwrap_or(0).max(1)
}

/// The state's values as JSON (actix-session holds JSON text).
fn parse(state: &HashMap<String, String>) -> Result<BTreeMap<String, Value>, anyhow::Error> {
    state
        .iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(v)
                .map_err(|e| anyhow::anyhow!("attribute {k:?} is not JSON: {e}"))?;
            Ok((k.clone(), value))
        })
        .collect()
}

fn expiry(ttl: &Duration) -> Op {
    Op::SetExpiry {
        mode: ExpiryMode::Inactivity,
        max_idle_ms: ttl_ms(ttl),
        absolute_ms: 0,
    }
}

fn other(e: &Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

impl SessionStore for MeshStore {
    async fn load(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<HashMap<String, String>>, LoadError> {
        let Some(id) = id_of(session_key) else {
            return Ok(None);
        };
        if token::refused() {
            return Err(LoadError::Other(other(&Error::Unreachable)));
        }
        let seen = token::seen(&self.node, &id);
        let Some(view) = self.node.load_seen(&id, seen.as_ref()).await.map_err(|e| {
            token::failed(&e);
            LoadError::Other(other(&e))
        })?
        else {
            return Ok(None);
        };
        token::shown(&self.node, &id, &view);
        let mut state: HashMap<String, String> = view
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        state.insert(
            BASE_KEY.to_owned(),
            Value::Object(diff::stamp(&view.attributes, &self.counters)).to_string(),
        );
        Ok(Some(state))
    }

    async fn save(
        &self,
        session_state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        let data = parse(&session_state).map_err(SaveError::Serialization)?;
        let mut ops = diff::full(&data);
        ops.push(expiry(ttl));
        for _ in 0..CREATE_ATTEMPTS {
            let id = SessionId::random();
            match self.node.create(&id, &ops).await {
                Ok(view) => {
                    token::shown(&self.node, &id, &view);
                    return key_of(id).map_err(SaveError::Other);
                }
                Err(Error::IdCollision) => {}
                Err(e) => return Err(SaveError::Other(other(&e))),
            }
        }
        Err(SaveError::Other(anyhow::anyhow!(
            "could not draw an unused session id"
        )))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let Some(id) = id_of(&session_key) else {
            return Err(UpdateError::Other(anyhow::anyhow!(
                "not a sessionmesh session key"
            )));
        };
        let data = parse(&session_state).map_err(UpdateError::Serialization)?;
        let mut ops = diff::ops(&data, &self.counters);
        ops.push(expiry(ttl));
        match self.node.commit(&id, &ops).await {
            Ok(Some(view)) => {
                token::shown(&self.node, &id, &view);
                Ok(session_key)
            }
            // Ended meanwhile by another request; the end wins.
            Ok(None) => {
                token::ended();
                Ok(session_key)
            }
            Err(e) => Err(UpdateError::Other(other(&e))),
        }
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &Duration,
    ) -> Result<(), anyhow::Error> {
        let Some(id) = id_of(session_key) else {
            return Ok(());
        };
        // A load is an access: it advances this node's last-access register.
        let seen = token::seen(&self.node, &id);
        let loaded = self.node.load_seen(&id, seen.as_ref()).await.map_err(|e| {
            token::failed(&e);
            other(&e)
        })?;
        if let Some(view) = loaded {
            token::shown(&self.node, &id, &view);
            if view.max_idle_ms != ttl_ms(ttl) {
                self.node
                    .commit(&id, &[expiry(ttl)])
                    .await
                    .map_err(|e| other(&e))?;
            }
        }
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        if let Some(id) = id_of(session_key) {
            self.node
                .commit(&id, &[Op::Invalidate])
                .await
                .map_err(|e| other(&e))?;
            token::ended();
        }
        Ok(())
    }
}

/// Every attribute of an actix session, as JSON, without the base marker.
#[must_use]
pub fn entries(session: &actix_session::Session) -> BTreeMap<String, Value> {
    session
        .entries()
        .iter()
        .filter(|(k, _)| k.as_str() != BASE_KEY)
        .filter_map(|(k, v)| serde_json::from_str(v).ok().map(|v| (k.clone(), v)))
        .collect()
}

/// Whether setting `key` to `value` would take the session over the node's
/// size limit, measured as the node measures it. Check before inserting to
/// answer `413`: a save over the limit fails as a server error.
#[must_use]
pub fn would_exceed(
    node: &Node,
    session: &actix_session::Session,
    key: &str,
    value: &Value,
) -> bool {
    let size = crate::doc::size_with(&entries(session), key, value);
    size > node.config().max_session_bytes()
}
