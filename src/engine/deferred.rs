//! Deferred application of pushed changes on a replica (see
//! [`Deferred`](crate::store::Deferred)): a push that follows the
//! document's heads is persisted and acked at once and applied in a batch
//! later, because automerge's cost of applying grows with the document's
//! history per batch, not per change.

use super::generations::advance;
use super::shared::{digest_hash, ms, Shared};
use crate::doc::{change_header, may_write, written_keys, ChangeHeader, DEADLINE_KEYS};
use crate::events::Origin;
use crate::id::DocKey;
use crate::store::SlotState;
use crate::Error;

/// Pushed changes a replica holds back at most before applying them.
const DEFER_MAX: usize = 32;

/// Applies the deferred changes of the document in `state`, refreshes its
/// summary and moves it in the expiry index if its deadline moved. The
/// changes are on disk already; if they do not apply, the slot is reset and
/// the error returned (the next access reads the disk again). A document
/// whose generation is marked (by those changes, or by a switch that failed
/// earlier) moves to the next generation.
pub(crate) fn settle(shared: &Shared, key: DocKey, state: &mut SlotState) -> Result<(), Error> {
    let result = apply_deferred(shared, key, state);
    if let Err(e) = &result {
        tracing::error!(session = %key.short(), error = %e, "deferred changes did not apply");
        *state = SlotState::Unloaded;
        return result;
    }
    // What the switch makes, every node that has the mark makes as well:
    // nothing to push from here.
    if let Err(e) = advance(shared, key, state) {
        if matches!(state, SlotState::Unloaded) {
            *state = shared.read(key)?;
        }
        tracing::warn!(session = %key.short(), error = %e, "generation switch failed; will retry");
    }
    Ok(())
}

fn apply_deferred(shared: &Shared, key: DocKey, state: &mut SlotState) -> Result<(), Error> {
    let SlotState::Doc {
        doc,
        summary,
        deferred,
        ..
    } = state
    else {
        return Ok(());
    };
    if deferred.chunks.is_empty() {
        return Ok(());
    }
    let chunks = std::mem::take(&mut deferred.chunks);
    let mut expected = std::mem::take(&mut deferred.heads);
    expected.sort();
    doc.apply_change_chunks(&chunks)?;
    let mut heads = doc.heads();
    heads.sort();
    if heads != expected {
        // More than the deferred changes applied (none should): persist the
        // rest and read the summary in full.
        shared.persist(
            key,
            state,
            &expected,
            shared.now(),
            None,
            Origin::Replicated,
        )?;
        return Ok(());
    }
    let written: Option<Vec<String>> = chunks
        .iter()
        .map(|c| written_keys(c))
        .collect::<Option<Vec<_>>>()
        .map(|keys| keys.concat());
    let ended = summary.ended;
    summary.update(doc, written.as_deref())?;
    shared.clamp(summary);
    shared.emit_changes(key, true, ended, summary, Origin::Replicated);
    let SlotState::Doc {
        record: Some(rec),
        summary,
        ..
    } = state
    else {
        return Ok(());
    };
    let at = shared.index_time(summary, shared.now());
    if at != rec.deadline {
        *rec = shared.store()?.reschedule(key, *rec, at)?;
    }
    Ok(())
}

/// Persists a pushed change without applying it, when it follows the
/// document's (deferred) heads directly and neither the batch nor the
/// change log is full. A change that may name the principal, end the
/// session or change its timeouts is applied at once: the principal index
/// and the expiry index (where the sweeper and fingerprints look) are
/// written from the applied summary, and a deferred change reaches them
/// only when the session is next read here — after a restart, maybe never.
/// A change arriving when the session's place in the expiry index is less
/// than half its idle timeout away is applied too: deferred touches would
/// leave it filed at an access long past. Returns `false` (nothing done)
/// when the change cannot be deferred: the caller applies it at once,
/// together with the batch, and that write compacts the log when it is
/// due.
pub(crate) fn defer(
    shared: &Shared,
    key: DocKey,
    state: &mut SlotState,
    chunk: &[u8],
) -> Result<bool, Error> {
    let SlotState::Doc {
        doc,
        record: Some(rec),
        summary,
        deferred,
        lineage,
        ..
    } = state
    else {
        return Ok(false);
    };
    // Where the index files the session lags behind the accesses a deferred
    // touch records; past half the idle timeout before that filed time, a
    // change is applied, which files the session anew.
    let now = shared.now();
    let soon = now
        .saturating_add(ms(shared.config().tombstone_grace()))
        .saturating_add(summary.max_idle_ms / 2);
    if deferred.chunks.len() + 1 >= DEFER_MAX
        || rec.log_count + 1 >= shared.config().compact_every()
        || rec.deadline <= soon
        || super::principals::may_write_principal(chunk)
        || may_write(chunk, &DEADLINE_KEYS)
    {
        return Ok(false);
    }
    let Some(ChangeHeader {
        hash,
        deps,
        actor,
        seq,
    }) = change_header(chunk)
    else {
        return Ok(false);
    };
    let mut heads = if deferred.chunks.is_empty() {
        doc.heads()
    } else {
        deferred.heads.clone()
    };
    // A first change (no dependencies) or one whose dependencies are not all
    // current heads may be known already or need others; and with changes
    // queued for missing dependencies, this one may release them: apply it
    // at once.
    if deps.is_empty()
        || heads.contains(&hash)
        || !deps.iter().all(|d| heads.contains(d))
        || doc.has_missing_deps()
    {
        return Ok(false);
    }
    // A change that reuses an (actor, seq) the document or the batch holds
    // would be persisted and acked, then fail every load of the document
    // (automerge refuses duplicate seqs): it goes the way that applies
    // before persisting, and is refused there.
    if deferred.chunks.is_empty() {
        deferred.seqs = doc.max_seqs();
    }
    if deferred.seqs.get(&actor).is_some_and(|s| *s >= seq) {
        return Ok(false);
    }
    heads.retain(|h| !deps.contains(h));
    heads.push(hash);
    let at = shared.index_time(summary, now);
    *rec = shared.store()?.append(
        key,
        chunk,
        Some(*rec),
        *lineage,
        at,
        digest_hash(*lineage, &heads),
    )?;
    deferred.chunks.push(chunk.to_vec());
    deferred.heads = heads;
    deferred.seqs.insert(actor, seq);
    Ok(true)
}
