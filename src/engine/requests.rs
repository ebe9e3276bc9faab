//! What a request does to a session on this node: load (recording an
//! access now and then), create, commit, rotate. Every write follows one
//! rule: apply to the latest document, check the limits, commit, persist;
//! if persisting fails, the slot is reset so the next access reads what is
//! really on disk, and the caller gets the error. Each persisted change
//! comes back as a chunk for the replicator to push.

use automerge::ChangeHash;

use super::generations;
use super::shared::{ms, Push, Pushes, Shared};
use super::slots::with_slot;
use super::view::{SessionView, Version};
use crate::clock::Millis;
use crate::doc::{Op, SessionDoc, Status};
use crate::events::Origin;
use crate::id::DocKey;
use crate::store::{Deferred, LineageId, SlotState};
use crate::Error;

/// What a load found.
#[derive(Debug)]
pub(crate) enum Loaded {
    Live(SessionView),
    /// Live here, but older than the state the caller has seen: it lacks
    /// some of the changes of that version.
    Behind(SessionView),
    /// Known here, but invalidated, rotated or tombstoned as such.
    Gone,
    /// Expired as far as this node knows: a peer may hold later accesses
    /// (the user went on there while this node was cut off).
    Expired,
    /// Never heard of: peers may know it.
    Missing,
}

/// The live session `key`, checked against `seen` (the state the client
/// has seen, if it says), recording an access when one is due.
pub(crate) fn load(
    shared: &Shared,
    key: DocKey,
    seen: Option<&Version>,
) -> Result<(Loaded, Pushes), Error> {
    // A document evicted from the cache left its summary: enough for a read
    // that records no access, when its heads show it holds what was seen.
    let now = shared.now();
    let kept = shared.cache().with_kept(key, |summary| {
        match summary.status(now) {
            Status::Live => {}
            Status::Expired => return Some(Loaded::Expired),
            _ => return Some(Loaded::Gone),
        }
        let fresh = seen.is_none_or(|v| v.within(summary.gen, &summary.heads));
        let narrow = summary.heads.len() <= Version::MAX_HEADS;
        (fresh && narrow && !shared.touch_due(summary, now))
            .then(|| Loaded::Live(SessionView::of(summary)))
    });
    if let Some(Some(found)) = kept {
        return Ok((found, Vec::new()));
    }
    with_slot(shared, key, |state| {
        let now = shared.now();
        let SlotState::Doc { summary, .. } = state else {
            let found = match state {
                SlotState::Missing => Loaded::Missing,
                SlotState::Tombstone { ended: false } => Loaded::Expired,
                _ => Loaded::Gone,
            };
            return Ok((found, Vec::new()));
        };
        match summary.status(now) {
            Status::Live => {}
            Status::Expired => return Ok((Loaded::Expired, Vec::new())),
            _ => return Ok((Loaded::Gone, Vec::new())),
        }
        let exact =
            seen.is_some_and(|v| v.gen() == summary.gen && v.heads() == summary.heads.as_slice());
        let fresh = match seen {
            Some(v) => includes(shared, key, state, v)?,
            None => true,
        };
        let SlotState::Doc { doc, summary, .. } = state else {
            return Ok((Loaded::Gone, Vec::new()));
        };
        // More concurrent heads than a token holds: a touch merges them
        // into one, so the token names the whole state.
        let wide = summary.heads.len() > Version::MAX_HEADS;
        let mut pushes = Vec::new();
        // No access is recorded on a state older than the client's: the
        // request is about to be refused or served as stale.
        if fresh && (wide || shared.touch_due(summary, now)) {
            let heads = doc.heads();
            if wide {
                doc.touch_always(shared.node_id(), now)?;
            } else {
                doc.touch(shared.node_id(), now)?;
            }
            pushes.extend(commit_slot(shared, key, state, &heads, now)?);
        }
        let found = match live_view(state, now) {
            Some(mut view) if fresh => {
                // The client saw exactly this state: an access recorded now
                // is the only news, and not worth a new token (one more
                // cookie that could overwrite the token of the user's write
                // answered meanwhile).
                if let (true, Some(seen)) = (exact, seen) {
                    view.version = seen.clone();
                }
                Loaded::Live(view)
            }
            Some(view) => Loaded::Behind(view),
            None => Loaded::Gone,
        };
        Ok((found, pushes))
    })
}

/// Whether this node holds every change of `seen` for `key` (without
/// recording an access).
pub(crate) fn holds(shared: &Shared, key: DocKey, seen: &Version) -> Result<bool, Error> {
    if shared
        .cache()
        .with_kept(key, |summary| seen.within(summary.gen, &summary.heads))
        == Some(true)
    {
        return Ok(true);
    }
    with_slot(shared, key, |state| includes(shared, key, state, seen))
}

/// Whether the document in `state` holds every change of `seen`. A version
/// of an earlier generation is held when that generation's canonical
/// lineage here holds it (whatever reached it was carried forward); one
/// this node does not keep (any more) is taken as held: it is older than
/// every generation kept here.
fn includes(
    shared: &Shared,
    key: DocKey,
    state: &mut SlotState,
    seen: &Version,
) -> Result<bool, Error> {
    let SlotState::Doc {
        doc,
        summary,
        others,
        ..
    } = state
    else {
        return Ok(false);
    };
    Ok(match seen.gen().cmp(&summary.gen) {
        std::cmp::Ordering::Equal => {
            seen.within(summary.gen, &summary.heads) || doc.has_changes(seen.heads())
        }
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Less => {
            match others
                .iter()
                .find(|l| l.id.gen == seen.gen() && l.canonical)
            {
                None => true,
                Some(l) => {
                    let bytes = shared.store()?.load_lineage(key, l)?;
                    let mut old = SessionDoc::load(&bytes, shared.actor())
                        .map_err(crate::store::Error::from)?;
                    old.has_changes(seen.heads())
                }
            }
        }
    })
}

/// Creates `key` with the node's default timeouts (or, for a rotation, the
/// timeouts and attributes of `from`) and applies `ops`.
pub(crate) fn create(
    shared: &Shared,
    key: DocKey,
    ops: &[Op],
    from: Option<(&SessionDoc, usize)>,
) -> Result<(SessionView, Pushes), Error> {
    with_slot(shared, key, |state| {
        if !matches!(state, SlotState::Missing) {
            return Err(Error::IdCollision);
        }
        let now = shared.now();
        let absolute = match ms(shared.config().absolute_timeout()) {
            0 => 0,
            t => now.saturating_add(t),
        };
        let idle = ms(shared.config().max_idle());
        let node = shared.node_id();
        let mut doc = SessionDoc::new(shared.actor(), node, now, idle, absolute);
        let before = from.map_or(0, |(_, size)| size);
        if let Some((old, _)) = from {
            doc.set_expiry(
                old.expiry_mode(),
                old.max_idle_ms(),
                old.absolute_expiry_ms(),
            )?;
            doc.copy_attributes_from(old)?;
        }
        apply_all(shared, &mut doc, ops)?;
        let summary = shared.summary_of(&mut doc, LineageId::FIRST.gen)?;
        shared.check_size(before, summary.state_size())?;
        *state = SlotState::Doc {
            doc,
            record: None,
            summary,
            deferred: Deferred::default(),
            lineage: LineageId::FIRST,
            others: Vec::new(),
        };
        let pushes = match commit_slot(shared, key, state, &[], now) {
            Ok(pushes) => pushes,
            Err(e) => {
                *state = SlotState::Missing;
                return Err(e);
            }
        };
        shared.count_session(true);
        let SlotState::Doc { summary, .. } = state else {
            return Err(crate::store::Error::Corrupt("created session vanished".into()).into());
        };
        Ok((SessionView::of(summary), pushes))
    })
}

/// Applies `ops` to the live session `key`; `None` when it is gone.
pub(crate) fn commit(
    shared: &Shared,
    key: DocKey,
    ops: &[Op],
) -> Result<(Option<SessionView>, Pushes), Error> {
    with_slot(shared, key, |state| {
        let now = shared.now();
        let SlotState::Doc { doc, summary, .. } = state else {
            return Ok((None, Vec::new()));
        };
        if summary.status(now) != Status::Live {
            return Ok((None, Vec::new()));
        }
        let after = summary.after(ops);
        shared.check_size(summary.state_size(), after.size)?;
        if let Some(key) = after.overflow {
            return Err(crate::doc::Error::Overflow { key }.into());
        }
        let heads = doc.heads();
        apply_all(shared, doc, ops)?;
        let pushes = commit_slot(shared, key, state, &heads, now)?;
        // An invalidation in `ops` is answered like any other end.
        Ok((live_view(state, now), pushes))
    })
}

/// Moves the live session `old` to `new` with its attributes, applies
/// `ops` there and ends `old`; `None` when `old` is gone.
pub(crate) fn rotate(
    shared: &Shared,
    old: DocKey,
    new: DocKey,
    ops: &[Op],
) -> Result<(Option<SessionView>, Pushes), Error> {
    with_slot(shared, old, |state| {
        let now = shared.now();
        let SlotState::Doc { doc, summary, .. } = state else {
            return Ok((None, Vec::new()));
        };
        if summary.status(now) != Status::Live {
            return Ok((None, Vec::new()));
        }
        // The new session is on disk before the old one dies: a crash in
        // between leaves both, never neither.
        let size = summary.state_size();
        let (view, mut pushes) = create(shared, new, ops, Some((doc, size)))?;
        let heads = doc.heads();
        doc.set_successor(new)?;
        pushes.extend(commit_slot(shared, old, state, &heads, now)?);
        Ok((Some(view), pushes))
    })
}

/// Commits the pending operations of the document in `state` (ending its
/// generation with them when it is due), persists the change and returns
/// what to push: the change, and what a generation switch made.
fn commit_slot(
    shared: &Shared,
    key: DocKey,
    state: &mut SlotState,
    heads: &[ChangeHash],
    now: Millis,
) -> Result<Pushes, Error> {
    let due = generations::due(shared, state);
    let SlotState::Doc { doc, lineage, .. } = state else {
        return Ok(Vec::new());
    };
    let lineage = *lineage;
    if due && doc.pending() > 0 {
        // The mark rides on the request's own change: one change, one push.
        doc.mark()?;
    }
    if doc.commit().is_none() {
        return Ok(Vec::new());
    }
    // The change just made, as a chunk. (automerge's `get_last_local_change`
    // would do, but it keeps memory in the document: RSS grew eightfold over
    // 100,000 sessions.)
    let chunk = doc.save_after(heads);
    let chunk = shared.persist(key, state, heads, now, Some(chunk), Origin::Local)?;
    let mut pushes = vec![Push {
        key,
        lineage,
        chunk: chunk.into(),
    }];
    // The write is on disk; a switch that fails is tried again on the next
    // access (the mark stays), and the slot reads the disk again.
    match generations::advance(shared, key, state) {
        Ok(more) => pushes.extend(more),
        Err(_) if matches!(state, SlotState::Unloaded) => *state = shared.read(key)?,
        Err(_) => {}
    }
    Ok(pushes)
}

fn apply_all(shared: &Shared, doc: &mut SessionDoc, ops: &[Op]) -> Result<(), Error> {
    for op in &crate::doc::coalesce(ops) {
        if let Err(e) = doc.apply(op, shared.node_id()) {
            doc.rollback();
            return Err(e.into());
        }
    }
    Ok(())
}

pub(crate) fn live_view(state: &SlotState, now: Millis) -> Option<SessionView> {
    match state {
        SlotState::Doc { summary, .. } if summary.status(now) == Status::Live => {
            Some(SessionView::of(summary))
        }
        _ => None,
    }
}
