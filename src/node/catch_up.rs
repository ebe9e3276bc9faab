//! Serving a request at least the state its session token names: wait for
//! the change in flight, pull it from the peers once, then let the
//! stale-read policy decide (see [`Node::load_seen`](crate::Node::load_seen)).

use tokio::time::Instant;

use super::stats::{Count, Counters};
use crate::engine::{Engine, Loaded, SessionView, Version};
use crate::id::DocKey;
use crate::net::StaleReads;
use crate::replicator::Replicator;
use crate::store::Durability;
use crate::tasks::blocking;
use crate::Error;

/// The live session `key`, holding at least `seen`, within the replicator's
/// catch-up bound.
pub(super) async fn load_seen(
    engine: &Engine,
    repl: &Replicator,
    counters: &Counters,
    key: DocKey,
    seen: &Version,
) -> Result<Option<SessionView>, Error> {
    let fsync = engine.config().durability() == Durability::Fsync;
    let started = Instant::now();
    let bound = repl.config().catch_up();
    // The bound is at most a minute (validated at open).
    let (deadline, first_wait) = (started + bound, started + bound / 4);
    let mut arrivals = repl.arrivals();
    let (mut waited, mut pulled, mut gone_elsewhere) = (false, false, false);
    let behind = loop {
        let (found, pushes) = blocking(fsync, || engine.load(key, Some(seen)))?;
        repl.push(pushes, false).await?;
        let behind = match found {
            Loaded::Live(view) => {
                if waited {
                    counters.bump(Count::CaughtUp);
                }
                return Ok(Some(view));
            }
            // Expired here: a peer may hold later accesses; ask once.
            Loaded::Expired if !pulled => {
                pulled = true;
                repl.fetch(key).await;
                continue;
            }
            Loaded::Gone | Loaded::Expired => return Ok(None),
            Loaded::Missing if gone_elsewhere => return Ok(None),
            Loaded::Behind(view) => Some(view),
            Loaded::Missing => None,
        };
        waited = true;
        let now = Instant::now();
        if now >= deadline {
            break behind;
        }
        if !pulled && now >= first_wait {
            // The change did not arrive by itself: ask the peers, once.
            pulled = true;
            gone_elsewhere = repl
                .catch_up(key, deadline, || engine.holds(key, seen).unwrap_or(false))
                .await;
            continue;
        }
        let until = if pulled { deadline } else { first_wait };
        if let Ok(Err(_closed)) = tokio::time::timeout_at(until, arrivals.changed()).await {
            tokio::time::sleep_until(until).await;
        }
    };
    let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match (behind, repl.config().stale_reads()) {
        (Some(mut view), StaleReads::Serve) => {
            tracing::warn!(session = %key.short(), waited_ms, "serving an older state than the client saw");
            counters.bump(Count::ServedStale);
            view.behind = true;
            Ok(Some(view))
        }
        (Some(_), StaleReads::Refuse) => {
            tracing::warn!(session = %key.short(), waited_ms, "behind the client's token; refused");
            counters.bump(Count::RefusedBehind);
            Err(Error::Behind { waited_ms })
        }
        (None, _) => {
            tracing::warn!(session = %key.short(), waited_ms, "a session the client's token proves exists is not reachable; refused");
            counters.bump(Count::RefusedUnreachable);
            Err(Error::Unreachable)
        }
    }
}
