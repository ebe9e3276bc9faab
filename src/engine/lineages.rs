//! What a node tells a peer about a session's lineages at the start of a
//! sync exchange, and the jump of a node that was away for longer than its
//! peers keep generations.

use super::generations::step;
use super::shared::{digest_hash, Shared};
use super::slots::with_slot;
use crate::doc::SessionDoc;
use crate::id::DocKey;
use crate::store::{ChainWrite, LineageId, SlotState};
use crate::Error;

/// One lineage of a session as a node holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineageInfo {
    pub(crate) id: LineageId,
    /// Built on its generation's winning mark, as far as the node knows.
    pub(crate) canonical: bool,
    /// A hash of its heads: equal hashes, equal lineages.
    pub(crate) heads: u64,
}

/// What a node holds of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// Nothing.
    Missing,
    /// A tombstone; `ended`: invalidated or rotated.
    Gone { ended: bool },
    /// Its current lineage and the others it keeps.
    Lineages {
        current: LineageInfo,
        others: Vec<LineageInfo>,
    },
}

impl Held {
    /// The oldest generation whose canonical lineage is held: where the
    /// node's own working-out of the chain starts (everything canonical
    /// after it follows from it).
    pub(crate) fn root(&self) -> Option<LineageId> {
        match self {
            Held::Lineages { current, others } => others
                .iter()
                .filter(|l| l.canonical)
                .map(|l| l.id)
                .chain([current.id])
                .min_by_key(|id| id.gen),
            _ => None,
        }
    }

    /// The oldest generation held.
    pub(crate) fn oldest(&self) -> Option<u32> {
        match self {
            Held::Lineages { current, others } => others
                .iter()
                .map(|l| l.id.gen)
                .chain([current.id.gen])
                .min(),
            _ => None,
        }
    }
}

/// What this node holds of `key`.
pub(crate) fn lineages(shared: &Shared, key: DocKey) -> Result<Held, Error> {
    with_slot(shared, key, |state| {
        Ok(match state {
            SlotState::Doc {
                doc,
                lineage,
                others,
                ..
            } => Held::Lineages {
                current: LineageInfo {
                    id: *lineage,
                    canonical: true,
                    heads: digest_hash(*lineage, &doc.heads()),
                },
                others: others
                    .iter()
                    .map(|l| LineageInfo {
                        id: l.id,
                        canonical: l.canonical,
                        heads: l.record.heads,
                    })
                    .collect(),
            },
            SlotState::Tombstone { ended } => Held::Gone { ended: *ended },
            _ => Held::Missing,
        })
    })
}

/// Takes `target`, a lineage held here, as canonical, on the word of a peer
/// whose working-out of the chain starts earlier (it holds generations
/// that decide what this node took on trust); every generation after
/// `target` is worked out again from it. A lineage this node took instead
/// stays, not canonical, until a node that can fold it in does. Returns
/// whether anything was done.
pub(crate) fn retrust(shared: &Shared, key: DocKey, target: LineageId) -> Result<bool, Error> {
    with_slot(shared, key, |state| {
        let SlotState::Doc {
            lineage, others, ..
        } = state
        else {
            return Ok(false);
        };
        let root = others
            .iter()
            .filter(|l| l.canonical)
            .map(|l| l.id.gen)
            .chain([lineage.gen])
            .min()
            .unwrap_or(lineage.gen);
        let held = *lineage == target || others.iter().any(|l| l.id == target);
        let canonical = *lineage == target || others.iter().any(|l| l.id == target && l.canonical);
        if target.gen > root || !held || canonical {
            return Ok(false);
        }
        tracing::debug!(session = %key.short(), gen = target.gen, "canonical lineage taken from a peer");
        step(shared, key, state, target.gen, Some(target), None, |_| {
            Ok(())
        })?;
        Ok(true)
    })
}

/// Makes `target`, a lineage this node took from a peer, the session's
/// current one.
///
/// Forward: for a node whose current generation is older than every
/// generation its peers still keep, which therefore cannot place the newer
/// ones; every generation before `target` is dropped. Whatever was written
/// here to the generations dropped and reached no other node is lost (the
/// node was away for longer than the cluster keeps generations); the node
/// says so in its log.
///
/// Back: for a node that took (on a peer's word) a lineage built on a
/// switch that lost, as a peer holding more of the session's history
/// shows; what it holds stays, not canonical, for the nodes that can fold
/// it in. Returns whether anything changed.
pub(crate) fn adopt(shared: &Shared, key: DocKey, target: LineageId) -> Result<bool, Error> {
    with_slot(shared, key, |state| {
        let SlotState::Doc {
            record,
            lineage,
            others,
            ..
        } = state
        else {
            return Ok(false);
        };
        if target.gen == lineage.gen {
            return Ok(false);
        }
        let forward = target.gen > lineage.gen;
        let Some(l) = others.iter().find(|l| l.id == target).copied() else {
            return Ok(false);
        };
        let store = shared.store()?;
        let bytes = store.load_lineage(key, &l)?;
        let mut doc =
            SessionDoc::load(&bytes, shared.actor()).map_err(crate::store::Error::from)?;
        let summary = shared.summary_of(&mut doc, target.gen)?;
        let saved = doc.save();
        let write = ChainWrite {
            current: target,
            current_doc: &saved,
            heads: digest_hash(target, &doc.heads()),
            deadline: shared.index_time(&summary, shared.now()),
            saved: Vec::new(),
            kept: others
                .iter()
                .filter(|o| o.id.gen >= target.gen && o.id != target)
                .map(|o| (o.id, false))
                .chain((!forward).then_some((*lineage, false)))
                .collect(),
        };
        if forward {
            tracing::warn!(
                session = %key.short(),
                from = lineage.gen,
                to = target.gen,
                "this node was away for longer than its peers keep generations: \
                 it takes their current one, and writes it made meanwhile that no \
                 other node has are lost"
            );
        } else {
            tracing::debug!(session = %key.short(), from = lineage.gen, to = target.gen, "back to a peer's generation");
        }
        let old = *record;
        super::principals::index(shared, key, None, &summary)?;
        let old_others = std::mem::take(others);
        match store.write_chain(key, &write, old, &old_others) {
            Ok((rec, list)) => {
                *state = SlotState::Doc {
                    doc,
                    record: Some(rec),
                    summary,
                    deferred: crate::store::Deferred::default(),
                    lineage: target,
                    others: list,
                };
                Ok(true)
            }
            Err(e) => {
                *state = SlotState::Unloaded;
                Err(e.into())
            }
        }
    })
}

/// Every lineage of `key` held here, with its attributes and heads: for
/// diagnosing a test that failed.
#[cfg(feature = "testing")]
pub(crate) fn describe(shared: &Shared, key: DocKey) -> Result<String, Error> {
    use std::fmt::Write as _;
    with_slot(shared, key, |state| {
        let SlotState::Doc {
            doc,
            lineage,
            others,
            ..
        } = state
        else {
            return Ok("no document".into());
        };
        let short = |id: &LineageId| format!("{}/{:02x?}", id.gen, id.base.map(|b| b[0]));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "current {} {:?} heads {:?}",
            short(lineage),
            doc.attributes(),
            doc.sorted_heads()
                .iter()
                .map(|h| h.0[0])
                .collect::<Vec<_>>()
        );
        let store = shared.store()?;
        let mut docs = vec![(*lineage, doc.clone())];
        for l in others.iter() {
            let bytes = store.load_lineage(key, l)?;
            let d = SessionDoc::load(&bytes, shared.actor()).map_err(crate::store::Error::from)?;
            docs.push((l.id, d));
        }
        let _ = writeln!(out, "  current slots {:?}", doc.counter_slots());
        for c in doc.clone().counter_changes() {
            let _ = writeln!(out, "      {c}");
        }
        for i in 1..docs.len() {
            let id = docs[i].0;
            // Which mark of which lineage of the generation before it was
            // built on.
            let mut on = String::new();
            for (pid, parent) in &mut docs {
                let pid = *pid;
                if pid.gen + 1 != id.gen {
                    continue;
                }
                let marks = parent.marks();
                let winner = parent.winning_mark();
                let mut seed = key.as_bytes().to_vec();
                seed.extend_from_slice(&id.gen.to_be_bytes());
                for m in marks {
                    if let Ok((_, b)) = parent.base_at(m, &seed) {
                        if Some(b.0) == id.base {
                            on = format!(
                                "on {} mark {:02x} (winner: {})",
                                short(&pid),
                                m.0[0],
                                Some(m) == winner
                            );
                        }
                    }
                }
            }
            let l = others.iter().find(|l| l.id == id).copied();
            let d = &mut docs[i].1;
            let _ = writeln!(
                out,
                "  {} canonical={} marked={} count={:?} slots={:?} changes={} {}",
                short(&id),
                l.is_some_and(|l| l.canonical),
                d.is_marked(),
                d.attributes().ok().and_then(|a| a.get("count").cloned()),
                d.counter_slots(),
                d.change_count(),
                on
            );
            for c in d.counter_changes() {
                let _ = writeln!(out, "      {c}");
            }
        }
        Ok(out)
    })
}
