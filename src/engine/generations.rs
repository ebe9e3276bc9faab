//! Generations on a node: a session's history is cut into generations (see
//! `doc/chain.rs` for the rules), so that no document grows with the
//! session's age.
//!
//! The slot holds the current lineage's document only; the session's other
//! lineages (earlier generations kept for late changes, lineages built on a
//! concurrent mark) stay on disk. A *step* loads the lineages it needs into
//! a [`Chain`], applies what arrived, settles the chain (switching, lifting,
//! carrying), forgets the generations no longer kept and writes the result
//! in one batch. Steps are rare: a switch every `generation_changes`
//! commits, and changes that arrive for a lineage other than the current
//! one.

use std::collections::HashMap;

use automerge::ChangeHash;

use super::shared::{digest_hash, Push, Pushes, Shared};
use crate::doc::{Chain, SessionDoc};
use crate::id::DocKey;
use crate::store::{ChainWrite, Deferred, Lineage, LineageId, SlotState, MAX_LINEAGES};
use crate::Error;

/// Bytes a generation may always grow to, whatever the session's size.
const GROWTH_FLOOR: u64 = 64 << 10;

/// Whether the next local commit should end the current generation: it
/// holds `generation_changes` changes with that commit, or its document
/// takes `generation_growth` times the session's size.
pub(crate) fn due(shared: &Shared, state: &mut SlotState) -> bool {
    let SlotState::Doc {
        doc,
        record,
        summary,
        ..
    } = state
    else {
        return false;
    };
    if doc.is_marked() || doc.is_rotated() {
        return false;
    }
    let cfg = shared.config();
    if doc.change_count() + 1 >= u64::from(cfg.generation_changes()) {
        return true;
    }
    let bytes = record.map_or(0, |r| r.bytes);
    let size = u64::try_from(summary.state_size()).unwrap_or(u64::MAX);
    bytes
        >= size
            .saturating_mul(cfg.generation_growth().into())
            .max(GROWTH_FLOOR)
}

/// Moves the session in `state` to its next generation when its current
/// one is marked (a local commit ended it, or a peer's change did).
/// Returns the changes the step made, to push.
pub(crate) fn advance(
    shared: &Shared,
    key: DocKey,
    state: &mut SlotState,
) -> Result<Pushes, Error> {
    let SlotState::Doc { doc, lineage, .. } = state else {
        return Ok(Vec::new());
    };
    if !doc.is_marked() || doc.is_rotated() {
        return Ok(Vec::new());
    }
    let gen = lineage.gen;
    let ((), pushes) = step(shared, key, state, gen, None, None, |_| Ok(()))?;
    Ok(pushes)
}

/// The oldest generation a step about `target` must load. A canonical
/// lineage: its own (what changes there is carried forward, and lineages
/// built on its losing marks are lifted into it). Ahead of the current
/// generation: the current one (it may be placed on its mark). Any other:
/// the oldest canonical generation held, as a settle from the start would:
/// the lineage may be built, at any depth, on a lineage that lost, and the
/// whole tree is lifted from where it branched off.
pub(crate) fn lowest_for(current: LineageId, others: &[Lineage], target: LineageId) -> u32 {
    if target.gen > current.gen {
        return current.gen;
    }
    let canonical = target == current || others.iter().any(|l| l.id == target && l.canonical);
    if canonical {
        return target.gen;
    }
    others
        .iter()
        .filter(|l| l.canonical)
        .map(|l| l.id.gen)
        .chain([current.gen])
        .min()
        .unwrap_or(current.gen)
}

/// Whether this node takes changes for `target` of a session whose current
/// lineage is `current`: not for a generation it would not keep (more than
/// `kept` before the current one), and not for yet another lineage once the
/// session lists its maximum.
pub(crate) fn accepts(
    current: LineageId,
    others: &[Lineage],
    target: LineageId,
    kept: u32,
) -> Result<(), Error> {
    if target == current || others.iter().any(|l| l.id == target) {
        return Ok(());
    }
    if target.gen.saturating_add(kept) < current.gen || (target.gen == 0) != target.base.is_none() {
        return Err(crate::doc::Error::Sync(format!(
            "generation {} is not kept here any more",
            target.gen
        ))
        .into());
    }
    if others.len() + 1 >= MAX_LINEAGES {
        return Err(crate::doc::Error::Sync("too many lineages for one session".into()).into());
    }
    Ok(())
}

/// Runs `f` on the session's chain, with the lineages of generations from
/// `lowest` on loaded (and `also`, the lineage `f` works on); settles it; forgets what is no longer kept; writes
/// the result in one batch. The canonical lineage of the lowest generation
/// loaded is taken as recorded (or as `trust` says: a lineage a peer that
/// holds the generation before says is canonical); every later one is
/// worked out. Deferred changes must have been applied. On failure the slot
/// is reset (the next access reads the disk) and the error returned.
/// Returns `f`'s answer and the changes the step made.
pub(crate) fn step<R>(
    shared: &Shared,
    key: DocKey,
    state: &mut SlotState,
    lowest: u32,
    trust: Option<LineageId>,
    also: Option<LineageId>,
    f: impl FnOnce(&mut Chain) -> Result<R, Error>,
) -> Result<(R, Pushes), Error> {
    let taken = std::mem::replace(state, SlotState::Unloaded);
    let SlotState::Doc {
        doc,
        record,
        deferred,
        lineage,
        others,
        ..
    } = taken
    else {
        *state = taken;
        return Err(crate::store::Error::Corrupt("a chain step without a document".into()).into());
    };
    if !deferred.chunks.is_empty() {
        // Callers apply deferred changes first; reading the disk again
        // brings them in.
        return Err(
            crate::store::Error::Corrupt("a chain step with deferred changes".into()).into(),
        );
    }
    let current = Current {
        doc,
        record,
        lineage,
        others,
    };
    match run(shared, key, current, (lowest, trust, also), f) {
        Ok((out, pushes, next)) => {
            *state = next;
            Ok((out, pushes))
        }
        Err(e) => {
            tracing::error!(session = %key.short(), error = %e, "generation step failed");
            Err(e)
        }
    }
}

/// What the slot held before a step.
struct Current {
    doc: SessionDoc,
    record: Option<crate::store::Record>,
    lineage: LineageId,
    others: Vec<Lineage>,
}

fn run<R>(
    shared: &Shared,
    key: DocKey,
    cur: Current,
    (lowest, trust, also): (u32, Option<LineageId>, Option<LineageId>),
    f: impl FnOnce(&mut Chain) -> Result<R, Error>,
) -> Result<(R, Pushes, SlotState), Error> {
    let Current {
        mut doc,
        record,
        lineage,
        others,
    } = cur;
    let actor = shared.actor();
    // The oldest generation loaded: one that has a canonical lineage here,
    // between the oldest held and the current one.
    let canonical_at = |g: u32| {
        if let Some(t) = trust.filter(|t| t.gen == g) {
            Some(t)
        } else if g == lineage.gen {
            Some(lineage)
        } else {
            others
                .iter()
                .find(|l| l.id.gen == g && l.canonical)
                .map(|l| l.id)
        }
    };
    let mut lowest = lowest.min(lineage.gen);
    while canonical_at(lowest).is_none() {
        lowest += 1;
    }
    let first = canonical_at(lowest).unwrap_or(lineage);
    let mut before: HashMap<LineageId, Vec<ChangeHash>> = HashMap::new();
    before.insert(lineage, doc.sorted_heads());
    let mut parts = vec![(lineage.gen, lineage.base_hash(), doc)];
    {
        let store = shared.store()?;
        for l in others
            .iter()
            .filter(|l| l.id.gen >= lowest || Some(l.id) == also)
        {
            let bytes = store.load_lineage(key, l)?;
            let mut d =
                SessionDoc::load(&bytes, actor.clone()).map_err(crate::store::Error::from)?;
            before.insert(l.id, d.sorted_heads());
            parts.push((l.id.gen, l.id.base_hash(), d));
        }
    }
    let mut chain = Chain::from_parts(key.as_bytes(), actor, first.gen, first.base_hash(), parts);
    let out = f(&mut chain)?;
    chain.settle()?;
    let (gen, top) = chain.current();
    let now_current = LineageId::new(gen, top.base);
    // The current generation may also go down: a switch made here that
    // lost to a concurrent one is folded back into the generation before.
    let kept_from = gen.saturating_sub(shared.config().generations_kept());

    let mut pushes = Vec::new();
    let mut saved = Vec::new();
    let mut kept = Vec::new();
    let mut current_doc = None;
    for mut part in chain.into_parts() {
        let id = LineageId::new(part.gen, part.base);
        if part.gen < kept_from {
            continue;
        }
        let heads = part.doc.sorted_heads();
        let was = before.get(&id);
        let changed = was != Some(&heads);
        if changed {
            // What this step made or took in, each change a push; the base
            // is left out (every node that has the mark builds it).
            let after = was.map_or(&[][..], Vec::as_slice);
            for c in part.doc.changes_after(after) {
                if Some(c.hash()) != part.base {
                    pushes.push(Push {
                        key,
                        lineage: id,
                        chunk: c.raw_bytes().into(),
                    });
                }
            }
        }
        if id == now_current {
            current_doc = Some(part.doc);
        } else if heads.is_empty() {
            // Nothing arrived for it: not worth keeping.
        } else if changed {
            saved.push((id, part.canonical, digest_hash(id, &heads), part.doc.save()));
        } else {
            kept.push((id, part.canonical));
        }
    }
    kept.extend(
        others
            .iter()
            .filter(|l| l.id.gen < lowest && l.id.gen >= kept_from && Some(l.id) != also)
            .map(|l| (l.id, l.canonical)),
    );
    let Some(mut doc) = current_doc else {
        return Err(crate::store::Error::Corrupt("the current generation vanished".into()).into());
    };
    if gen != lineage.gen {
        shared.metrics.generation_switches.inc();
        tracing::debug!(session = %key.short(), from = lineage.gen, to = gen, "new generation");
    }
    let summary = shared.summary_of(&mut doc, gen)?;
    let deadline = shared.index_time(&summary, shared.now());
    let bytes = doc.save();
    let write = ChainWrite {
        current: now_current,
        current_doc: &bytes,
        heads: digest_hash(now_current, &doc.heads()),
        deadline,
        saved,
        kept,
    };
    super::principals::index(shared, key, None, &summary)?;
    let (rec, list) = shared.store()?.write_chain(key, &write, record, &others)?;
    let state = SlotState::Doc {
        doc,
        record: Some(rec),
        summary,
        deferred: Deferred::default(),
        lineage: now_current,
        others: list,
    };
    Ok((out, pushes, state))
}
