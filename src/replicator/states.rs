//! automerge sync states, one per (peer, document): what this node knows
//! the peer has, so a sync exchange sends only what the peer lacks. Every
//! exchange starts from a fresh state, and a new connection drops the
//! peer's states, so a lost state costs at most an extra round.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use automerge::sync;
use libp2p::PeerId;

use crate::engine::{Engine, Step};
use crate::id::DocKey;
use crate::Error;

/// Sync states kept at most; past this they are all dropped (a dropped
/// state only costs an extra round).
const MAX_SYNC_STATES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct SyncStates {
    // std Mutex: held for a map lookup only, never across I/O or an await.
    map: Mutex<HashMap<(PeerId, DocKey), sync::State>>,
}

impl SyncStates {
    fn map(&self) -> MutexGuard<'_, HashMap<(PeerId, DocKey), sync::State>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the state for (`peer`, `key`) out (a fresh one if none).
    fn take(&self, peer: PeerId, key: DocKey) -> sync::State {
        self.map().remove(&(peer, key)).unwrap_or_default()
    }

    /// Puts the state for (`peer`, `key`) back.
    fn put(&self, peer: PeerId, key: DocKey, state: sync::State) {
        let mut map = self.map();
        if map.len() >= MAX_SYNC_STATES {
            map.clear();
        }
        map.insert((peer, key), state);
    }

    /// Starts the state for (`peer`, `key`) afresh.
    pub(crate) fn reset(&self, peer: PeerId, key: DocKey) {
        self.map().remove(&(peer, key));
    }

    /// Drops every state shared with `peer`.
    pub(crate) fn forget_peer(&self, peer: PeerId) {
        self.map().retain(|(p, _), _| *p != peer);
    }

    /// One step of the exchange about `key` with `peer`: applies the peer's
    /// message, if any, and returns this node's next one, keeping the state
    /// in between.
    pub(crate) fn step(
        &self,
        engine: &Engine,
        peer: PeerId,
        key: DocKey,
        msg: Option<&[u8]>,
    ) -> Result<Step, Error> {
        let mut state = self.take(peer, key);
        let step = engine.sync_step(key, &mut state, msg);
        self.put(peer, key, state);
        step
    }
}
