//! Which lineages of a session two nodes sync: the wire form of a lineage,
//! and the plan an exchange follows once it knows what the peer holds.

use std::collections::{BTreeMap, BTreeSet};

use serde_bytes::ByteArray;

use crate::engine::{Held, LineageInfo};
use crate::net::{HeldLineage, Lineage};
use crate::store::LineageId;

pub(super) fn to_wire(id: LineageId) -> Lineage {
    Lineage {
        gen: id.gen,
        base: id.base.map(ByteArray::new),
    }
}

pub(super) fn from_wire(l: Lineage) -> LineageId {
    LineageId {
        gen: l.gen,
        base: l.base.map(ByteArray::into_array),
    }
}

/// What a node tells a peer it holds (`None`: a tombstone or nothing).
pub(super) fn held_to_wire(held: &Held) -> Option<Vec<HeldLineage>> {
    let Held::Lineages { current, others } = held else {
        return None;
    };
    let one = |l: &LineageInfo, current: bool| HeldLineage {
        lineage: to_wire(l.id),
        current,
        canonical: l.canonical,
        heads: l.heads,
    };
    Some(
        [one(current, true)]
            .into_iter()
            .chain(others.iter().map(|l| one(l, false)))
            .collect(),
    )
}

/// What a peer says it holds, as this node's [`Held`].
pub(super) fn held_from_wire(list: &[HeldLineage]) -> Held {
    let info = |l: &HeldLineage| LineageInfo {
        id: from_wire(l.lineage),
        canonical: l.canonical,
        heads: l.heads,
    };
    match list.iter().find(|l| l.current) {
        Some(current) => Held::Lineages {
            current: info(current),
            others: list.iter().filter(|l| !l.current).map(info).collect(),
        },
        None => Held::Missing,
    }
}

/// The plan of an exchange about one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// The lineages to sync.
    pub(super) sync: Vec<LineageId>,
    /// Once synced, make this (the peer's current lineage) this node's
    /// current one: this node's current generation is older than every one
    /// the peer keeps, so nothing in between can be placed; or the peer,
    /// which holds more of the session's history, has not reached this
    /// node's oldest generation (this node took a lineage that lost).
    pub(super) adopt: Option<LineageId>,
    /// Once synced, take this lineage of this node's oldest generation as
    /// its canonical one: the two nodes disagree, and the peer holds the
    /// generation before, which decides it (this node does not).
    pub(super) retrust: Option<LineageId>,
}

/// Which lineages to sync, given what this node (`mine`) and the peer
/// (`theirs`) hold:
///
/// - a node that holds nothing takes the peer's current lineage only (not
///   the history the peer keeps);
/// - a node whose current generation the peer has retired (it is more than
///   `kept` generations behind the peer's current one, and the peer keeps
///   nothing that old) takes the peer's current lineage and adopts it: a
///   peer that merely joined later, holding few generations, is no reason
///   to drop anything;
/// - otherwise every lineage either side holds that the two hold
///   differently, of a generation within `kept` of the later current one
///   (the window both keep): a lineage only one side holds goes to the
///   other, so both settle from the same history.
pub(super) fn plan(mine: &Held, theirs: &Held, kept: u32) -> Plan {
    let Held::Lineages {
        current: tc,
        others: to,
    } = theirs
    else {
        return Plan::default();
    };
    let Held::Lineages {
        current: mc,
        others: mo,
    } = mine
    else {
        return Plan {
            sync: vec![tc.id],
            ..Plan::default()
        };
    };
    let their_oldest = theirs.oldest().unwrap_or(tc.id.gen);
    if mc.id.gen < their_oldest && mc.id.gen.saturating_add(kept) < tc.id.gen {
        return Plan {
            sync: vec![tc.id],
            adopt: Some(tc.id),
            retrust: None,
        };
    }
    // Both keep the generations within `kept` of the later current one.
    let floor = mc.id.gen.max(tc.id.gen).saturating_sub(kept);
    let heads = |current: &LineageInfo, others: &[LineageInfo]| -> BTreeMap<LineageId, u64> {
        [current]
            .into_iter()
            .chain(others)
            .map(|l| (l.id, l.heads))
            .collect()
    };
    let (m, t) = (heads(mc, mo), heads(tc, to));
    let ids: BTreeSet<LineageId> = m.keys().chain(t.keys()).copied().collect();
    let canon = |current: &LineageInfo, others: &[LineageInfo]| -> BTreeMap<u32, LineageId> {
        [current]
            .into_iter()
            .chain(others)
            .filter(|l| l.canonical)
            .map(|l| (l.id.gen, l.id))
            .collect()
    };
    let their_canon = canon(tc, to);
    // The chain is worked out from its root (the oldest canonical lineage
    // held), taken on trust. A peer whose root is older decides what this
    // node took on trust: this node starts from the peer's root when it
    // holds that lineage; otherwise it takes the peer's canonical lineage
    // of its own root's generation, or, when the peer's session has not
    // reached that generation, the peer's current one.
    let (mut retrust, mut adopt) = (None, None);
    if let (Some(my_root), Some(their_root)) = (mine.root(), theirs.root()) {
        if their_root.gen < my_root.gen {
            if m.contains_key(&their_root) {
                retrust = Some(their_root);
            } else {
                match their_canon.get(&my_root.gen) {
                    Some(t) if *t != my_root => retrust = Some(*t),
                    None if tc.id.gen < my_root.gen => adopt = Some(tc.id),
                    _ => {}
                }
            }
        }
    }
    let mut sync: Vec<LineageId> = ids
        .into_iter()
        .filter(|id| id.gen >= floor && m.get(id) != t.get(id))
        .collect();
    if let Some(a) = adopt {
        sync.push(a);
    }
    Plan {
        sync,
        adopt,
        retrust,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(gen: u32, b: u8) -> LineageId {
        LineageId {
            gen,
            base: (gen > 0).then_some([b; 32]),
        }
    }

    fn held(current: (LineageId, u64), others: &[(LineageId, u64)]) -> Held {
        let info = |(id, heads): (LineageId, u64)| LineageInfo {
            id,
            canonical: true,
            heads,
        };
        Held::Lineages {
            current: info(current),
            others: others.iter().copied().map(info).collect(),
        }
    }

    #[test]
    fn a_node_with_nothing_takes_the_current_lineage_only() {
        let theirs = held((id(5, 1), 9), &[(id(3, 1), 1), (id(4, 1), 2)]);
        assert_eq!(plan(&Held::Missing, &theirs, 4).sync, vec![id(5, 1)]);
        assert_eq!(plan(&theirs, &Held::Missing, 4), Plan::default());
    }

    #[test]
    fn lineages_held_differently_in_generations_both_keep_are_synced() {
        let mine = held((id(4, 1), 7), &[(id(2, 1), 1), (id(3, 1), 2)]);
        let theirs = held(
            (id(5, 1), 9),
            &[(id(3, 1), 3), (id(4, 1), 7), (id(4, 2), 4)],
        );
        // 4/1 is the same on both sides; generation 2, which only this
        // node holds, is within the window of both (5 - 4 = 1).
        assert_eq!(
            plan(&mine, &theirs, 4).sync,
            vec![id(2, 1), id(3, 1), id(4, 2), id(5, 1)]
        );
        // With a narrower window, generation 2 is the peer's no more.
        assert_eq!(
            plan(&mine, &theirs, 2).sync,
            vec![id(3, 1), id(4, 2), id(5, 1)]
        );
    }

    #[test]
    fn a_node_behind_every_kept_generation_adopts_the_current_one() {
        let mine = held((id(1, 1), 7), &[]);
        let theirs = held((id(9, 1), 9), &[(id(6, 1), 3)]);
        // A peer that joined at generation 6 and keeps 8: no reason to
        // drop anything here.
        assert!(plan(&mine, &theirs, 8).adopt.is_none());
        assert_eq!(
            plan(&mine, &theirs, 4),
            Plan {
                sync: vec![id(9, 1)],
                adopt: Some(id(9, 1)),
                retrust: None,
            }
        );
    }

    #[test]
    fn a_dispute_over_the_oldest_generation_is_settled_by_the_peer_that_holds_the_one_before() {
        // This node joined at generation 3 and took lineage 3/1 as
        // canonical; the peer, which keeps generation 2, says 3/2 is.
        let mine = held((id(3, 1), 7), &[]);
        let theirs = held((id(3, 2), 8), &[(id(2, 1), 1)]);
        let p = plan(&mine, &theirs, 4);
        assert_eq!(p.retrust, Some(id(3, 2)));
        assert_eq!(p.sync, vec![id(2, 1), id(3, 1), id(3, 2)]);
        // The other way round, or without a dispute, nothing is retaken.
        assert_eq!(plan(&theirs, &mine, 4).retrust, None);
        let same = held((id(3, 1), 9), &[(id(2, 1), 1)]);
        assert_eq!(plan(&mine, &same, 4).retrust, None);
        // A peer whose session is still at generation 2: this node took a
        // lineage built on a switch that lost, and goes back to the peer's.
        let behind = held((id(2, 1), 5), &[(id(1, 1), 1)]);
        let p = plan(&mine, &behind, 4);
        assert_eq!((p.adopt, p.retrust), (Some(id(2, 1)), None));
        assert!(p.sync.contains(&id(2, 1)));
    }
}
