//! automerge sync states, one per (peer, document, lineage): what this node
//! knows the peer has, so a sync exchange sends only what the peer lacks.
//! Every exchange starts from a fresh state, and a new connection drops the
//! peer's states, so a lost state costs at most an extra round.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use automerge::sync;
use libp2p::PeerId;

use crate::engine::{Engine, Step};
use crate::id::DocKey;
use crate::store::LineageId;
use crate::Error;

type Key = (PeerId, DocKey, LineageId);

/// Sync states kept at most; past this they are all dropped (a dropped
/// state only costs an extra round).
const MAX_SYNC_STATES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct SyncStates {
    // std Mutex: held for a map lookup only, never across I/O or an await.
    map: Mutex<HashMap<Key, sync::State>>,
}

impl SyncStates {
    fn map(&self) -> MutexGuard<'_, HashMap<Key, sync::State>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the state for `k` out (a fresh one if none).
    fn take(&self, k: Key) -> sync::State {
        self.map().remove(&k).unwrap_or_default()
    }

    /// Puts the state for `k` back.
    fn put(&self, k: Key, state: sync::State) {
        let mut map = self.map();
        if map.len() >= MAX_SYNC_STATES {
            map.clear();
        }
        map.insert(k, state);
    }

    /// Starts the state for (`peer`, `key`, `lineage`) afresh.
    pub(crate) fn reset(&self, peer: PeerId, key: DocKey, lineage: LineageId) {
        self.map().remove(&(peer, key, lineage));
    }

    /// Drops every state shared with `peer`.
    pub(crate) fn forget_peer(&self, peer: PeerId) {
        self.map().retain(|(p, _, _), _| *p != peer);
    }

    /// One step of the exchange about lineage `lineage` of `key` with
    /// `peer`: applies the peer's message, if any, and returns this node's
    /// next one, keeping the state in between.
    pub(crate) fn step(
        &self,
        engine: &Engine,
        peer: PeerId,
        key: DocKey,
        lineage: LineageId,
        msg: Option<&[u8]>,
    ) -> Result<Step, Error> {
        let k = (peer, key, lineage);
        let mut state = self.take(k);
        let step = engine.sync_step(key, lineage, &mut state, msg);
        self.put(k, state);
        step
    }
}
