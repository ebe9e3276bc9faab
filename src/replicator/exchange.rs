//! Running automerge's sync protocol with one peer for a batch of
//! documents, round after round, until neither side has anything to send.
//! Used for catch-up: a push that hit missing dependencies, fetch on miss,
//! and the documents anti-entropy found to differ.
//!
//! Each round is one `Sync` request carrying one message per lineage still
//! in progress; the peer answers each with its next message, or says the
//! session is a tombstone there. The first message about a lineage tells
//! the peer to start its state afresh, so nothing of an earlier,
//! interrupted exchange lingers on either side, and asks which lineages
//! the peer holds.

use std::collections::BTreeSet;
use std::sync::Arc;

use libp2p::PeerId;
use serde_bytes::{ByteArray, ByteBuf};

use super::lineage::{held_from_wire, plan, to_wire};
use super::states::SyncStates;
use crate::engine::{Engine, Held, Step};
use crate::id::DocKey;
use crate::net::{self, Request, Response, SyncItem, SyncReply, Transport};
use crate::store::{Durability, LineageId};
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
    #[tracing::instrument(name = "replication.sync", level = "debug", skip_all, fields(%peer, session = %key.short()))]
    pub(crate) async fn sync_doc(&self, peer: PeerId, key: DocKey) -> Result<Outcome, Error> {
        match self.sync_docs(peer, &[key]).await?.pop() {
            Some(Outcome::Stopped(reason)) => Err(net::Error::Request { peer, reason }.into()),
            Some(outcome) => Ok(outcome),
            None => Ok(Outcome::Done),
        }
    }

    /// Syncs every key in `keys` with `peer` at once. Returns how each
    /// exchange ended.
    ///
    /// A session's exchange starts with its current lineage (or, when this
    /// node holds nothing, a question); the peer's first answer says which
    /// lineages it holds, and the exchange takes on every other lineage the
    /// [plan](super::lineage::plan) names, in the same rounds.
    #[tracing::instrument(name = "replication.sync_batch", level = "debug", skip_all, fields(%peer, documents = keys.len()))]
    pub(crate) async fn sync_docs(
        &self,
        peer: PeerId,
        keys: &[DocKey],
    ) -> Result<Vec<Outcome>, Error> {
        let engine = &self.engine;
        let mut docs: Vec<Doc> = keys
            .iter()
            .map(|key| Doc {
                key: *key,
                outcome: Outcome::Done,
                started: BTreeSet::new(),
                adopt: None,
                retrust: None,
            })
            .collect();
        let mut sending: Vec<Item> = blocking(true, || {
            let mut out = Vec::new();
            for (n, doc) in docs.iter_mut().enumerate() {
                match engine.lineages(doc.key) {
                    Ok(Held::Gone { ended: true }) => {
                        doc.outcome = Outcome::Gone { ended: true };
                    }
                    // Expired here: a peer may hold it alive (accessed
                    // after it expired here), and then this node takes it.
                    Ok(Held::Missing | Held::Gone { ended: false }) => out.push(Item {
                        n,
                        lineage: None,
                        msg: Vec::new(),
                        first: true,
                    }),
                    Ok(Held::Lineages { current, .. }) => {
                        out.extend(self.open(peer, n, doc, current.id));
                    }
                    Err(e) => doc.outcome = Outcome::Stopped(e.to_string()),
                }
            }
            out
        });
        for _ in 0..MAX_ROUNDS {
            if sending.is_empty() {
                break;
            }
            let req = Request::Sync {
                items: sending
                    .iter()
                    .map(|i| SyncItem {
                        key: ByteArray::new(*docs[i.n].key.as_bytes()),
                        msg: ByteBuf::from(i.msg.clone()),
                        first: i.first,
                        lineage: to_wire(i.lineage.unwrap_or_default()),
                        ask: i.lineage.is_none(),
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
                for (item, reply) in sending.iter().zip(replies) {
                    self.answered(peer, item, reply, &mut docs, &mut next, &mut ended);
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
        let fsync = engine.config().durability() == Durability::Fsync;
        for doc in &mut docs {
            if let Some(target) = doc.retrust {
                if let Err(e) = blocking(fsync, || engine.retrust(doc.key, target)) {
                    doc.outcome = Outcome::Stopped(e.to_string());
                }
            }
            if let Some(target) = doc.adopt {
                match blocking(fsync, || engine.adopt(doc.key, target)) {
                    Ok(true) => doc.outcome = Outcome::Done,
                    Ok(false) => {}
                    Err(e) => doc.outcome = Outcome::Stopped(e.to_string()),
                }
            }
        }
        Ok(docs.into_iter().map(|d| d.outcome).collect())
    }

    /// Starts the exchange about `lineage` of `doc` (the `n`th): a fresh
    /// state and this node's first message.
    fn open(&self, peer: PeerId, n: usize, doc: &mut Doc, lineage: LineageId) -> Option<Item> {
        if !doc.started.insert(lineage) {
            return None;
        }
        self.states.reset(peer, doc.key, lineage);
        match self.states.step(&self.engine, peer, doc.key, lineage, None) {
            Ok(Step::Send(msg)) => Some(Item {
                n,
                lineage: Some(lineage),
                msg,
                first: true,
            }),
            Ok(Step::Gone { ended }) => {
                doc.outcome = Outcome::Gone { ended };
                None
            }
            Ok(Step::Quiet) => None,
            Err(e) => {
                doc.outcome = Outcome::Stopped(e.to_string());
                None
            }
        }
    }

    /// Takes in the peer's answer to `item`: what it holds (which may start
    /// exchanges about more lineages) and its next message.
    fn answered(
        &self,
        peer: PeerId,
        item: &Item,
        reply: SyncReply,
        docs: &mut [Doc],
        next: &mut Vec<Item>,
        ended: &mut Vec<DocKey>,
    ) {
        let doc = &mut docs[item.n];
        if reply.gone {
            doc.outcome = Outcome::Gone { ended: reply.ended };
            if reply.ended {
                ended.push(doc.key);
            }
            // A peer that expired the session still takes a copy that is
            // live here: go on while it answers.
            if reply.ended || reply.msg.is_none() {
                return;
            }
        }
        if let Some(list) = &reply.lineages {
            let theirs = held_from_wire(list);
            match self.engine.lineages(doc.key) {
                Ok(mine) => {
                    let kept = self.engine.config().generations_kept();
                    let plan = plan(&mine, &theirs, kept);
                    doc.adopt = doc.adopt.or(plan.adopt);
                    doc.retrust = doc.retrust.or(plan.retrust);
                    for id in plan.sync {
                        next.extend(self.open(peer, item.n, doc, id));
                    }
                }
                Err(e) => doc.outcome = Outcome::Stopped(e.to_string()),
            }
        }
        if let Some(reason) = reply.refused {
            doc.outcome = Outcome::Stopped(reason);
            return;
        }
        let Some(lineage) = item.lineage else {
            return;
        };
        let msg = reply.msg.as_ref().map(|m| m.as_slice());
        match self.states.step(&self.engine, peer, doc.key, lineage, msg) {
            Ok(Step::Send(msg)) => next.push(Item {
                n: item.n,
                lineage: Some(lineage),
                msg,
                first: false,
            }),
            Ok(Step::Gone { ended }) => doc.outcome = Outcome::Gone { ended },
            Ok(Step::Quiet) => {}
            Err(e) => doc.outcome = Outcome::Stopped(e.to_string()),
        }
    }
}

/// One session's exchange.
struct Doc {
    key: DocKey,
    outcome: Outcome,
    /// The lineages whose exchange has begun (each begins once).
    started: BTreeSet<LineageId>,
    /// The peer's current lineage, to make this node's once synced.
    adopt: Option<LineageId>,
    /// The lineage of this node's oldest generation the peer says is
    /// canonical, to take once synced.
    retrust: Option<LineageId>,
}

/// One message on its way: about which session (index), which lineage
/// (`None`: a question, this node holding nothing).
struct Item {
    n: usize,
    lineage: Option<LineageId>,
    msg: Vec<u8>,
    first: bool,
}
