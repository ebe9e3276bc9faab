//! What arrives from peers, applied under each document's lock and
//! persisted before anything is answered: a pushed change, one step of
//! automerge's sync protocol, a digest page, the end of a session.

use automerge::sync;

use super::deferred::defer;
use super::generations::{accepts, advance, lowest_for, step};
use super::requests::commit;
use super::shared::{ms, Pushes, Shared};
use super::slots::{with_slot, with_slot_deferred};
use crate::clock::Millis;
use crate::doc::{Op, SessionDoc, Status};
use crate::events::Origin;
use crate::id::DocKey;
use crate::store::{Deferred, LineageId, SlotState};
use crate::Error;

/// What became of a pushed change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Persisted here (applied now or deferred).
    Yes,
    /// Persisted is not enough: it waits for changes this node lacks.
    MissingDeps,
    /// Refused: malformed, for a tombstoned session, or not persisted.
    No,
}

/// One step of a sync exchange from this node's side.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this message.
    Send(Vec<u8>),
    /// Nothing to say.
    Quiet,
    /// The session is a tombstone here; `ended`: invalidated or rotated.
    Gone { ended: bool },
}

/// Runs `f` on lineage `target` of `key`'s document, creating an empty
/// replica when this node has none, and persists whatever `f` added.
/// Returns `Err(ended)` for a tombstone. `f` returns, besides its answer,
/// the chunk of the one change it applied when it knows the document moved
/// by exactly that change. A lineage other than the current one takes a
/// generation step (see `generations.rs`).
fn absorb<R>(
    shared: &Shared,
    key: DocKey,
    target: LineageId,
    f: impl FnOnce(&mut SessionDoc) -> Result<(R, Option<Vec<u8>>), Error>,
) -> Result<Result<R, bool>, Error> {
    with_slot(shared, key, |state| {
        // What the slot goes back to when nothing live arrives: nothing, or
        // an expiry tombstone, which yields to a copy still live elsewhere
        // (accessed there after it expired here). An end never yields.
        let prior_tombstone = matches!(state, SlotState::Tombstone { ended: false });
        let was_missing = match state {
            SlotState::Tombstone { ended: true } => return Ok(Err(true)),
            SlotState::Missing | SlotState::Tombstone { ended: false } => {
                let mut doc = SessionDoc::empty(shared.actor());
                let summary = shared.summary_of(&mut doc, target.gen)?;
                *state = SlotState::Doc {
                    doc,
                    record: None,
                    summary,
                    deferred: Deferred::default(),
                    lineage: target,
                    others: Vec::new(),
                };
                true
            }
            _ => false,
        };
        let SlotState::Doc {
            doc,
            lineage,
            others,
            ..
        } = state
        else {
            return Ok(Err(false));
        };
        if *lineage != target {
            accepts(*lineage, others, target, shared.config().generations_kept())?;
            let lowest = lowest_for(*lineage, others, target);
            // What the step makes, every node that has what arrived makes
            // as well: nothing to push from here.
            let (out, _) = step(shared, key, state, lowest, None, Some(target), |chain| {
                let l = chain.lineage_mut(target.gen, target.base_hash());
                f(&mut l.doc).map(|(out, _)| out)
            })?;
            carry_late(shared, key, state);
            return Ok(Ok(out));
        }
        let heads = doc.heads();
        let (out, exact) = match f(doc) {
            Ok(out) => out,
            Err(e) => {
                if was_missing {
                    *state = prior(prior_tombstone);
                }
                return Err(e);
            }
        };
        let changed = doc.heads() != heads;
        let now = shared.now();
        let mut status = doc.status(now);
        if was_missing && status == Status::Live && forgettable(shared, doc, now) {
            status = Status::Expired;
        }
        if was_missing && status != Status::Live {
            // Hold a replica only of a live session: nothing usable arrived
            // yet, or the session is dead on arrival (expired, ended, or
            // collected here long ago and brought back by a node that was
            // away): it could never be served, so it is not kept, and a
            // dead one is answered like a tombstone (nothing was stored).
            *state = prior(prior_tombstone);
            if status != Status::Empty {
                return Ok(Err(matches!(
                    status,
                    Status::Invalidated | Status::Rotated(_)
                )));
            }
        } else if changed {
            let persisted = shared.persist(key, state, &heads, now, exact, Origin::Replicated);
            if persisted.is_err() && was_missing {
                *state = prior(prior_tombstone);
            }
            persisted?;
            if was_missing {
                shared.count_session(true);
            }
            // Before a switch: a late change that ends a generation of a
            // rotated session would otherwise sink into the next one's base.
            carry_late(shared, key, state);
            if let Err(e) = advance(shared, key, state) {
                if matches!(state, SlotState::Unloaded) {
                    *state = shared.read(key)?;
                }
                tracing::warn!(session = %key.short(), error = %e, "generation switch failed; will retry");
            }
        }
        Ok(Ok(out))
    })
}

/// Carries the changes of `key` (whose document `state` a peer's changes
/// just reached) that its rotation had not seen into its successor, when
/// it was rotated and this node holds the successor (see
/// `doc/rotation.rs`). Every node that holds both makes the same changes;
/// the others hear of them through anti-entropy. A failure is logged: the
/// late change stays in the old document, and the next change there tries
/// again.
fn carry_late(shared: &Shared, key: DocKey, state: &mut SlotState) {
    let SlotState::Doc { doc, summary, .. } = state else {
        return;
    };
    if !matches!(summary.ended, Some(Status::Rotated(_))) {
        return;
    }
    let Some((successor, late)) = doc.late_changes() else {
        return;
    };
    // A document naming itself (only a hostile peer writes one) would lock
    // its own slot again.
    if late.is_empty() || successor == key {
        return;
    }
    // Into the successor's first generation, where the rotation's copy is:
    // what it holds past that, a generation step carries on.
    let carried = absorb(shared, successor, LineageId::FIRST, |doc| {
        let chunk = doc.carry_late(successor, &late)?;
        Ok((chunk.is_some(), chunk))
    });
    match carried {
        Ok(Ok(true)) => {
            tracing::debug!(session = %key.short(), successor = %successor.short(), "late changes carried to the successor");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(session = %key.short(), error = %e, "late changes not carried to the successor; will retry");
        }
    }
}

/// The state a slot returns to when what arrived is not kept.
fn prior(expiry_tombstone: bool) -> SlotState {
    if expiry_tombstone {
        SlotState::Tombstone { ended: false }
    } else {
        SlotState::Missing
    }
}

/// Whether a copy arriving for a key this node does not hold could be of a
/// session that ended here and whose tombstone is forgotten: one with no
/// absolute deadline (a tombstone outlives every copy of a session that
/// has one, see the sweep) last used before the GC horizon. Such a copy is
/// not taken in: a logout must not come back from a node that was away.
fn forgettable(shared: &Shared, doc: &SessionDoc, now: Millis) -> bool {
    let horizon = now.saturating_sub(ms(shared.config().gc_horizon()));
    doc.absolute_expiry_ms() == 0 && doc.last_access().is_some_and(|at| at < horizon)
}

/// A peer's change chunk for lineage `lineage` of `key`.
pub(crate) fn apply_push(
    shared: &Shared,
    key: DocKey,
    lineage: LineageId,
    changes: &[u8],
) -> Applied {
    if changes.is_empty() {
        tracing::warn!(session = %key.short(), "empty push refused");
        return Applied::No;
    }
    if let Err(e) = crate::doc::change_inflated_size(changes, shared.config().max_inflated_bytes())
    {
        tracing::warn!(session = %key.short(), error = %e, "pushed change refused");
        return Applied::No;
    }
    // Most pushes follow the replica's heads directly (peers send in commit
    // order): those are persisted and applied later, in a batch.
    let deferred = with_slot_deferred(shared, key, |state| match state {
        // A session that ended takes a change at once: a rotated one
        // carries it to its successor.
        SlotState::Doc {
            lineage: cur,
            summary,
            ..
        } if *cur == lineage && summary.ended.is_none() => defer(shared, key, state, changes),
        _ => Ok(false),
    });
    match deferred {
        Ok(true) => return Applied::Yes,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(session = %key.short(), error = %e, "pushed change refused");
            return Applied::No;
        }
    }
    let applied = absorb(shared, key, lineage, |doc| {
        let exact = doc.apply_change_chunk(changes)?;
        Ok((doc.has_missing_deps(), exact.then(|| changes.to_vec())))
    });
    match applied {
        Ok(Ok(true)) => Applied::MissingDeps,
        Ok(Ok(false)) => Applied::Yes,
        Ok(Err(_gone)) => Applied::No,
        Err(e) => {
            tracing::warn!(session = %key.short(), error = %e, "pushed change refused");
            Applied::No
        }
    }
}

/// Applies the peer's sync message about lineage `lineage` of `key`, if
/// any, and returns this node's next message: one visit to the document for
/// both. `state` is the sync state this node keeps for that peer and
/// lineage.
pub(crate) fn sync_step(
    shared: &Shared,
    key: DocKey,
    lineage: LineageId,
    state: &mut sync::State,
    msg: Option<&[u8]>,
) -> Result<Step, Error> {
    let out = absorb(shared, key, lineage, |doc| {
        if let Some(m) = msg {
            doc.receive_sync_message(state, m, shared.config().max_inflated_bytes())?;
        }
        Ok((doc.generate_sync_message(state), None))
    })?;
    Ok(match out {
        Ok(Some(m)) => Step::Send(m),
        Ok(None) => Step::Quiet,
        Err(ended) => Step::Gone { ended },
    })
}

/// A peer says `key` ended for good (it holds an invalidated or rotated
/// tombstone): end it here too. A session that ended here already is
/// moved in the expiry index to where an end belongs (the tombstone grace
/// from now) if it sits later: filed while this node's clock ran ahead, it
/// would otherwise wait that far ahead for the sweeper and count as live.
pub(crate) fn end(shared: &Shared, key: DocKey) -> Result<Pushes, Error> {
    let ended_here = with_slot(shared, key, |state| {
        let SlotState::Doc {
            record: Some(rec),
            summary,
            ..
        } = state
        else {
            return Ok(false);
        };
        if summary.ended.is_none() {
            return Ok(false);
        }
        let at = shared.index_time(summary, shared.now());
        if rec.deadline > at {
            *rec = shared.store()?.reschedule(key, *rec, at)?;
        }
        Ok(true)
    })?;
    if ended_here {
        // Nothing to commit: an ended session takes no more changes.
        return Ok(Vec::new());
    }
    let (_, pushes) = commit(shared, key, &[Op::Invalidate])?;
    Ok(pushes)
}

/// Documents with keys in `[from, to)` whose deadline has not passed, with
/// their heads hash; at most `limit`.
pub(crate) fn digest(
    shared: &Shared,
    from: &[u8],
    to: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(DocKey, u64)>, Error> {
    let now: Millis = shared.now();
    Ok(shared.store()?.digest(from, to, now, limit)?)
}

/// [`digest`] of the live sessions only: those whose own deadline is still
/// ahead. An ended session sits in the index until its tombstone grace
/// after the moment this node learned of the end, which differs from node
/// to node; a live one at its own deadline plus the grace, the same on
/// every node holding the same changes.
pub(crate) fn live_digest(
    shared: &Shared,
    from: &[u8],
    limit: usize,
) -> Result<Vec<(DocKey, u64)>, Error> {
    let grace = ms(shared.config().tombstone_grace());
    let after = shared.now().saturating_add(grace).saturating_add(1);
    Ok(shared.store()?.digest(from, None, after, limit)?)
}
