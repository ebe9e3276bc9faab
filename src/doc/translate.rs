//! The translations between generations (see `chain.rs`): carrying a
//! change of one generation into the next, lifting a lineage built on a
//! losing mark back into the generation before. Each translation is a
//! change with a derived actor and fixed dependencies, so every node that
//! makes it makes the same change.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{Change, ChangeHash};

use super::chain::{GenDoc, Lineages};
use super::generation::{carry_actor, derived_actor, is_carry_actor};
use super::Error;

/// The seed of generation `g`'s base.
pub(super) fn gen_seed(seed: &[u8], g: u32) -> Vec<u8> {
    let mut s = seed.to_vec();
    s.extend_from_slice(&g.to_be_bytes());
    s
}

/// The winning mark of `gen` and the base of the next generation it gives
/// (cached in `gen.next` while the winner stays).
pub(super) fn next_of(
    gen: &mut GenDoc,
    seed: &[u8],
) -> Result<Option<(ChangeHash, ChangeHash)>, Error> {
    let heads = gen.doc.sorted_heads();
    if let Some((seen, marked)) = &gen.looked {
        if *seen == heads {
            return Ok(marked
                .then(|| gen.next.as_ref().map(|(m, b, _)| (*m, *b)))
                .flatten());
        }
    }
    let Some(mark) = gen.doc.winning_mark() else {
        gen.looked = Some((heads, false));
        return Ok(None);
    };
    gen.looked = Some((heads, true));
    if let Some((m, b, _)) = &gen.next {
        if *m == mark {
            return Ok(Some((mark, *b)));
        }
    }
    let (doc, base) = gen.doc.base_at(mark, seed)?;
    gen.next = Some((mark, base, doc));
    Ok(Some((mark, base)))
}

/// Carries into `next` (a canonical generation) every one of `changes`
/// (its previous generation's, in causal order) that it holds neither in
/// its base nor carried already. Returns whether any was.
pub(super) fn carry_into(
    seed: &[u8],
    changes: &[Change],
    next: &mut GenDoc,
) -> Result<bool, Error> {
    let Some(base) = next.base else {
        return Ok(false);
    };
    let mut any = false;
    for change in changes {
        let h = change.hash();
        if next.in_base.contains(&h) || next.carried.contains_key(&h) {
            continue;
        }
        let deps = change
            .deps()
            .iter()
            .map(|d| {
                if next.in_base.contains(d) {
                    Some(base)
                } else {
                    next.carried.get(d).copied()
                }
            })
            .collect::<Option<Vec<_>>>();
        let Some(mut deps) = deps else {
            continue;
        };
        deps.sort_unstable();
        deps.dedup();
        let actor = carry_actor(seed, &base, &h);
        let tr = next.doc.translate(change, &deps, actor)?;
        next.carried.insert(h, tr);
        any = true;
    }
    Ok(any)
}

/// The mark of `parent` that lineage `base` of the next generation was
/// built on, among `marks`; `None` when none (not placed yet).
pub(super) fn placed(
    parent: &mut GenDoc,
    marks: &[ChangeHash],
    seed: &[u8],
    base: Option<ChangeHash>,
) -> Option<ChangeHash> {
    marks.iter().copied().find(|m| {
        parent
            .doc
            .base_at(*m, seed)
            .is_ok_and(|(_, b)| Some(b) == base)
    })
}

/// Lifts `lineage` (of generation `g + 1`, built on `mark`, a losing mark
/// of `parent`) into `parent`, with everything built on it (its lineages in
/// `above`, at any depth, deepest first), and gives it back (everything
/// lifted goes back to `above`). A lineage holding a carried change whose
/// source its parent lacks waits (that source will arrive), and so do its
/// ancestors; lifting again what was lifted before changes nothing (each
/// translation is the same change).
pub(super) fn lift(
    seed: &[u8],
    g: u32,
    parent: &mut GenDoc,
    lineage: GenDoc,
    mark: ChangeHash,
    above: &mut BTreeMap<u32, Lineages>,
) -> Result<GenDoc, Error> {
    // The tree built on the lineage, breadth first: (generation, lineage,
    // index of its parent in the list, the parent's mark it was built on).
    let mut nodes: Vec<(u32, GenDoc, Option<usize>, ChangeHash)> =
        vec![(g + 1, lineage, None, mark)];
    let mut i = 0;
    while i < nodes.len() {
        let gen = nodes[i].0;
        let child_seed = gen_seed(seed, gen + 1);
        let marks = nodes[i].1.doc.marks();
        let candidates: Vec<Option<ChangeHash>> = above
            .get(&(gen + 1))
            .map(|ls| ls.keys().copied().collect())
            .unwrap_or_default();
        for b in candidates {
            if let Some(m) = placed(&mut nodes[i].1, &marks, &child_seed, b) {
                if let Some(child) = above.get_mut(&(gen + 1)).and_then(|ls| ls.remove(&b)) {
                    nodes.push((gen + 1, child, Some(i), m));
                }
            }
        }
        i += 1;
    }
    // Children come after their parents in the list: lift from the end.
    // Once one waits, its ancestors wait too.
    let mut waits: HashSet<usize> = HashSet::new();
    let mut result = Ok(());
    for n in (0..nodes.len()).rev() {
        if waits.contains(&n) {
            if let Some(up) = nodes[n].2 {
                waits.insert(up);
            }
            continue;
        }
        let (gen, up, m) = (nodes[n].0, nodes[n].2, nodes[n].3);
        let (head, tail) = nodes.split_at_mut(n);
        let node = &mut tail[0].1;
        let target = match up {
            Some(p) => &mut head[p].1,
            None => &mut *parent,
        };
        match lift_one(seed, gen - 1, target, node, m) {
            Ok(true) => {}
            Ok(false) => {
                if let Some(up) = up {
                    waits.insert(up);
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let mut nodes = nodes.into_iter();
    let root = nodes
        .next()
        .map(|(_, node, _, _)| node)
        .unwrap_or_else(|| unreachable!("the lineage itself is the first node"));
    for (gen, node, _, _) in nodes {
        above.entry(gen).or_default().insert(node.base, node);
    }
    result.map(|()| root)
}

/// Lifts one `lineage` (of generation `g + 1`, built on `mark` of
/// `parent`) into `parent`; `false` when it cannot be lifted yet.
fn lift_one(
    seed: &[u8],
    g: u32,
    parent: &mut GenDoc,
    lineage: &mut GenDoc,
    mark: ChangeHash,
) -> Result<bool, Error> {
    // Lineage change → its counterparts in the parent generation: the base
    // stands for the mark; a carried change (known by its derived actor)
    // for its source *and* the mark, since in the lineage it came after the
    // base; a lifted change for its lift.
    let Some(base) = lineage.base else {
        return Ok(false);
    };
    let mut map: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
    map.insert(base, vec![mark]);
    let carry_actors: HashMap<automerge::ActorId, ChangeHash> = parent
        .doc
        .all_changes()
        .iter()
        .map(|c| {
            let h = c.hash();
            (carry_actor(seed, &base, &h), h)
        })
        .collect();
    let changes = lineage.doc.all_changes();
    // Every change must have its counterpart: a carried change whose source
    // the parent lacks waits (with everything after it) until it arrives.
    let mut known: HashSet<ChangeHash> = map.keys().copied().collect();
    for change in &changes {
        let h = change.hash();
        let carried = is_carry_actor(change.actor_id());
        if known.contains(&h)
            || carry_actors.contains_key(change.actor_id())
            || (!carried && change.deps().iter().all(|d| known.contains(d)))
        {
            known.insert(h);
        } else {
            return Ok(false);
        }
    }
    for change in changes {
        let h = change.hash();
        if map.contains_key(&h) {
            continue;
        }
        if let Some(src) = carry_actors.get(change.actor_id()) {
            map.insert(h, vec![*src, mark]);
            continue;
        }
        let mut deps = Vec::new();
        for d in change.deps() {
            let counterparts = map
                .get(d)
                .ok_or_else(|| Error::Sync("a lifted change lost a dependency".into()))?;
            deps.extend_from_slice(counterparts);
        }
        deps.sort_unstable();
        deps.dedup();
        let actor = derived_actor(&[b"lift", seed, &g.to_be_bytes(), &h.0]);
        let lifted = parent.doc.translate(&change, &deps, actor)?;
        map.insert(h, vec![lifted]);
    }
    Ok(true)
}
