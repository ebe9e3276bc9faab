//! Per-peer queues of change chunks on their way out. One push is in flight
//! per peer; every chunk committed meanwhile waits in the peer's queue and
//! leaves with the next push, in commit order. Under load a push carries
//! many commits for the price of one request, and consecutive commits of
//! one session arrive in order, so the peer rarely holds a change back for
//! a missing predecessor.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use libp2p::PeerId;
use serde_bytes::{ByteArray, ByteBuf};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::exchange::Exchange;
use super::lineage::to_wire;
use crate::engine::Push;
use crate::id::DocKey;
use crate::metrics::{label, secs};
use crate::net::{Pushed, Request, Response};
use crate::store::LineageId;
use crate::tasks::Tasks;

/// Chunks queued per peer at most, and their bytes at most (a stalled peer
/// holds no more than that of the node's memory; the chunks themselves are
/// shared between peers' queues); past either a chunk nobody waits for is
/// left to anti-entropy, and one somebody waits for is reported unacked.
const MAX_QUEUED: usize = 4_096;
const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Chunks per push at most.
const MAX_BATCH: usize = 256;
/// Bytes of chunks per push at most (the wire caps a message at 16 MiB; a
/// single larger chunk still goes, alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One chunk for one peer, and whoever waits for the peer to persist it.
struct Item {
    key: DocKey,
    lineage: LineageId,
    chunk: Arc<[u8]>,
    /// Told whether the peer persisted the chunk. A chunk with a waiter that
    /// arrives before its predecessor is repaired at once by a sync.
    done: Option<oneshot::Sender<bool>>,
    /// When it was queued (right after its commit), for the lag metric.
    queued: Instant,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Bytes of the chunks in `items`.
    bytes: usize,
    sending: bool,
}

/// Every peer's queue.
#[derive(Default)]
pub(crate) struct Outbox {
    // std Mutex: held to move items in and out, never across an await.
    queues: Mutex<HashMap<PeerId, Queue>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Queue>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `chunks` for `peer` and starts its sender (a task of `tasks`)
    /// if it is idle. With `wait`, returns one receiver per chunk that says
    /// whether the peer persisted it.
    pub(crate) fn send(
        self: &Arc<Self>,
        exchange: &Arc<Exchange>,
        tasks: &Tasks,
        peer: PeerId,
        chunks: &[Push],
        wait: bool,
    ) -> Vec<oneshot::Receiver<bool>> {
        let mut receivers = Vec::new();
        let start = {
            let mut queues = self.lock();
            let queue = queues.entry(peer).or_default();
            for push in chunks {
                let done = wait.then(|| {
                    let (tx, rx) = oneshot::channel();
                    receivers.push(rx);
                    tx
                });
                if queue.items.len() >= MAX_QUEUED
                    || queue.bytes + push.chunk.len() > MAX_QUEUED_BYTES
                {
                    tracing::debug!(%peer, "push queue full; anti-entropy will carry the change");
                    let m = exchange.engine.metrics();
                    m.pushes_dropped
                        .get_or_create(&label("peer", peer.to_string()))
                        .inc();
                    if let Some(tx) = done {
                        let _ = tx.send(false);
                    }
                    continue;
                }
                queue.bytes += push.chunk.len();
                queue.items.push_back(Item {
                    key: push.key,
                    lineage: push.lineage,
                    chunk: Arc::clone(&push.chunk),
                    done,
                    queued: Instant::now(),
                });
            }
            !std::mem::replace(&mut queue.sending, true)
        };
        if start && !tasks.spawn(drain(Arc::clone(self), Arc::clone(exchange), peer)) {
            // The node is stopping: nothing will send this queue, so whoever
            // waits for it hears "not persisted" now, not at its timeout.
            self.lock().remove(&peer);
        }
        receivers
    }

    /// Chunks queued for every peer, and their bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        self.lock()
            .values()
            .fold((0, 0), |(n, b), q| (n + q.items.len(), b + q.bytes))
    }

    /// The next push for `peer`, or `None` (and the sender stops) when its
    /// queue is empty.
    fn next_batch(&self, peer: PeerId) -> Option<Vec<Item>> {
        let mut queues = self.lock();
        let queue = queues.get_mut(&peer)?;
        if queue.items.is_empty() {
            queues.remove(&peer);
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(item) = queue.items.front() {
            if !batch.is_empty()
                && (batch.len() >= MAX_BATCH || bytes + item.chunk.len() > MAX_BATCH_BYTES)
            {
                break;
            }
            bytes += item.chunk.len();
            batch.extend(queue.items.pop_front());
        }
        queue.bytes -= bytes;
        Some(batch)
    }
}

/// Sends `peer`'s queue, one push at a time, until it is empty. Should the
/// node stop meanwhile, the waiters of the batch in flight hear "not
/// persisted" (their senders are dropped).
async fn drain(outbox: Arc<Outbox>, exchange: Arc<Exchange>, peer: PeerId) {
    while let Some(batch) = outbox.next_batch(peer) {
        let span = tracing::debug_span!("replication.push", %peer, chunks = batch.len());
        push_batch(&exchange, peer, batch).instrument(span).await;
    }
}

/// Sends one push and tells its waiters whether the peer persisted each
/// chunk.
async fn push_batch(exchange: &Exchange, peer: PeerId, batch: Vec<Item>) {
    let req = Request::Push {
        items: batch
            .iter()
            .map(|i| Pushed {
                key: ByteArray::new(*i.key.as_bytes()),
                changes: ByteBuf::from(i.chunk.to_vec()),
                lineage: to_wire(i.lineage),
            })
            .collect(),
    };
    let acks = match exchange.transport.request(peer, req).await {
        Ok(Response::Acks { acks }) if acks.len() == batch.len() => acks,
        Ok(other) => {
            tracing::debug!(%peer, ?other, "push not answered with acks");
            Vec::new()
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "push failed");
            Vec::new()
        }
    };
    let m = exchange.engine.metrics();
    let who = label("peer", peer.to_string());
    m.pushes_sent.get_or_create(&who).inc_by(batch.len() as u64);
    let persisted = acks.iter().filter(|a| a.applied || a.missing_deps).count();
    tracing::debug!(
        acked = persisted,
        failed = batch.len() - persisted,
        "push answered"
    );
    m.pushes_acked.get_or_create(&who).inc_by(persisted as u64);
    m.pushes_failed
        .get_or_create(&who)
        .inc_by((batch.len() - persisted) as u64);
    for (n, item) in batch.into_iter().enumerate() {
        if acks.get(n).is_some_and(|a| a.applied || a.missing_deps) {
            let lag = secs(item.queued.elapsed());
            m.replication_lag.observe(lag);
            m.peer_lag.get_or_create(&who).set(lag);
        }
        let Some(done) = item.done else { continue };
        let ok = match acks.get(n) {
            Some(ack) if ack.applied => true,
            Some(ack) if ack.missing_deps => matches!(
                exchange.sync_doc(peer, item.key).await,
                Ok(super::exchange::Outcome::Done)
            ),
            _ => false,
        };
        let _ = done.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::net::{self, BoxFuture, Transport};
    use crate::replicator::states::SyncStates;
    use crate::{Config, SessionId};

    /// A transport no request ever reaches.
    #[derive(Debug)]
    struct Nowhere;

    impl Transport for Nowhere {
        fn request(&self, peer: PeerId, _: Request) -> BoxFuture<'_, Result<Response, net::Error>> {
            Box::pin(async move {
                Err(net::Error::Request {
                    peer,
                    reason: "nowhere".into(),
                })
            })
        }

        fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
            Box::pin(async { Vec::new() })
        }
    }

    /// A peer that takes requests and never answers (stalled).
    #[derive(Debug)]
    struct Stalled;

    impl Transport for Stalled {
        fn request(&self, _: PeerId, _: Request) -> BoxFuture<'_, Result<Response, net::Error>> {
            Box::pin(std::future::pending())
        }

        fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
            Box::pin(async { Vec::new() })
        }
    }

    #[tokio::test]
    async fn a_stalled_peers_queue_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(Config::new(dir.path()), None).unwrap();
        let exchange = Arc::new(Exchange {
            engine: engine.clone(),
            transport: Arc::new(Stalled),
            states: Arc::new(SyncStates::default()),
        });
        let tasks = Tasks::new();
        let outbox = Arc::new(Outbox::default());
        // 100 chunks of 1 MiB, one allocation shared by every item.
        let chunk: Arc<[u8]> = vec![0u8; 1 << 20].into();
        let pushes: Vec<Push> = (0..100)
            .map(|_| Push {
                key: SessionId::random().doc_key(),
                lineage: LineageId::FIRST,
                chunk: Arc::clone(&chunk),
            })
            .collect();
        let peer = PeerId::random();
        let mut receivers = outbox.send(&exchange, &tasks, peer, &pushes, true);
        let queued = MAX_QUEUED_BYTES >> 20;
        // Past the bound: reported unsent at once, left to anti-entropy.
        for rx in receivers.split_off(queued) {
            let persisted = tokio::time::timeout(std::time::Duration::from_secs(1), rx)
                .await
                .expect("answered at once");
            assert!(!persisted.unwrap_or(false));
        }
        // Within it: on their way (the peer never answers).
        for mut rx in receivers {
            assert!(rx.try_recv().is_err());
        }
        // Once the first push left the queue, as much room is free again.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let more = outbox.send(&exchange, &tasks, peer, &pushes[..1], true);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for mut rx in more {
            assert!(rx.try_recv().is_err(), "queued, not refused");
        }
        tasks.shutdown().await;
        engine.close(true).unwrap();
    }

    #[tokio::test]
    async fn chunks_queued_while_the_node_stops_are_reported_unsent_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(Config::new(dir.path()), None).unwrap();
        let exchange = Arc::new(Exchange {
            engine: engine.clone(),
            transport: Arc::new(Nowhere),
            states: Arc::new(SyncStates::default()),
        });
        let tasks = Tasks::new();
        tasks.shutdown().await;
        let outbox = Arc::new(Outbox::default());
        let chunks = [Push {
            key: SessionId::random().doc_key(),
            lineage: LineageId::FIRST,
            chunk: vec![1, 2, 3].into(),
        }];
        let receivers = outbox.send(&exchange, &tasks, PeerId::random(), &chunks, true);
        for rx in receivers {
            let persisted = tokio::time::timeout(std::time::Duration::from_secs(1), rx)
                .await
                .expect("answered at once, not at a timeout");
            assert!(!persisted.unwrap_or(false));
        }
        engine.close(true).unwrap();
    }
}
