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
        *state = read_or_quarantine(shared, key)?;
    }
    let result = f(&mut state);
    let charge = Shared::charge(&state);
    drop(state);
    shared.cache().charge(key, charge);
    result
}

/// Reads `key` from disk. Stored bytes that do not load (damaged on disk,
/// or a change that should never have been accepted) are moved aside and
/// the error returned once: the key then reads as missing, so a peer's
/// copy can take its place and no request or sweep trips over it again.
fn read_or_quarantine(shared: &Shared, key: DocKey) -> Result<SlotState, Error> {
    match shared.read(key) {
        Err(e) if undecodable(&e) => {
            let moved = shared.store()?.quarantine(key, None, shared.now());
            shared.metrics.quarantined.inc();
            tracing::error!(
                session = %key.short(),
                error = %e,
                moved = ?moved,
                "stored session does not load; moved to quarantine"
            );
            Err(e)
        }
        other => other,
    }
}

/// Whether `e` says stored bytes do not decode (not that the disk failed).
pub(crate) fn undecodable(e: &Error) -> bool {
    matches!(
        e,
        Error::Store(crate::store::Error::Corrupt(_) | crate::store::Error::Document(_))
    )
}
