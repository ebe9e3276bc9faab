//! The answering side of replication: what this node does with a peer's
//! request. Runs on the blocking pool (the network calls it there) and
//! persists what arrived before it answers, so an ack means "on my disk".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use libp2p::PeerId;
use serde_bytes::ByteArray;
use tokio::sync::watch;

use super::lineage::{from_wire, held_to_wire};
use super::states::SyncStates;
use crate::engine::{Applied, Engine, Held, Step};
use crate::id::DocKey;
use crate::net::{Ack, DigestEntry, Handler, Pushed, Request, Response, SyncItem, SyncReply};

/// Answers peers' requests for one node.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(super) engine: Engine,
    pub(super) states: Arc<SyncStates>,
    /// Counts the requests that may have brought changes (pushes, sync
    /// rounds): a request waiting for a change to arrive watches it.
    pub(super) arrivals: watch::Sender<u64>,
    /// Own documents compared per digest answer at most.
    pub(super) differ_page: usize,
}

/// Own documents a digest answer compares at most: its keys stay far
/// under the wire's limit (about 18 bytes each) whatever the sender's
/// range holds here.
const DIFFER_PAGE: usize = 50_000;

impl Inbound {
    /// Answers for `engine`, with sync states of its own.
    pub(crate) fn new(engine: Engine) -> Self {
        Self {
            engine,
            states: Arc::default(),
            arrivals: watch::channel(0).0,
            differ_page: DIFFER_PAGE,
        }
    }

    fn answer_push(&self, p: &Pushed) -> Ack {
        let key = DocKey::from_array(p.key.into_array());
        match self
            .engine
            .apply_push(key, from_wire(p.lineage), &p.changes)
        {
            Applied::Yes => Ack {
                applied: true,
                missing_deps: false,
            },
            Applied::MissingDeps => Ack {
                applied: false,
                missing_deps: true,
            },
            Applied::No => Ack {
                applied: false,
                missing_deps: false,
            },
        }
    }

    fn answer_sync(&self, peer: PeerId, item: &SyncItem) -> SyncReply {
        let key = DocKey::from_array(item.key.into_array());
        let lineage = from_wire(item.lineage);
        let mut reply = SyncReply::default();
        if !item.ask {
            if item.first {
                self.states.reset(peer, key, lineage);
            }
            match self
                .states
                .step(&self.engine, peer, key, lineage, Some(&item.msg))
            {
                Ok(Step::Send(m)) => reply.msg = Some(m.into()),
                Ok(Step::Quiet) => {}
                Ok(Step::Gone { ended }) => {
                    return SyncReply {
                        gone: true,
                        ended,
                        ..SyncReply::default()
                    }
                }
                Err(e) => {
                    tracing::warn!(session = %key.short(), error = %e, "peer sync message refused");
                    reply.refused = Some(e.to_string());
                }
            }
        }
        if item.first || item.ask {
            // What this node holds now, for the peer to plan the rest.
            match self.engine.lineages(key) {
                Ok(Held::Gone { ended }) => {
                    reply.gone = true;
                    reply.ended = ended;
                }
                Ok(held) => reply.lineages = Some(held_to_wire(&held).unwrap_or_default()),
                Err(e) => {
                    reply.refused.get_or_insert_with(|| e.to_string());
                }
            }
        }
        reply
    }

    /// Keys in `[from, to)` that this node and the sender hold differently;
    /// when this node holds more than a page there, only those before the
    /// first key past the page, which the answer names.
    fn answer_digest(&self, from: &[u8], to: &[u8], entries: &[DigestEntry]) -> Response {
        let to = (!to.is_empty()).then_some(to);
        let mut mine = match self
            .engine
            .digest(from, to, self.differ_page.saturating_add(1))
        {
            Ok(m) => m,
            Err(e) => {
                return Response::Refused {
                    reason: e.to_string(),
                }
            }
        };
        let until = (mine.len() > self.differ_page)
            .then(|| mine.pop().map(|(k, _)| *k.as_bytes()))
            .flatten();
        let theirs: HashMap<[u8; 16], u64> = entries
            .iter()
            .filter(|e| until.is_none_or(|u| e.key.into_array() < u))
            .map(|e| (e.key.into_array(), e.heads))
            .collect();
        let mut keys: Vec<ByteArray<16>> = Vec::new();
        let mut seen = HashSet::new();
        for (k, h) in &mine {
            seen.insert(*k.as_bytes());
            if theirs.get(k.as_bytes()) != Some(h) {
                keys.push(ByteArray::new(*k.as_bytes()));
            }
        }
        for k in theirs.keys() {
            if !seen.contains(k) {
                keys.push(ByteArray::new(*k));
            }
        }
        Response::Differ {
            keys,
            until: until.map(ByteArray::new),
            now: Some(self.engine.now()),
        }
    }
}

impl Handler for Inbound {
    fn on_request(&self, peer: PeerId, req: Request) -> Response {
        let kind = match &req {
            Request::Push { .. } => "push",
            Request::Sync { .. } => "sync",
            Request::Digest { .. } => "digest",
        };
        let _span = tracing::debug_span!("replication.inbound", %peer, kind).entered();
        let response = match req {
            Request::Push { items } => Response::Acks {
                acks: items.iter().map(|p| self.answer_push(p)).collect(),
            },
            Request::Sync { items } => Response::Sync {
                items: items.iter().map(|i| self.answer_sync(peer, i)).collect(),
            },
            Request::Digest { from, to, entries } => {
                return self.answer_digest(&from, &to, &entries)
            }
        };
        self.arrivals.send_modify(|n| *n = n.wrapping_add(1));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::Op;
    use crate::engine::Loaded;
    use crate::net::{Lineage, Pushed, SyncItem};
    use crate::{Config, SessionId};
    use serde_bytes::ByteBuf;

    #[test]
    fn malformed_peer_messages_are_refused_without_harm() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(Config::new(dir.path()), None).unwrap();
        let inbound = Inbound::new(engine.clone());
        let id = SessionId::random();
        let ops = [Op::Insert {
            key: "k".into(),
            json: "1".into(),
        }];
        engine.create(id.doc_key(), &ops).unwrap();
        let key = ByteArray::new(*id.doc_key().as_bytes());
        let peer = PeerId::random();
        let garbage = [
            vec![],
            vec![0x42],
            vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
            vec![0xff; 300],
        ];
        for bytes in &garbage {
            for req in [
                Request::Push {
                    items: vec![Pushed {
                        key,
                        changes: ByteBuf::from(bytes.clone()),
                        lineage: Lineage::default(),
                    }],
                },
                Request::Sync {
                    items: vec![SyncItem {
                        key,
                        msg: ByteBuf::from(bytes.clone()),
                        first: true,
                        lineage: Lineage::default(),
                        ask: false,
                    }],
                },
                Request::Push {
                    items: vec![Pushed {
                        key: ByteArray::new([9; 16]),
                        changes: ByteBuf::from(bytes.clone()),
                        lineage: Lineage::default(),
                    }],
                },
            ] {
                let resp = inbound.on_request(peer, req);
                assert!(
                    match &resp {
                        Response::Refused { .. } => true,
                        Response::Acks { acks } => acks.iter().all(|a| !a.applied),
                        Response::Sync { items } => items.iter().all(|i| i.refused.is_some()),
                        Response::Differ { .. } => false,
                    },
                    "{resp:?}"
                );
            }
        }
        let bogus = DigestEntry {
            key: ByteArray::new([1; 16]),
            heads: 5,
        };
        let req = Request::Digest {
            from: ByteBuf::from(vec![0xff; 40]),
            to: ByteBuf::new(),
            entries: vec![bogus],
        };
        assert!(matches!(
            inbound.on_request(peer, req),
            Response::Differ { .. }
        ));
        // The session is intact and nothing foreign was stored.
        match engine.load(id.doc_key(), None).unwrap().0 {
            Loaded::Live(view) => assert_eq!(view.attributes["k"], 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.session_count(), 1);
        engine.close(true).unwrap();
    }
}
