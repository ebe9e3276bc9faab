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

use super::translate::{carry_into, gen_seed, lift, next_of, placed};
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
    pub(super) in_base: HashSet<ChangeHash>,
    /// The previous generation's changes carried here, and their
    /// translations.
    pub(super) carried: HashMap<ChangeHash, ChangeHash>,
    /// The winning mark of this document and the next generation's base it
    /// gives, as last computed.
    pub(super) next: Option<(ChangeHash, ChangeHash, SessionDoc)>,
    /// The heads when `next` was last looked for, and whether a mark was
    /// found then: nothing to look for while the document stays unchanged.
    pub(super) looked: Option<(Vec<ChangeHash>, bool)>,
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

pub(super) type Lineages = BTreeMap<Option<ChangeHash>, GenDoc>;

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
    /// The oldest generation held: its canonical lineage is given (a node
    /// need not hold the generations before it).
    lowest: u32,
}

/// One lineage of a chain taken apart ([`Chain::into_parts`]).
#[derive(Debug)]
pub struct Part {
    /// Its generation.
    pub gen: u32,
    /// Its base (`None` for generation 0).
    pub base: Option<ChangeHash>,
    /// Its document.
    pub doc: SessionDoc,
    /// Built on its generation's winning mark, as far as the chain knows.
    pub canonical: bool,
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
            lowest: 0,
        }
    }

    /// A chain from its lineages (generation, base, document), the oldest
    /// generation held being `lowest`, whose canonical lineage is
    /// `lowest_base` (taken as given: a node need not hold the generation
    /// that decides it; created empty if not among `parts`). Which lineage
    /// of every later generation is canonical, [`settle`](Self::settle)
    /// works out; lineages before `lowest` are held as they are.
    #[must_use]
    pub fn from_parts(
        seed: &[u8],
        actor: ActorId,
        lowest: u32,
        lowest_base: Option<ChangeHash>,
        parts: Vec<(u32, Option<ChangeHash>, SessionDoc)>,
    ) -> Self {
        let mut chain = Self {
            seed: seed.to_vec(),
            actor,
            gens: BTreeMap::new(),
            canon: BTreeMap::from([(lowest, lowest_base)]),
            lowest,
        };
        for (g, base, doc) in parts {
            chain
                .gens
                .entry(g)
                .or_default()
                .insert(base, GenDoc::new(doc, base));
        }
        chain.lineage_mut(lowest, lowest_base);
        chain
    }

    /// The lineages held, oldest first, each with whether it is canonical.
    #[must_use]
    pub fn into_parts(self) -> Vec<Part> {
        let canon = self.canon;
        self.gens
            .into_iter()
            .flat_map(|(gen, ls)| {
                let canon = canon.get(&gen).copied();
                ls.into_iter().map(move |(base, d)| Part {
                    gen,
                    base,
                    doc: d.doc,
                    canonical: canon == Some(base),
                })
            })
            .collect()
    }

    /// The oldest generation held.
    #[must_use]
    pub fn lowest(&self) -> u32 {
        self.lowest
    }

    /// The newest canonical generation: its number and document.
    pub fn current(&mut self) -> (u32, &mut GenDoc) {
        let mut g = self.lowest;
        while self.canonical(g + 1).is_some() {
            g += 1;
        }
        let doc = self
            .canonical_mut(g)
            .unwrap_or_else(|| unreachable!("the lowest generation is always canonical"));
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
        let mut g = self.lowest;
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
                let heads = prev.doc.sorted_heads();
                let result = lift(&seed, g, prev, lineage, m, &mut above);
                changed |= prev.doc.sorted_heads() != heads;
                self.gens.append(&mut above);
                // A lineage lifted stays: a lineage built on it may still
                // arrive, and only it places that one.
                let lineage = result?;
                self.gens.entry(g + 1).or_default().insert(b, lineage);
            }
            let known = self.canon.get(&(g + 1)) == Some(&Some(base));
            // What the next generation's canonical lineage lacks: it is not
            // held yet, or was made by changes arriving before the base
            // (which every node builds for itself), or was read back from
            // disk (the mark's past is worked out again).
            let (held, has_base, needs_past) = match self
                .gens
                .get_mut(&(g + 1))
                .and_then(|ls| ls.get_mut(&Some(base)))
            {
                Some(next) => (true, next.doc.has_changes(&[base]), next.in_base.is_empty()),
                None => (false, false, true),
            };
            let prev = self
                .canonical_mut(g)
                .unwrap_or_else(|| unreachable!("checked above"));
            let in_base = needs_past.then(|| prev.doc.past_of(&[mark]));
            let mut base_doc = (!has_base)
                .then(|| prev.next.as_ref().map(|(_, _, d)| d.clone()))
                .flatten();
            if !held {
                let mut doc = base_doc
                    .take()
                    .unwrap_or_else(|| unreachable!("computed by next_of"));
                doc.set_actor(self.actor.clone());
                self.gens
                    .entry(g + 1)
                    .or_default()
                    .insert(Some(base), GenDoc::new(doc, Some(base)));
                changed = true;
            }
            let next = self
                .gens
                .get_mut(&(g + 1))
                .and_then(|ls| ls.get_mut(&Some(base)))
                .unwrap_or_else(|| unreachable!("inserted above"));
            if let Some(mut doc) = base_doc {
                next.doc.merge(&mut doc)?;
                changed = true;
            }
            if let Some(in_base) = in_base {
                next.in_base = in_base;
            }
            if !known {
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
        let Some(prev) = self.canonical_mut(g) else {
            return Ok(false);
        };
        let heads = prev.doc.heads();
        let done = match self.canonical(g + 1) {
            Some(next) => heads
                .iter()
                .all(|h| next.in_base.contains(h) || next.carried.contains_key(h)),
            None => return Ok(false),
        };
        if done {
            return Ok(false);
        }
        let changes = match self.canonical_mut(g) {
            Some(prev) => prev.doc.all_changes(),
            None => return Ok(false),
        };
        let seed = self.seed.clone();
        match self.canonical_mut(g + 1) {
            Some(next) => carry_into(&seed, &changes, next),
            None => Ok(false),
        }
    }
}
