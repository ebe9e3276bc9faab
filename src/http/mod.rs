//! The tower glue: [`SessionLayer`] (one `Layer` + `Service` pair over
//! tower-cookies) and the [`Session`] handle that handlers receive, as an
//! axum extractor or from the request extensions.
//!
//! # A request's life
//!
//! 1. The layer reads the session cookie. Nothing else happens yet (lazy).
//! 2. The first time the handler touches the session, it is loaded from the
//!    node. An id that is unknown, expired, invalidated or rotated is never
//!    adopted: the handler sees an empty session, and a write gives it a
//!    fresh id (session-fixation defence).
//! 3. Writes are recorded as operations and mirrored into the request's view.
//! 4. When the handler returns (or calls [`Session::save`]), the operations
//!    are applied to the *latest* document on the node as one commit and
//!    persisted before the response goes out. Concurrent requests on one
//!    session therefore merge.
//! 5. A cookie is set only when the session changed; invalidation sends a
//!    removal cookie with the same path, domain, `Secure` and `HttpOnly`.
//!
//! # Session tokens
//!
//! With replication, a second cookie (`<name>_seen`) carries a session
//! token: which state of the session this client has seen (see
//! [`Node::token`](crate::Node::token)). It is set whenever a response
//! shows the client a state other than the one its token names. The next
//! request reads it, and whichever node serves it first catches up to that
//! state ([`Node::load_seen`](crate::Node::load_seen)): the user sees their
//! own writes on every node and never an older state than before. A node
//! that cannot catch up in time answers `503` with `Retry-After: 1` (or,
//! under [`StaleReads::Serve`](crate::net::StaleReads::Serve), serves what
//! it has with [`STALE_HEADER`]); one that cannot find a session the token
//! proves exists answers `503` too and never starts a fresh session in its
//! place.
//!
//! A commit that cannot be persisted turns the response into a `500` (or
//! `413` when the session would exceed its size limit): the client is never
//! told a write happened that did not.

mod config;
mod limit;
mod service;
mod session;

pub use config::{CookieConfig, Expiry};
pub use service::{SessionLayer, SessionService, STALE_HEADER};
pub use session::Session;
