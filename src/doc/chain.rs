//! One session as a chain of generations (see `generation.rs` for the
//! deterministic steps): pure, like the rest of `doc`.
//!
//! A generation is an automerge document. Generation 0 is the session's
//! first document. Generation `g + 1` starts from a base built from
//! generation `g` at its winning mark; which base that is depends only on
//! generation `g`'s changes, so every node that has them agrees. A node may
//! hold, for one generation, documents of several *lineages* (one per base):
//! the canonical one, built on the winning mark, and others, built on marks
//! that lost (two nodes switched at once) or not yet placed (their mark has
//! not arrived). [`Chain::settle`] brings the chain to its canonical form:
//!
//! 1. for each generation from the oldest, find the winning mark and the
//!    canonical next generation (building its base if no node sent it);
//! 2. *lift* every lineage of the next generation built on a losing mark
//!    back into this generation: its changes, translated (marks dropped),
//!    become changes of this generation made after that mark;
//! 3. *carry* every change of this generation that the canonical base does
//!    not hold (concurrent with the mark, made later by a node that had not
//!    seen it, or lifted) into the canonical next generation, translated.
//!
//! Translation is deterministic, so a change is carried once however many
//! nodes carry it, and writes are neither lost nor counted twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{ActorId, ChangeHash};

use super::generation::derived_actor;
use super::{Error, SessionDoc};
use crate::clock::Millis;

/// One generation's document on one lineage.
#[derive(Debug, Clone)]
pub struct GenDoc {
    /// The document.
    pub doc: SessionDoc,
    /// Its first change, the base; `None` for generation 0.
    pub base: Option<ChangeHash>,
    /// The previous generation's changes the base holds (the mark's past),
    /// filled when this lineage is found canonical.
    in_base: HashSet<ChangeHash>,
    /// The previous generation's changes carried here, and their
    /// translations.
    carried: HashMap<ChangeHash, ChangeHash>,
    /// The winning mark of this document and the next generation's base it
    /// gives, as last computed.
    next: Option<(ChangeHash, ChangeHash, SessionDoc)>,
    /// The heads when `next` was last looked for, and whether a mark was
    /// found then: nothing to look for while the document stays unchanged.
    looked: Option<(Vec<ChangeHash>, bool)>,
}

impl GenDoc {
    fn new(doc: SessionDoc, base: Option<ChangeHash>) -> Self {
        Self {
            doc,
            base,
            in_base: HashSet::new(),
            carried: HashMap::new(),
            next: None,
            looked: None,
        }
    }
}

type Lineages = BTreeMap<Option<ChangeHash>, GenDoc>;

/// Every generation of one session that a node holds.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Part of every derived actor: the session's document key.
    seed: Vec<u8>,
    /// This process's actor, for the documents it writes to.
    actor: ActorId,
    /// Per generation, its lineages by base.
    gens: BTreeMap<u32, Lineages>,
    /// Per generation, the base of its canonical lineage (generation 0:
    /// `None`, always).
    canon: BTreeMap<u32, Option<ChangeHash>>,
}

impl Chain {
    /// A chain whose generation 0 is `first`; `seed` names the session in
    /// every actor the chain derives.
    #[must_use]
    pub fn new(seed: &[u8], actor: ActorId, first: SessionDoc) -> Self {
        Self {
            seed: seed.to_vec(),
            actor,
            gens: BTreeMap::from([(0, BTreeMap::from([(None, GenDoc::new(first, None))]))]),
            canon: BTreeMap::from([(0, None)]),
        }
    }

    /// The newest canonical generation: its number and document.
    pub fn current(&mut self) -> (u32, &mut GenDoc) {
        let mut g = 0;
        while self.canonical(g + 1).is_some() {
            g += 1;
        }
        let doc = self
            .canonical_mut(g)
            .unwrap_or_else(|| unreachable!("generation 0 is always canonical"));
        (g, doc)
    }

    /// Marks the current generation at `now` when it holds `threshold`
    /// changes or more and nobody marked it yet (one change). Returns
    /// whether it did.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] if automerge refuses the write.
    pub fn mark_if_due(&mut self, threshold: u64, now: Millis) -> Result<bool, Error> {
        let (_, cur) = self.current();
        if cur.doc.change_count() < threshold || cur.doc.is_marked() {
            return Ok(false);
        }
        cur.doc.mark()?;
        cur.doc.commit_at(now);
        Ok(true)
    }

    /// Takes every lineage `other` holds that this chain lacks, merges the
    /// ones both hold (what a full sync with a peer does), and settles.
    ///
    /// # Errors
    ///
    /// As [`settle`](Self::settle).
    pub fn merge_from(&mut self, other: &mut Chain) -> Result<(), Error> {
        for (g, ls) in &mut other.gens {
            for (b, theirs) in ls {
                self.lineage_mut(*g, *b).doc.merge(&mut theirs.doc)?;
            }
        }
        self.settle()?;
        Ok(())
    }

    /// Every generation and lineage held, oldest first.
    pub fn lineages(&self) -> impl Iterator<Item = (u32, Option<ChangeHash>, &GenDoc)> {
        self.gens
            .iter()
            .flat_map(|(g, ls)| ls.iter().map(move |(b, d)| (*g, *b, d)))
    }

    /// The document of lineage `base` of generation `gen`, created empty
    /// when this node has none: where a peer's changes for it go.
    pub fn lineage_mut(&mut self, gen: u32, base: Option<ChangeHash>) -> &mut GenDoc {
        let actor = self.actor.clone();
        self.gens
            .entry(gen)
            .or_default()
            .entry(base)
            .or_insert_with(|| GenDoc::new(SessionDoc::empty(actor), base))
    }

    fn canonical(&self, g: u32) -> Option<&GenDoc> {
        let base = self.canon.get(&g)?;
        self.gens.get(&g)?.get(base)
    }

    fn canonical_mut(&mut self, g: u32) -> Option<&mut GenDoc> {
        let base = self.canon.get(&g)?;
        self.gens.get_mut(&g)?.get_mut(base)
    }

    /// The seed of generation `g`'s base: the session's, and the number.
    fn gen_seed(&self, g: u32) -> Vec<u8> {
        gen_seed(&self.seed, g)
    }

    /// Brings the chain to its canonical form (see the module docs).
    /// Returns whether anything changed.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when a translation does not apply (a
    /// document that is not what this crate writes).
    pub fn settle(&mut self) -> Result<bool, Error> {
        let mut changed = false;
        let mut g = 0;
        loop {
            let seed = self.gen_seed(g + 1);
            let Some(prev) = self.canonical_mut(g) else {
                return Ok(changed);
            };
            let Some((mark, base)) = next_of(prev, &seed)? else {
                // Nothing canonical above an unmarked generation.
                self.canon.retain(|k, _| *k <= g);
                return Ok(changed);
            };
            // Lineages of the next generation built on marks that lost are
            // lifted back into this one.
            let lost: Vec<(Option<ChangeHash>, ChangeHash)> = {
                let marks = prev.doc.marks();
                let others: Vec<Option<ChangeHash>> = self
                    .gens
                    .get(&(g + 1))
                    .map(|ls| ls.keys().filter(|b| **b != Some(base)).copied().collect())
                    .unwrap_or_default();
                let prev = self
                    .canonical_mut(g)
                    .unwrap_or_else(|| unreachable!("checked above"));
                others
                    .into_iter()
                    .filter_map(|b| placed(prev, &marks, &seed, b).map(|m| (b, m)))
                    .collect()
            };
            for (b, m) in lost {
                let Some(lineage) = self.gens.get_mut(&(g + 1)).and_then(|ls| ls.remove(&b)) else {
                    continue;
                };
                let mut above = self.gens.split_off(&(g + 2));
                let seed = self.seed.clone();
                let prev = self
                    .canonical_mut(g)
                    .unwrap_or_else(|| unreachable!("checked above"));
                let kept = lift(&seed, g, prev, lineage, m, &mut above)?;
                self.gens.append(&mut above);
                match kept {
                    Some(lineage) => {
                        self.gens.entry(g + 1).or_default().insert(b, lineage);
                    }
                    None => changed = true,
                }
            }
            let known = self.canon.get(&(g + 1)) == Some(&Some(base));
            let prev = self
                .canonical_mut(g)
                .unwrap_or_else(|| unreachable!("checked above"));
            let in_base = (!known).then(|| prev.doc.past_of(&[mark]));
            let base_doc = prev.next.as_ref().map(|(_, _, d)| d.clone());
            let next = self
                .gens
                .entry(g + 1)
                .or_default()
                .entry(Some(base))
                .or_insert_with(|| {
                    changed = true;
                    GenDoc::new(
                        base_doc.unwrap_or_else(|| unreachable!("computed by next_of")),
                        Some(base),
                    )
                });
            if let Some(in_base) = in_base {
                if next.in_base.is_empty() {
                    next.in_base = in_base;
                }
                self.canon.insert(g + 1, Some(base));
                changed = true;
            }
            changed |= self.carry(g)?;
            g += 1;
        }
    }

    /// Carries every change of canonical generation `g` that the canonical
    /// generation `g + 1` does not hold yet. Returns whether any was.
    fn carry(&mut self, g: u32) -> Result<bool, Error> {
        let seed = self.seed.clone();
        let Some(prev) = self.canonical_mut(g) else {
            return Ok(false);
        };
        let heads = prev.doc.heads();
        let (in_base, carried) = match self.canonical(g + 1) {
            Some(next) => (&next.in_base, &next.carried),
            None => return Ok(false),
        };
        if heads
            .iter()
            .all(|h| in_base.contains(h) || carried.contains_key(h))
        {
            return Ok(false);
        }
        let changes = match self.canonical_mut(g) {
            Some(prev) => prev.doc.all_changes(),
            None => return Ok(false),
        };
        let Some(next) = self.canonical_mut(g + 1) else {
            return Ok(false);
        };
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
            let actor = derived_actor(&[b"carry", &seed, &base.0, &h.0]);
            let tr = next.doc.translate(&change, &deps, actor)?;
            next.carried.insert(h, tr);
            any = true;
        }
        Ok(any)
    }
}

/// The seed of generation `g`'s base.
fn gen_seed(seed: &[u8], g: u32) -> Vec<u8> {
    let mut s = seed.to_vec();
    s.extend_from_slice(&g.to_be_bytes());
    s
}

/// The winning mark of `gen` and the base of the next generation it gives
/// (cached in `gen.next` while the winner stays).
fn next_of(gen: &mut GenDoc, seed: &[u8]) -> Result<Option<(ChangeHash, ChangeHash)>, Error> {
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

/// The mark of `parent` that lineage `base` of the next generation was
/// built on, among `marks`; `None` when none (not placed yet).
fn placed(
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
/// `above`, at any depth, deepest first). Gives the lineage back when it
/// cannot be lifted yet: a carried change in it has a source its parent
/// lacks (it will arrive); what could not be lifted goes back to `above`.
fn lift(
    seed: &[u8],
    g: u32,
    parent: &mut GenDoc,
    lineage: GenDoc,
    mark: ChangeHash,
    above: &mut BTreeMap<u32, Lineages>,
) -> Result<Option<GenDoc>, Error> {
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
    while let Some((gen, node, up, m)) = nodes.pop() {
        let target = match up {
            Some(p) => &mut nodes[p].1,
            None => &mut *parent,
        };
        let Some(back) = lift_one(seed, gen - 1, target, node, m)? else {
            continue;
        };
        // Not yet: this lineage and everything under it that is not lifted
        // yet waits; so do its ancestors.
        let mut root = None;
        for (gen, node, up, _) in nodes.into_iter().chain([(gen, back, up, m)]) {
            match up {
                None => root = Some(node),
                Some(_) => {
                    above.entry(gen).or_default().insert(node.base, node);
                }
            }
        }
        return Ok(root);
    }
    Ok(None)
}

/// Lifts one `lineage` (of generation `g + 1`, built on `mark` of
/// `parent`) into `parent`; gives it back when it cannot be lifted yet.
fn lift_one(
    seed: &[u8],
    g: u32,
    parent: &mut GenDoc,
    mut lineage: GenDoc,
    mark: ChangeHash,
) -> Result<Option<GenDoc>, Error> {
    // Lineage change → its counterparts in the parent generation: the base
    // stands for the mark; a carried change (known by its derived actor)
    // for its source *and* the mark, since in the lineage it came after the
    // base; a lifted change for its lift.
    let Some(base) = lineage.base else {
        return Ok(Some(lineage));
    };
    let mut map: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
    map.insert(base, vec![mark]);
    let carry_actors: HashMap<automerge::ActorId, ChangeHash> = parent
        .doc
        .all_changes()
        .iter()
        .map(|c| {
            let h = c.hash();
            (derived_actor(&[b"carry", seed, &base.0, &h.0]), h)
        })
        .collect();
    let changes = lineage.doc.all_changes();
    // Every change must have its counterpart: a carried change whose source
    // the parent lacks waits (with everything after it) until it arrives.
    let mut known: HashSet<ChangeHash> = map.keys().copied().collect();
    for change in &changes {
        let h = change.hash();
        if known.contains(&h)
            || carry_actors.contains_key(change.actor_id())
            || change.deps().iter().all(|d| known.contains(d))
        {
            known.insert(h);
        } else {
            return Ok(Some(lineage));
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
    Ok(None)
}
