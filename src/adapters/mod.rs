//! Drop-in session stores for the session managers applications already
//! use: an app switches to sessionmesh by replacing its store.
//!
//! # Merging through a whole-record interface
//!
//! Both frameworks hand the store the request's *final* session state, with
//! no base version, so a store cannot tell on its own which keys the
//! request changed. These stores put a small marker under the key
//! `BASE_KEY` when they load a session: a hash of every value as loaded.
//! On save, only the keys whose values differ from what was loaded become
//! writes (and keys that were loaded but are gone become removals), applied
//! to the *latest* document. Two concurrent requests that write different
//! keys therefore both keep their writes, on one node or on two. A session
//! whose data the application cleared has no marker, so its save replaces
//! everything, as the application asked.
//!
//! Semantics per path, plainly:
//!
//! | | native `SessionLayer` | tower-sessions store | actix-session store |
//! |---|---|---|---|
//! | different keys, concurrent | merged | merged | merged |
//! | same key, concurrent | one deterministic winner | one deterministic winner | one deterministic winner |
//! | counters | `increment`: concurrent increments add up | keys declared with `MeshStore::with_counters`: a read-modify-write from integer a to b is saved as an increment of b − a, so concurrent increments add up; other keys: last writer wins | same as tower-sessions |
//! | logout / id rotation | invalidation wins | `delete`/`cycle_id` invalidate the old id; wins | `purge`/`renew` likewise |
//! | the marker | none | visible as one extra key in `Session` data | visible as one extra entry |
//!
//! The marker cannot be hidden: neither framework hands the store anything
//! but the session's data between a load and the save that follows, and a
//! base kept in the store by session id would be the wrong one for one of
//! two concurrent requests. So a loaded session holds one key more than the
//! application wrote, `__sessionmesh_base` ([`BASE_KEY`]):
//! tower-sessions' `Session::is_empty()` is `false` for a loaded session
//! and `Session::len`/key listings count it (test your own keys instead),
//! and the application must never write or remove that key itself.

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "actix")]
mod actix_token;
#[cfg(any(feature = "tower-sessions", feature = "actix"))]
mod diff;
#[cfg(any(feature = "tower-sessions", feature = "actix"))]
mod token;
#[cfg(feature = "tower-sessions")]
pub mod tower_sessions;
#[cfg(feature = "tower-sessions")]
mod tower_token;

#[cfg(any(feature = "tower-sessions", feature = "actix"))]
pub use diff::BASE_KEY;
