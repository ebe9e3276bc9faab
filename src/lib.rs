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
//! | module | what it holds |
//! |---|---|
//! | [`http`] | [`SessionLayer`](http::SessionLayer), the [`Session`](http::Session) extractor, cookie options |
//! | [`Node`] | the public handle: open, load, commit, rotate, sweep, shut down ([`Config`]) |
//! | [`net`] | replication over libp2p: [`net::Config`], [`net::Replication`], the wire protocol |
//! | [`store`] | RocksDB layout, [`Durability`], the document cache |
//! | [`doc`] | [`SessionDoc`](doc::SessionDoc): one session as an automerge document, pure |
//! | [`id`] | [`SessionId`], [`DocKey`], [`NodeId`] |
//! | [`clock`] | [`Clock`], [`SystemClock`], [`ManualClock`] for tests |

pub mod adapters;
pub mod clock;
pub mod doc;
mod error;
pub mod http;
pub mod id;
pub mod net;
mod node;
pub mod store;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::Error;
pub use id::{DocKey, NodeId, ParseIdError, SessionId};
pub use node::{Config, Node, SessionView, SweepReport};
pub use store::Durability;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
