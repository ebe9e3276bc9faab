//! Anti-entropy: compare digests of (document → heads hash) with a peer,
//! page by page, and sync every document either side holds differently.
//! Run on every new connection (by the end with the smaller peer id) and
//! every anti-entropy interval with every peer.

use futures::StreamExt;
use libp2p::PeerId;
use serde_bytes::{ByteArray, ByteBuf};

use super::exchange::{Exchange, Outcome};
use crate::id::DocKey;
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
/// retries).
pub(crate) async fn anti_entropy(exchange: &Exchange, peer: PeerId) {
    if let Err(e) = round(exchange, peer).await {
        tracing::debug!(%peer, error = %e, "anti-entropy round failed; will retry");
    }
}

async fn round(exchange: &Exchange, peer: PeerId) -> Result<(), Error> {
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
        let Response::Differ { keys } = exchange.transport.request(peer, req).await? else {
            return Err(net::Error::Request {
                peer,
                reason: "unexpected answer to digest".into(),
            }
            .into());
        };
        let keys: Vec<DocKey> = keys
            .into_iter()
            .map(|k| DocKey::from_array(k.into_array()))
            .collect();
        futures::stream::iter(keys.chunks(SYNC_BATCH))
            .for_each_concurrent(SYNC_CONCURRENCY, |batch| sync_batch(exchange, peer, batch))
            .await;
        if to.is_empty() {
            return Ok(());
        }
        from = to;
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
