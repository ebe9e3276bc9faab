//! Anti-entropy: compare digests of (document → heads hash) with a peer,
//! page by page, and sync every document either side holds differently.
//! Run on every new connection (by the end with the smaller peer id) and
//! every anti-entropy interval with every peer.

use futures::StreamExt;
use libp2p::PeerId;
use serde_bytes::{ByteArray, ByteBuf};

use super::clock_sync::ClockSync;
use super::exchange::{Exchange, Outcome};
use crate::id::DocKey;
use crate::metrics::label;
use crate::net::{self, DigestEntry, Request, Response};
use crate::tasks::blocking;
use crate::Error;

/// Documents compared per digest page.
pub(crate) const DIGEST_PAGE: usize = 5_000;
/// Documents per sync request.
const SYNC_BATCH: usize = 64;
/// Sync batches in flight at once with one peer.
const SYNC_CONCURRENCY: usize = 8;

/// One anti-entropy round with `peer`; a failure is logged (the next round
/// retries). The peer's answers measure its clock against this node's
/// (`clock`).
#[tracing::instrument(name = "replication.anti_entropy", level = "debug", skip_all, fields(%peer))]
pub(crate) async fn anti_entropy(exchange: &Exchange, clock: Option<&ClockSync>, peer: PeerId) {
    let outcome = match round(exchange, clock, peer).await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::debug!(%peer, error = %e, "anti-entropy round failed; will retry");
            "failed"
        }
    };
    let rounds = &exchange.engine.metrics().anti_entropy_rounds;
    rounds.get_or_create(&label("outcome", outcome)).inc();
}

async fn round(exchange: &Exchange, clock: Option<&ClockSync>, peer: PeerId) -> Result<(), Error> {
    let mut from: Vec<u8> = Vec::new();
    loop {
        let page = blocking(false, || {
            exchange.engine.digest(&from, None, DIGEST_PAGE + 1)
        })?;
        let mut entries: Vec<DigestEntry> = page
            .into_iter()
            .map(|(k, heads)| DigestEntry {
                key: ByteArray::new(*k.as_bytes()),
                heads,
            })
            .collect();
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
        let sent = (exchange.engine.now(), clock.map(ClockSync::steps));
        let answer = exchange.transport.request(peer, req).await?;
        let Response::Differ { keys, until, now } = answer else {
            return Err(net::Error::Request {
                peer,
                reason: "unexpected answer to digest".into(),
            }
            .into());
        };
        if let (Some(clock), Some(theirs), (at, Some(steps))) = (clock, now, sent) {
            let _ = clock.observe(peer, theirs, at, exchange.engine.now(), steps);
        }
        let keys: Vec<DocKey> = keys
            .into_iter()
            .map(|k| DocKey::from_array(k.into_array()))
            .collect();
        let m = exchange.engine.metrics();
        m.anti_entropy_documents.inc_by(keys.len() as u64);
        if !keys.is_empty() {
            tracing::debug!(
                documents = keys.len(),
                "anti-entropy found differences; syncing"
            );
        }
        futures::stream::iter(keys.chunks(SYNC_BATCH))
            .for_each_concurrent(SYNC_CONCURRENCY, |batch| sync_batch(exchange, peer, batch))
            .await;
        // The peer answered part of the range: the rest from where it
        // stopped (a key past `from`, so every step moves on).
        if let Some(until) = until.filter(|u| u.as_slice() > from.as_slice()) {
            from = until.to_vec();
            continue;
        }
        if to.is_empty() {
            return Ok(());
        }
        from = to;
    }
}

/// Measures `peer`'s clock against this node's with an empty digest (a
/// range with nothing in it: the answer carries only the peer's time),
/// again when this node's clock moved during the round trip (a few times).
pub(crate) async fn probe_clock(exchange: &Exchange, clock: &ClockSync, peer: PeerId) {
    for _ in 0..4 {
        let req = Request::Digest {
            from: ByteBuf::from(vec![0]),
            to: ByteBuf::from(vec![0]),
            entries: Vec::new(),
        };
        let (sent, steps) = (exchange.engine.now(), clock.steps());
        match exchange.transport.request(peer, req).await {
            Ok(Response::Differ {
                now: Some(theirs), ..
            }) => {
                if clock.observe(peer, theirs, sent, exchange.engine.now(), steps) {
                    return;
                }
            }
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "clock probe failed");
                return;
            }
        }
    }
}

async fn sync_batch(exchange: &Exchange, peer: PeerId, batch: &[DocKey]) {
    match exchange.sync_docs(peer, batch).await {
        Ok(outcome) => {
            for (key, outcome) in batch.iter().zip(outcome) {
                if let Outcome::Stopped(why) = outcome {
                    tracing::debug!(%peer, session = %key.short(), why, "sync stopped");
                }
            }
        }
        // A batch too large for one message, or a lost request: each
        // document alone.
        Err(e) => {
            tracing::debug!(%peer, error = %e, "batched sync failed; syncing one by one");
            for key in batch {
                if let Err(e) = exchange.sync_doc(peer, *key).await {
                    tracing::debug!(%peer, session = %key.short(), error = %e, "sync failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::engine::Engine;
    use crate::net::{BoxFuture, Handler, Transport};
    use crate::replicator::inbound::Inbound;
    use crate::{Config, SessionId};

    /// Requests answered in-process by another node's handler, recording
    /// the most keys any digest answer carried.
    #[derive(Debug)]
    struct Direct {
        to: Arc<Inbound>,
        me: PeerId,
        most_keys: AtomicUsize,
    }

    impl Transport for Direct {
        fn request(&self, _: PeerId, req: Request) -> BoxFuture<'_, Result<Response, net::Error>> {
            let resp = self.to.on_request(self.me, req);
            if let Response::Differ { keys, .. } = &resp {
                self.most_keys.fetch_max(keys.len(), Ordering::Relaxed);
            }
            Box::pin(async move { Ok(resp) })
        }

        fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
            Box::pin(async { Vec::new() })
        }
    }

    #[tokio::test]
    async fn a_peer_holding_more_than_a_page_answers_in_pages_and_all_of_it_syncs() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let full = Engine::open(Config::new(da.path()), None).unwrap();
        for _ in 0..25 {
            full.create(SessionId::random().doc_key(), &[]).unwrap();
        }
        let mut answering = Inbound::new(full.clone());
        answering.differ_page = 10;
        let empty = Engine::open(Config::new(db.path()), None).unwrap();
        let transport = Arc::new(Direct {
            to: Arc::new(answering),
            me: PeerId::random(),
            most_keys: AtomicUsize::new(0),
        });
        let exchange = Exchange {
            engine: empty.clone(),
            transport: transport.clone(),
            states: Arc::default(),
        };
        anti_entropy(&exchange, None, PeerId::random()).await;
        assert_eq!(empty.session_count(), 25);
        assert_eq!(transport.most_keys.load(Ordering::Relaxed), 10);
        full.close(true).unwrap();
        empty.close(true).unwrap();
    }
}
