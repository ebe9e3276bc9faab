//! The receiving side of replication, and the synchronous half of every
//! sync round: all of it runs under the document's lock, on the blocking
//! pool, and persists what arrived before it answers.

use std::sync::atomic::Ordering;

use automerge::sync;
use libp2p::PeerId;

use super::handle::Inner;
use super::inner::{ms, Pushes};
use crate::doc::{Op, SessionDoc, Status};
use crate::id::DocKey;
use crate::net::{Ack, DigestEntry, Handler, Request, Response, SyncItem, SyncReply};
use crate::store::{Deferred, SlotState};
use crate::Error;

/// Documents compared per digest page.
pub(crate) const DIGEST_PAGE: usize = 5_000;
/// Sync states kept at most; past this the oldest peer's states are dropped
/// (a dropped state only costs an extra round).
const MAX_SYNC_STATES: usize = 100_000;

/// One step of a sync round from this node's side.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this message.
    Send(Vec<u8>),
    /// Nothing to say.
    Quiet,
    /// The session is a tombstone here.
    Gone { ended: bool },
}

impl Inner {
    fn take_state(&self, peer: PeerId, key: DocKey) -> sync::State {
        let mut states = self
            .sync_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states.remove(&(peer, key)).unwrap_or_default()
    }

    fn put_state(&self, peer: PeerId, key: DocKey, st: sync::State) {
        let mut states = self
            .sync_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if states.len() >= MAX_SYNC_STATES {
            states.clear();
        }
        states.insert((peer, key), st);
    }

    /// Starts the sync state for (`peer`, `key`) afresh.
    pub(crate) fn reset_state(&self, peer: PeerId, key: DocKey) {
        let mut states = self
            .sync_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states.remove(&(peer, key));
    }

    /// Drops every sync state shared with `peer` (a new connection starts
    /// the protocol afresh).
    pub(crate) fn reset_peer(&self, peer: PeerId) {
        let mut states = self
            .sync_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states.retain(|(p, _), _| *p != peer);
    }

    /// Runs `f` on the document for `key`, creating an empty replica when
    /// this node has none, and persists whatever `f` added. Returns `None`
    /// for a tombstone (with whether it ended for good).
    /// `f` returns, besides its answer, the chunk of the one change it
    /// applied when it knows the document moved by exactly that change.
    fn absorb<R>(
        &self,
        key: DocKey,
        f: impl FnOnce(&mut SessionDoc) -> Result<(R, Option<Vec<u8>>), Error>,
    ) -> Result<Result<R, bool>, Error> {
        self.with_slot(key, |inner, state| {
            let was_missing = match state {
                SlotState::Tombstone { ended } => return Ok(Err(*ended)),
                SlotState::Missing => {
                    let doc = SessionDoc::empty(inner.actor.clone());
                    let summary = doc.summary()?;
                    *state = SlotState::Doc {
                        doc,
                        record: None,
                        summary,
                        deferred: Deferred::default(),
                    };
                    true
                }
                _ => false,
            };
            let SlotState::Doc { doc, .. } = state else {
                return Ok(Err(false));
            };
            let heads = doc.heads();
            let (out, exact) = match f(doc) {
                Ok(out) => out,
                Err(e) => {
                    if was_missing {
                        *state = SlotState::Missing;
                    }
                    return Err(e);
                }
            };
            let changed = doc.heads() != heads;
            if was_missing && doc.status(inner.now()) != Status::Live {
                // Hold a replica only of a live session: nothing usable arrived
                // yet, or the session is dead on arrival (expired, ended, or
                // collected here long ago and brought back by a node that was
                // away): it could never be served, so it is not kept.
                *state = SlotState::Missing;
            } else if changed {
                inner.persist_slot(key, state, &heads, inner.now(), exact)?;
                if was_missing {
                    inner.sessions.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Ok(out))
        })
    }

    /// A peer's change chunk.
    pub(crate) fn apply_push(&self, key: DocKey, changes: &[u8]) -> Ack {
        let refused = Ack {
            applied: false,
            missing_deps: false,
        };
        if changes.is_empty() {
            tracing::warn!(session = %key.short(), "empty push refused");
            return refused;
        }
        // Most pushes follow the replica's heads directly (the outbox sends
        // in commit order): those are persisted and applied later, in a batch.
        match self.with_slot_deferred(key, |inner, state| inner.defer(key, state, changes)) {
            Ok(true) => {
                return Ack {
                    applied: true,
                    missing_deps: false,
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(session = %key.short(), error = %e, "pushed change refused");
                return refused;
            }
        }
        match self.absorb(key, |doc| {
            let exact = doc.apply_change_chunk(changes)?;
            Ok((doc.has_missing_deps(), exact.then(|| changes.to_vec())))
        }) {
            Ok(Ok(missing_deps)) => Ack {
                applied: !missing_deps,
                missing_deps,
            },
            Ok(Err(_gone)) => refused,
            Err(e) => {
                tracing::warn!(session = %key.short(), error = %e, "pushed change refused");
                refused
            }
        }
    }

    /// Applies `peer`'s sync message about `key`, if any, and returns this
    /// node's next message: one visit to the document for both.
    pub(crate) fn sync_step(
        &self,
        peer: PeerId,
        key: DocKey,
        msg: Option<&[u8]>,
    ) -> Result<Step, Error> {
        let mut st = self.take_state(peer, key);
        let out = self.absorb(key, |doc| {
            if let Some(m) = msg {
                doc.receive_sync_message(&mut st, m)?;
            }
            Ok((doc.generate_sync_message(&mut st), None))
        });
        self.put_state(peer, key, st);
        Ok(match out? {
            Ok(Some(m)) => Step::Send(m),
            Ok(None) => Step::Quiet,
            Err(ended) => Step::Gone { ended },
        })
    }

    fn answer_sync(&self, peer: PeerId, item: &SyncItem) -> SyncReply {
        let key = DocKey::from_array(item.key.into_array());
        if item.first {
            self.reset_state(peer, key);
        }
        let step = self.sync_step(peer, key, Some(&item.msg));
        match step {
            Ok(Step::Send(m)) => SyncReply {
                msg: Some(m.into()),
                ..SyncReply::default()
            },
            Ok(Step::Quiet) => SyncReply::default(),
            Ok(Step::Gone { ended }) => SyncReply {
                gone: true,
                ended,
                ..SyncReply::default()
            },
            Err(e) => {
                tracing::warn!(session = %key.short(), error = %e, "peer sync message refused");
                SyncReply {
                    refused: Some(e.to_string()),
                    ..SyncReply::default()
                }
            }
        }
    }

    /// Keys in `[from, to)` that this node and the sender hold differently.
    fn answer_digest(&self, from: &[u8], to: &[u8], entries: &[DigestEntry]) -> Response {
        let to = (!to.is_empty()).then_some(to);
        let mine = match self.db.digest(from, to, self.now(), usize::MAX) {
            Ok(m) => m,
            Err(e) => {
                return Response::Refused {
                    reason: e.to_string(),
                }
            }
        };
        let theirs: std::collections::HashMap<[u8; 16], u64> = entries
            .iter()
            .map(|e| (e.key.into_array(), e.heads))
            .collect();
        let mut keys: Vec<serde_bytes::ByteArray<16>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (k, h) in &mine {
            seen.insert(*k.as_bytes());
            if theirs.get(k.as_bytes()) != Some(h) {
                keys.push(serde_bytes::ByteArray::new(*k.as_bytes()));
            }
        }
        for k in theirs.keys() {
            if !seen.contains(k) {
                keys.push(serde_bytes::ByteArray::new(*k));
            }
        }
        Response::Differ { keys }
    }

    /// A peer says `key` ended for good (it holds an invalidated or rotated
    /// tombstone): end it here too.
    pub(crate) fn end(&self, key: DocKey) -> Result<Pushes, Error> {
        let (_, pushes) = self.commit(key, &[Op::Invalidate])?;
        Ok(pushes)
    }

    pub(crate) fn digest_page(&self, from: &[u8]) -> Result<Vec<DigestEntry>, Error> {
        Ok(self
            .db
            .digest(from, None, self.now(), DIGEST_PAGE + 1)?
            .into_iter()
            .map(|(k, heads)| DigestEntry {
                key: serde_bytes::ByteArray::new(*k.as_bytes()),
                heads,
            })
            .collect())
    }

    pub(crate) fn fetch_timeout_ms(&self) -> u64 {
        self.repl.get().map_or(0, |r| ms(r.config.fetch_timeout))
    }
}

impl Handler for Inner {
    fn on_request(&self, peer: PeerId, req: Request) -> Response {
        match req {
            Request::Push { items } => Response::Acks {
                acks: items
                    .iter()
                    .map(|p| self.apply_push(DocKey::from_array(p.key.into_array()), &p.changes))
                    .collect(),
            },
            Request::Sync { items } => Response::Sync {
                items: items.iter().map(|i| self.answer_sync(peer, i)).collect(),
            },
            Request::Digest { from, to, entries } => self.answer_digest(&from, &to, &entries),
        }
    }

    fn on_connected(&self, peer: PeerId) {
        self.reset_peer(peer);
        // Both ends hear of the connection, and one exchange syncs both
        // ways: the end with the smaller peer id starts it (the periodic
        // round still runs from both).
        let starts = self.net.get().is_none_or(|net| net.local_peer_id() < peer);
        if let (true, Some(me)) = (starts, self.me.upgrade()) {
            self.runtime.spawn(super::replicate::anti_entropy(me, peer));
        }
    }

    fn on_disconnected(&self, peer: PeerId) {
        self.reset_peer(peer);
    }
}
