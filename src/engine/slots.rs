//! Access to one document: lock its slot in the cache, read it from disk
//! on first use, run the operation, and tell the cache what the document
//! now costs. A slot's lock serialises every change to the document on
//! this node, which is what keeps one process from writing two different
//! changes under the same (actor, seq).

use super::deferred::settle;
use super::shared::Shared;
use crate::id::DocKey;
use crate::store::SlotState;
use crate::Error;

/// Runs `f` on `key`'s slot with the whole document: read from disk on
/// first use, deferred changes applied.
pub(crate) fn with_slot<R>(
    shared: &Shared,
    key: DocKey,
    f: impl FnOnce(&mut SlotState) -> Result<R, Error>,
) -> Result<R, Error> {
    with_slot_deferred(shared, key, |state| {
        settle(shared, key, state)?;
        f(state)
    })
}

/// [`with_slot`] without applying deferred changes: for a push, which may
/// defer one more.
pub(crate) fn with_slot_deferred<R>(
    shared: &Shared,
    key: DocKey,
    f: impl FnOnce(&mut SlotState) -> Result<R, Error>,
) -> Result<R, Error> {
    let slot = shared.cache().slot(key);
    let mut state = slot.lock();
    if matches!(*state, SlotState::Unloaded) {
        *state = shared.read(key)?;
    }
    let result = f(&mut state);
    let charge = Shared::charge(&state);
    drop(state);
    shared.cache().charge(key, charge);
    result
}
