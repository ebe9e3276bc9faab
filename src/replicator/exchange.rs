//! Running automerge's sync protocol with one peer for a batch of
//! documents, round after round, until neither side has anything to send.
//! Used for catch-up: a push that hit missing dependencies, fetch on miss,
//! and the documents anti-entropy found to differ.
//!
//! Each round is one `Sync` request carrying one message per document still
//! in progress; the peer answers each with its next message, or says the
//! session is a tombstone there. The first round tells the peer to start
//! its states afresh, so nothing of an earlier, interrupted exchange
//! lingers on either side.

use std::sync::Arc;

use libp2p::PeerId;
use serde_bytes::{ByteArray, ByteBuf};

use super::states::SyncStates;
use crate::engine::{Engine, Step};
use crate::id::DocKey;
use crate::net::{self, Request, Response, SyncItem, Transport};
use crate::store::Durability;
use crate::tasks::blocking;
use crate::Error;

/// Rounds of one sync exchange at most; automerge needs a handful.
const MAX_ROUNDS: usize = 32;

/// What a sync exchange needs: the engine, the transport, and the sync
/// states it shares with the answering side.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(super) engine: Engine,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) states: Arc<SyncStates>,
}

/// How the exchange about one document ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Neither side had anything more to send.
    Done,
    /// The session is dead at the peer (a tombstone) or arrived dead here;
    /// `ended`: invalidated or rotated, not merely expired.
    Gone { ended: bool },
    /// It stopped early, for this reason.
    Stopped(String),
}

fn unexpected(peer: PeerId, what: &str) -> Error {
    net::Error::Request {
        peer,
        reason: format!("unexpected answer to {what}"),
    }
    .into()
}

impl Exchange {
    /// Syncs `key` with `peer` until neither side has anything to send.
    /// Returns [`Outcome::Done`] or [`Outcome::Gone`]; an exchange that
    /// stopped early is an error.
    pub(crate) async fn sync_doc(&self, peer: PeerId, key: DocKey) -> Result<Outcome, Error> {
        match self.sync_docs(peer, &[key]).await?.pop() {
            Some(Outcome::Stopped(reason)) => Err(net::Error::Request { peer, reason }.into()),
            Some(outcome) => Ok(outcome),
            None => Ok(Outcome::Done),
        }
    }

    /// Syncs every key in `keys` with `peer` at once. Returns how each
    /// exchange ended.
    pub(crate) async fn sync_docs(
        &self,
        peer: PeerId,
        keys: &[DocKey],
    ) -> Result<Vec<Outcome>, Error> {
        let (engine, states) = (&self.engine, &self.states);
        let mut outcome: Vec<Outcome> = vec![Outcome::Done; keys.len()];
        // (index into keys, message to send) for the documents in progress.
        let mut sending: Vec<(usize, Vec<u8>)> = blocking(true, || {
            let mut out = Vec::new();
            for (n, key) in keys.iter().enumerate() {
                states.reset(peer, *key);
                match states.step(engine, peer, *key, None) {
                    Ok(Step::Send(msg)) => out.push((n, msg)),
                    Ok(Step::Gone { ended }) => outcome[n] = Outcome::Gone { ended },
                    Ok(Step::Quiet) => {}
                    Err(e) => outcome[n] = Outcome::Stopped(e.to_string()),
                }
            }
            out
        });
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
            let replies = match self.transport.request(peer, req).await? {
                Response::Sync { items } if items.len() == sending.len() => items,
                Response::Refused { reason } => {
                    return Err(net::Error::Request { peer, reason }.into())
                }
                _ => return Err(unexpected(peer, "sync")),
            };
            let (next, ended) = blocking(true, || {
                let mut next = Vec::new();
                let mut ended = Vec::new();
                for ((n, _), reply) in sending.iter().zip(replies) {
                    let key = keys[*n];
                    if let Some(reason) = reply.refused {
                        outcome[*n] = Outcome::Stopped(reason);
                        continue;
                    }
                    if reply.gone {
                        outcome[*n] = Outcome::Gone { ended: reply.ended };
                        if reply.ended {
                            ended.push(key);
                        }
                        continue;
                    }
                    let msg = reply.msg.as_ref().map(|m| m.as_slice());
                    match states.step(engine, peer, key, msg) {
                        Ok(Step::Send(msg)) => next.push((*n, msg)),
                        Ok(Step::Gone { ended }) => outcome[*n] = Outcome::Gone { ended },
                        Ok(Step::Quiet) => {}
                        Err(e) => outcome[*n] = Outcome::Stopped(e.to_string()),
                    }
                }
                (next, ended)
            });
            let fsync = engine.config().durability() == Durability::Fsync;
            for key in ended {
                // Ended for good on the peer: end it here too. Other peers
                // hear of it through anti-entropy (pushing from here would
                // make push and sync recursive).
                blocking(fsync, || engine.end(key))?;
            }
            sending = next;
        }
        Ok(outcome)
    }
}
