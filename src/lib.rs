//! # sessionmesh
//!
//! HTTP sessions held as [automerge] CRDT documents, persisted in an
//! embedded RocksDB and served through a tower cookie middleware. Every
//! write is one automerge commit on the latest document, so concurrent
//! requests on one session merge instead of overwriting each other;
//! invalidation wins over every concurrent write; expiry is decided from
//! replicated data on every access. With a [`net::Config`], nodes replicate
//! over libp2p: every commit is pushed to every peer, anti-entropy repairs
//! what pushes missed, and an unknown id is fetched from peers before it is
//! treated as unknown.
//!
//! ## Example
//!
//! ```
//! use axum::{routing::post, Router};
//! use sessionmesh::http::{Session, SessionLayer};
//! use sessionmesh::{Config, Node};
//! use tower::ServiceExt as _;
//!
//! async fn login(session: Session) -> Result<&'static str, sessionmesh::Error> {
//!     session.cycle_id().await?; // new id on every privilege change
//!     session.insert("user", "ada").await?;
//!     session.increment("logins", 1).await?;
//!     Ok("welcome")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let node = Node::open(Config::new(dir.path())).await?;
//! let app = Router::new()
//!     .route("/login", post(login))
//!     .layer(SessionLayer::new(node.clone()));
//!
//! let req = http::Request::post("/login").body(axum::body::Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert!(res.headers()["set-cookie"].to_str()?.starts_with("id="));
//! assert_eq!(node.session_count(), 1);
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## Modules
//!
//! Each layer knows only the ones below it; `docs/ARCHITECTURE.md` in the
//! repository tells the whole story (write path, replication protocol).
//!
//! | module | what it holds |
//! |---|---|
//! | [`http`] | [`SessionLayer`](http::SessionLayer), the [`Session`](http::Session) extractor, cookie options |
//! | [`adapters`] | drop-in stores for tower-sessions and actix-session (cargo features) |
//! | [`Node`] | the public handle: open, load, commit, rotate, sweep, shut down ([`Config`]) |
//! | `replicator` | (internal) pushes, sync exchanges, anti-entropy, fetch on miss, answers to peers |
//! | `engine` | (internal) the sessions, synchronously: document cache, writes, sweeps |
//! | `tasks` | (internal) the owner of every background task of a node |
//! | [`net`] | the libp2p network: [`net::Config`], [`net::Replication`], the [`net::Transport`] seam and its messages |
//! | [`store`] | RocksDB layout, [`Durability`] |
//! | [`doc`] | [`Op`](doc::Op): what a request does to a session; the automerge document behind it (internal) |
//! | [`id`] | [`SessionId`], [`DocKey`], [`NodeId`] |
//! | [`clock`] | [`Clock`], [`SystemClock`], [`ManualClock`] for tests |
//! | [`events`] | session lifecycle events ([`Node::subscribe`]) |
//! | [`metrics`] | the Prometheus series [`Node::metrics`] renders |
//!
//! ## Cargo features
//!
//! - `tower-sessions`: `adapters::tower_sessions::MeshStore`.
//! - `actix`: `adapters::actix::MeshStore`.
//! - `testing`: test support, not a stable API — nodes with faulty
//!   storage (`testing`), and the internals this repository's property
//!   tests and benchmarks drive (the session document, the wire codec).

pub mod adapters;
pub mod clock;
mod config;
pub mod doc;
mod engine;
mod error;
pub mod events;
pub mod http;
pub mod id;
pub mod metrics;
pub mod net;
mod node;
mod replicator;
pub mod store;
mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
mod token;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use config::Config;
pub use engine::{SessionView, SweepReport, Version, PRINCIPAL_ATTRIBUTE};
pub use error::Error;
pub use id::{DocKey, NodeId, ParseIdError, SessionId};
pub use node::{Fingerprint, Node, Stats};
pub use store::Durability;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
