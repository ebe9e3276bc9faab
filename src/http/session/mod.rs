use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::StatusCode;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

mod commit;
mod principal;
mod transient;

/// A transient value, shared with the node's map.
type TransientValue = std::sync::Arc<dyn std::any::Any + Send + Sync>;

use super::limit::FetchLimiter;
use super::Expiry;
use crate::doc::{size_of_entries, size_with, ExpiryMode, Op};
use crate::{Error, Node, SessionId, SessionView, Version};

/// Tries to draw an unused id before giving up (a collision of 128 random
/// bits does not happen by chance; this bounds a broken random source).
const CREATE_ATTEMPTS: usize = 3;

/// The session of one request: read it, write it, rotate or end it.
///
/// Cheap to clone; clones share the request's state. Reads come from the
/// node the first time and from the request's view afterwards; writes are
/// recorded and committed together when the handler returns or on
/// [`save`](Self::save).
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// use sessionmesh::http::{Session, SessionLayer};
/// use sessionmesh::{Config, Node};
///
/// async fn visits(session: Session) -> Result<String, sessionmesh::Error> {
///     let n = session.increment("visits", 1).await?;
///     Ok(format!("visit number {n}"))
/// }
///
/// # async fn app() -> Result<Router, sessionmesh::Error> {
/// let node = Node::open(Config::new("./data/doc-example")).await?;
/// let app = Router::new().route("/", get(visits)).layer(SessionLayer::new(node));
/// # Ok(app) }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: Node,
    cookie_id: Option<SessionId>,
    /// What the request's session token says the client has seen.
    seen: Option<Version>,
    expiry: Option<Expiry>,
    /// The per-client limit on lookups at the peers, and the client.
    gate: Option<(Arc<FetchLimiter>, std::net::IpAddr)>,
    // std Mutex: never held across an `.await` (loading copies out first).
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    /// The session's id: loaded, or drawn for a session not created yet.
    id: Option<SessionId>,
    /// `id` is drawn but the node does not hold the session yet.
    is_new: bool,
    view: BTreeMap<String, Value>,
    expiry: Option<(ExpiryMode, u64, u64)>,
    pending: Vec<Op>,
    rotate_to: Option<SessionId>,
    set_cookie: bool,
    remove_cookie: bool,
    /// The state the request sees (for the session token).
    version: Option<Version>,
    /// Served older than the client's token (stale reads allowed).
    behind: bool,
    /// The node could not serve the state the client's token names.
    unavailable: Option<Unavailable>,
    /// Transient values set (`Some`) or removed (`None`) while the id the
    /// session will live under is not settled (new, or rotating).
    transients: Vec<(String, Option<TransientValue>)>,
}

/// Why the session could not be served at all (both answer `503`).
#[derive(Debug, Clone, Copy)]
enum Unavailable {
    Behind { waited_ms: u64 },
    Unreachable,
}

impl Unavailable {
    fn of(e: &Error) -> Option<Self> {
        match e {
            Error::Behind { waited_ms } => Some(Self::Behind {
                waited_ms: *waited_ms,
            }),
            Error::Unreachable => Some(Self::Unreachable),
            _ => None,
        }
    }

    fn error(self) -> Error {
        match self {
            Self::Behind { waited_ms } => Error::Behind { waited_ms },
            Self::Unreachable => Error::Unreachable,
        }
    }
}

impl Session {
    pub(crate) fn new(
        node: Node,
        cookie_id: Option<SessionId>,
        seen: Option<Version>,
        expiry: Option<Expiry>,
        gate: Option<(Arc<FetchLimiter>, std::net::IpAddr)>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node,
                cookie_id,
                seen,
                expiry,
                gate,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The session's id, once there is one: a loaded session's id, or the id
    /// drawn for a new session at its first write (before it is saved).
    #[must_use]
    pub fn id(&self) -> Option<SessionId> {
        self.state().id
    }

    async fn ensure_loaded(&self) -> Result<(), Error> {
        {
            let st = self.state();
            if st.loaded {
                return Ok(());
            }
            // Refused once already: one request waits and asks the peers
            // once, however often the handler asks again.
            if let Some(why) = st.unavailable {
                return Err(why.error());
            }
        }
        let loaded = match self.inner.cookie_id {
            Some(id) => {
                let node = &self.inner.node;
                let found = match (&self.inner.seen, &self.inner.gate) {
                    (None, Some((limit, client))) => {
                        node.load_gated(&id, &|| limit.allow(*client)).await
                    }
                    (seen, _) => node.load_seen(&id, seen.as_ref()).await,
                };
                match found {
                    Ok(view) => view.map(|v| (id, v)),
                    Err(e) => {
                        // Remembered, so the response is a 503 whatever the
                        // handler makes of the error.
                        if let Some(why) = Unavailable::of(&e) {
                            self.state().unavailable = Some(why);
                        }
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let mut st = self.state();
        if !st.loaded {
            st.loaded = true;
            if let Some((id, view)) = loaded {
                st.id = Some(id);
                adopt(&mut st, view);
                // A sliding cookie is refreshed whenever the session is used.
                st.set_cookie |= st
                    .expiry
                    .is_some_and(|(m, _, _)| m == ExpiryMode::Inactivity);
            }
        }
        Ok(())
    }

    /// Reads attribute `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Doc`] when the value does not deserialize into `T`;
    /// [`Error::Store`] when the session cannot be read.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.ensure_loaded().await?;
        let value = self.state().view.get(key).cloned();
        decode(key, value)
    }

    /// Every attribute, as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    pub async fn entries(&self) -> Result<BTreeMap<String, Value>, Error> {
        self.ensure_loaded().await?;
        Ok(self.state().view.clone())
    }

    /// Sets attribute `key`, creating the session if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Doc`] when `value` does not serialize to JSON;
    /// [`Error::TooLarge`] when the session would exceed its size limit.
    /// Nothing is recorded in either case.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        let value = serde_json::to_value(&value).map_err(crate::doc::Error::Serialize)?;
        let json = value.to_string();
        self.ensure_loaded().await?;
        let limit = self.inner.node.config().max_session_bytes();
        let mut st = self.state();
        // Refused here, at the call site; the node checks again at commit,
        // against the latest document.
        let size = size_with(&st.view, key, &value);
        if size > limit && size > size_of_entries(&st.view) {
            return Err(Error::TooLarge { size, limit });
        }
        self.begin_write(&mut st);
        st.pending.push(Op::Insert {
            key: key.to_owned(),
            json,
        });
        st.view.insert(key.to_owned(), value);
        Ok(())
    }

    /// Removes attribute `key`, returning its old value.
    ///
    /// # Errors
    ///
    /// [`Error::Doc`] when the old value does not deserialize into `T` (the
    /// attribute is removed all the same); [`Error::Store`].
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let old = self.remove_value(key).await?;
        decode(key, old)
    }

    /// Removes attribute `key`, returning its old value as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    pub async fn remove_value(&self, key: &str) -> Result<Option<Value>, Error> {
        self.ensure_loaded().await?;
        let mut st = self.state();
        if st.id.is_none() {
            return Ok(None);
        }
        let old = st.view.remove(key);
        st.pending.push(Op::Remove {
            key: key.to_owned(),
        });
        Ok(old)
    }

    /// Adds `by` to the counter `key` (created at 0) and returns the total
    /// this request sees. Concurrent increments on any nodes add up; call
    /// [`save`](Self::save) first to read the merged total.
    ///
    /// # Errors
    ///
    /// [`Error::Doc`] when `key` holds something other than an integer or
    /// the sum overflows; nothing is recorded.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, Error> {
        self.ensure_loaded().await?;
        let mut st = self.state();
        let current = match st.view.get(key) {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| crate::doc::Error::NotACounter {
                key: key.to_owned(),
            })?,
        };
        let new = current
            .checked_add(by)
            .ok_or_else(|| crate::doc::Error::Overflow {
                key: key.to_owned(),
            })?;
        self.begin_write(&mut st);
        st.pending.push(Op::Increment {
            key: key.to_owned(),
            by,
        });
        st.view.insert(key.to_owned(), new.into());
        Ok(new)
    }

    /// Removes every attribute; the session itself lives on.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    pub async fn clear(&self) -> Result<(), Error> {
        self.ensure_loaded().await?;
        let mut st = self.state();
        if st.id.is_some() {
            st.view.clear();
            st.pending.push(Op::Clear);
        }
        Ok(())
    }

    /// Ends the session on every node at once (it wins over any concurrent
    /// write) and sends a removal cookie. A later write in the same request
    /// starts a new session with a new id.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the invalidation cannot be persisted; the
    /// session is then still alive.
    pub async fn invalidate(&self) -> Result<(), Error> {
        self.ensure_loaded().await?;
        let (id, is_new) = {
            let st = self.state();
            (st.id, st.is_new)
        };
        if let (Some(id), false) = (id, is_new) {
            self.inner.node.commit(&id, &[Op::Invalidate]).await?;
        }
        self.end_transients(id);
        let mut st = self.state();
        *st = State {
            loaded: true,
            remove_cookie: true,
            ..State::default()
        };
        Ok(())
    }

    /// Moves the session to a new id, keeping its attributes, and kills the
    /// old id everywhere. Call it on every privilege change (login).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    pub async fn cycle_id(&self) -> Result<(), Error> {
        self.ensure_loaded().await?;
        let mut st = self.state();
        match (st.id, st.is_new) {
            (Some(_), false) => st.rotate_to = Some(SessionId::random()),
            (Some(_), true) => st.id = Some(SessionId::random()),
            (None, _) => {}
        }
        Ok(())
    }

    /// Changes when the session expires (this session only).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), Error> {
        self.ensure_loaded().await?;
        let mut st = self.state();
        self.begin_write(&mut st);
        let op = self.expiry_op(expiry, &st);
        if let Op::SetExpiry {
            mode,
            max_idle_ms,
            absolute_ms,
        } = op
        {
            st.expiry = Some((mode, max_idle_ms, absolute_ms));
        }
        st.pending.push(op);
        Ok(())
    }
}

/// An attribute's JSON value as `T`.
fn decode<T: DeserializeOwned>(key: &str, value: Option<Value>) -> Result<Option<T>, Error> {
    value
        .map(|v| {
            serde_json::from_value(v).map_err(|source| {
                crate::doc::Error::Deserialize {
                    key: key.to_owned(),
                    source,
                }
                .into()
            })
        })
        .transpose()
}

fn adopt(st: &mut State, view: SessionView) {
    st.expiry = Some((view.expiry, view.max_idle_ms, view.absolute_expiry_ms));
    st.version = Some(view.version);
    st.behind |= view.behind;
    st.view = view.attributes;
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "SessionLayer is not installed on this route",
        ))
    }
}

/// Lets handlers return `Result<_, sessionmesh::Error>`: `413` for a session
/// over its size limit, `503` with `Retry-After` when this node cannot serve
/// the state the client has seen, `500` for everything else. The body names
/// only the status; details go to the log, not to the client.
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let status = match &self {
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Behind { .. } | Error::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %self, %status, "session error answered");
        let body = status.canonical_reason().unwrap_or_default();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return (status, [(http::header::RETRY_AFTER, "1")], body).into_response();
        }
        (status, body).into_response()
    }
}
