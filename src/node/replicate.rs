//! The sending side of replication: push after commit through the
//! [outbox](super::outbox) (waiting for acks under `Replication::Sync`),
//! sync rounds, anti-entropy and fetch on miss. Storage work runs through
//! [`run_sync`] (whole sync batches through [`run_batch`]) so it never
//! stalls a worker that other tasks wait on.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use serde_bytes::{ByteArray, ByteBuf};

use super::handle::{run_batch, run_sync, Inner};
use super::inner::Pushes;
use super::replica::{Step, DIGEST_PAGE};
use crate::id::DocKey;
use crate::net::{self, Replication, Request, Response, SyncItem, SyncPolicy, Transport};
use crate::Error;

/// Rounds of one sync exchange at most; automerge needs a handful.
const MAX_ROUNDS: usize = 32;
/// Documents per sync request during anti-entropy.
const SYNC_BATCH: usize = 64;
/// Sync batches in flight at once with one peer during anti-entropy.
const SYNC_CONCURRENCY: usize = 8;

fn unexpected(peer: PeerId, what: &str) -> Error {
    net::Error::Request {
        peer,
        reason: format!("unexpected answer to {what}"),
    }
    .into()
}

/// Queues `pushes` for every connected peer (see [`super::outbox`]). With
/// `wait` and `Replication::Sync { acks }`, returns once `acks` peers
/// persisted them (or the sync timeout passed, then the sync policy
/// decides).
pub(crate) async fn push(inner: &Arc<Inner>, pushes: Pushes, wait: bool) -> Result<(), Error> {
    let Some(repl) = inner.repl.get() else {
        return Ok(());
    };
    let (net, cfg) = (Arc::clone(&repl.transport), &repl.config);
    if pushes.is_empty() {
        return Ok(());
    }
    let peers = net.peers().await;
    let acks = match cfg.replication {
        Replication::Sync { acks } if wait && acks > 0 => acks,
        _ => {
            for peer in peers {
                inner.outbox.send(inner, &net, peer, &pushes, false);
            }
            return Ok(());
        }
    };
    let mut acked = 0;
    {
        let mut all: FuturesUnordered<_> = peers
            .iter()
            .map(|p| {
                let receivers = inner.outbox.send(inner, &net, *p, &pushes, true);
                async move {
                    for rx in receivers {
                        if !rx.await.unwrap_or(false) {
                            return false;
                        }
                    }
                    true
                }
            })
            .collect();
        let deadline = tokio::time::sleep(cfg.sync_timeout);
        tokio::pin!(deadline);
        while acked < acks {
            tokio::select! {
                next = all.next() => match next {
                    Some(true) => acked += 1,
                    Some(false) => {}
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
    }
    if acked >= acks {
        return Ok(());
    }
    match cfg.sync_policy {
        SyncPolicy::Fail => Err(Error::NotReplicated {
            acked,
            wanted: acks,
        }),
        SyncPolicy::Degrade => {
            tracing::warn!(
                acked,
                wanted = acks,
                "write confirmed by fewer peers than asked"
            );
            Ok(())
        }
    }
}

/// Runs automerge's sync protocol for `key` with `peer` until neither side
/// has anything to send.
pub(crate) async fn sync_with(
    inner: &Arc<Inner>,
    net: &Arc<dyn Transport>,
    peer: PeerId,
    key: DocKey,
) -> Result<(), Error> {
    match sync_many(inner, net, peer, &[key]).await?.first() {
        Some(Some(reason)) => Err(net::Error::Request {
            peer,
            reason: reason.clone(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Runs automerge's sync protocol with `peer` for every key in `keys` at
/// once: each round is one request carrying one message per document
/// still in progress. Returns, per key, why its exchange stopped early
/// (`None` when it completed).
async fn sync_many(
    inner: &Arc<Inner>,
    net: &Arc<dyn Transport>,
    peer: PeerId,
    keys: &[DocKey],
) -> Result<Vec<Option<String>>, Error> {
    let mut outcome: Vec<Option<String>> = vec![None; keys.len()];
    // (index into keys, message to send) for the documents in progress.
    let mut sending: Vec<(usize, Vec<u8>)> = run_batch(inner, |i| {
        let mut out = Vec::new();
        for (n, key) in keys.iter().enumerate() {
            i.reset_state(peer, *key);
            match i.sync_step(peer, *key, None) {
                Ok(Step::Send(msg)) => out.push((n, msg)),
                Ok(_) => {}
                Err(e) => outcome[n] = Some(e.to_string()),
            }
        }
        Ok(out)
    })?;
    for round in 0..MAX_ROUNDS {
        if sending.is_empty() {
            break;
        }
        let req = Request::Sync {
            items: sending
                .iter()
                .map(|(n, msg)| SyncItem {
                    key: ByteArray::new(*keys[*n].as_bytes()),
                    msg: ByteBuf::from(msg.clone()),
                    first: round == 0,
                })
                .collect(),
        };
        let replies = match net.request(peer, req).await? {
            Response::Sync { items } if items.len() == sending.len() => items,
            Response::Refused { reason } => return Err(net::Error::Request { peer, reason }.into()),
            _ => return Err(unexpected(peer, "sync")),
        };
        let (next, ended) = run_batch(inner, |i| {
            let mut next = Vec::new();
            let mut ended = Vec::new();
            for ((n, _), reply) in sending.iter().zip(replies) {
                let key = keys[*n];
                if let Some(reason) = reply.refused {
                    outcome[*n] = Some(reason);
                    continue;
                }
                if reply.gone {
                    if reply.ended {
                        ended.push(key);
                    }
                    continue;
                }
                let step = i.sync_step(peer, key, reply.msg.as_ref().map(|m| m.as_slice()));
                match step {
                    Ok(Step::Send(msg)) => next.push((*n, msg)),
                    Ok(_) => {}
                    Err(e) => outcome[*n] = Some(e.to_string()),
                }
            }
            Ok((next, ended))
        })?;
        for key in ended {
            // Ended for good on the peer: end it here too. Other peers hear
            // of it through anti-entropy (pushing from here would make push
            // and sync recursive).
            run_sync(inner, |i| i.end(key))?;
        }
        sending = next;
    }
    Ok(outcome)
}

/// Compares digests with `peer` page by page and syncs every document that
/// differs.
pub(crate) async fn anti_entropy(inner: Arc<Inner>, peer: PeerId) {
    let Some(net) = inner.repl.get().map(|r| Arc::clone(&r.transport)) else {
        return;
    };
    if let Err(e) = anti_entropy_with(&inner, &net, peer).await {
        tracing::debug!(%peer, error = %e, "anti-entropy round failed; will retry");
    }
}

async fn anti_entropy_with(
    inner: &Arc<Inner>,
    net: &Arc<dyn Transport>,
    peer: PeerId,
) -> Result<(), Error> {
    let mut from: Vec<u8> = Vec::new();
    loop {
        let mut entries = run_sync(inner, |i| i.digest_page(&from))?;
        // The page holds one entry more than it sends: that entry's key ends
        // this page's range and starts the next.
        let to = if entries.len() > DIGEST_PAGE {
            entries.pop().map(|e| e.key.to_vec()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let req = Request::Digest {
            from: ByteBuf::from(from.clone()),
            to: ByteBuf::from(to.clone()),
            entries,
        };
        let Response::Differ { keys } = net.request(peer, req).await? else {
            return Err(unexpected(peer, "digest"));
        };
        let keys: Vec<DocKey> = keys
            .into_iter()
            .map(|k| DocKey::from_array(k.into_array()))
            .collect();
        futures::stream::iter(keys.chunks(SYNC_BATCH))
            .for_each_concurrent(SYNC_CONCURRENCY, |batch| async move {
                match sync_many(inner, net, peer, batch).await {
                    Ok(outcome) => {
                        for (key, why) in batch.iter().zip(outcome) {
                            if let Some(why) = why {
                                tracing::debug!(%peer, session = %key.short(), why, "sync stopped");
                            }
                        }
                    }
                    // A batch too large for one message, or a lost request:
                    // each document alone.
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "batched sync failed; syncing one by one");
                        for key in batch {
                            if let Err(e) = sync_with(inner, net, peer, *key).await {
                                tracing::debug!(%peer, session = %key.short(), error = %e, "sync failed");
                            }
                        }
                    }
                }
            })
            .await;
        if to.is_empty() {
            return Ok(());
        }
        from = to;
    }
}

/// Asks every connected peer for `key`, waiting at most the fetch timeout.
pub(crate) async fn fetch(inner: &Arc<Inner>, key: DocKey) {
    let Some(net) = inner.repl.get().map(|r| Arc::clone(&r.transport)) else {
        return;
    };
    let Ok(_permit) = Arc::clone(&inner.fetch_slots).try_acquire_owned() else {
        tracing::debug!(session = %key.short(), "too many fetches in flight; treating the id as unknown");
        return;
    };
    let peers = net.peers().await;
    if peers.is_empty() {
        return;
    }
    let timeout = std::time::Duration::from_millis(inner.fetch_timeout_ms());
    let all: FuturesUnordered<_> = peers
        .iter()
        .map(|p| sync_with(inner, &net, *p, key))
        .collect();
    let _ = tokio::time::timeout(timeout, all.collect::<Vec<_>>()).await;
}

/// Anti-entropy with every peer, every interval, until shutdown.
pub(crate) fn spawn_periodic(inner: &Arc<Inner>) -> Option<tokio::task::JoinHandle<()>> {
    let period = inner.repl.get()?.config.anti_entropy_interval;
    let weak = Arc::downgrade(inner);
    let mut stop = inner.shutdown.subscribe();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            let Some(net) = inner.repl.get().map(|r| Arc::clone(&r.transport)) else {
                return;
            };
            for peer in net.peers().await {
                anti_entropy(Arc::clone(&inner), peer).await;
            }
        }
    }))
}
