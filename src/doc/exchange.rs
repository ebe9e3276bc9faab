//! The exchange side of [`SessionDoc`]: heads, saving, change chunks and
//! automerge's sync protocol — what the store and replication move around.

use automerge::ChangeHash;

use super::{Error, SessionDoc};

/// Documents with fewer changes than this sync by changes even when the
/// peer lacks a third of them (see `generate_sync_message`).
const CHANGES_ONLY_BELOW: u64 = 128;

impl SessionDoc {
    /// The current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The current heads, sorted: a canonical name of the state.
    pub fn sorted_heads(&mut self) -> Vec<ChangeHash> {
        let mut heads = self.doc.get_heads();
        heads.sort_unstable();
        heads
    }

    /// Whether the document holds every change in `hashes` (applied, not
    /// merely received and waiting for a dependency).
    pub fn has_changes(&mut self, hashes: &[ChangeHash]) -> bool {
        if self.has_missing_deps() {
            // Changes wait in the queue: ask for each one exactly.
            return hashes
                .iter()
                .all(|h| self.doc.get_change_meta_by_hash(h).is_some());
        }
        // Nothing queued: a hash is missing exactly when it is not applied.
        self.doc.get_missing_deps(hashes).is_empty()
    }

    /// The highest seq of each actor's changes in the document (applied
    /// ones): a change by one of them with a seq at or below that is not
    /// one automerge will take.
    pub fn max_seqs(&mut self) -> std::collections::HashMap<automerge::ActorId, u64> {
        let mut seqs = std::collections::HashMap::new();
        for meta in self.doc.get_changes_meta(&[]) {
            let seq = seqs.entry(meta.actor.into_owned()).or_insert(0);
            *seq = meta.seq.max(*seq);
        }
        seqs
    }

    /// How many changes the document holds.
    pub fn change_count(&self) -> u64 {
        use automerge::ReadDoc as _;
        self.doc.stats().num_changes
    }

    /// The whole document, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Every change not reachable from `heads`, as change chunks.
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// Merges every change of `other` that this document lacks.
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when the other document's changes do not apply.
    pub fn merge(&mut self, other: &mut SessionDoc) -> Result<(), Error> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    /// Applies change chunks or a saved document (from disk or a peer).
    ///
    /// # Errors
    ///
    /// [`Error::Automerge`] when the bytes do not decode.
    pub fn load_incremental(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.doc.load_incremental(bytes)?;
        Ok(())
    }

    /// The next message of automerge's sync protocol for the peer whose
    /// state is `state`, if there is anything to say.
    pub fn generate_sync_message(&mut self, state: &mut automerge::sync::State) -> Option<Vec<u8>> {
        use automerge::sync::{Capability, SyncDoc as _};
        use automerge::ReadDoc as _;
        // Once the peer has said it holds exactly our heads, it has every
        // change we have and we have every change it has: automerge would
        // still send one more message to announce heads the peer already
        // told us about. Each exchange starts from fresh states, so nothing
        // later relies on that message: skip it (a round trip per document
        // in anti-entropy, one of two in a fetch).
        if let Some(theirs) = &state.their_heads {
            let mut ours = self.doc.get_heads();
            let mut theirs = theirs.clone();
            ours.sort();
            theirs.sort();
            if ours == theirs && state.their_need.as_ref().is_none_or(Vec::is_empty) {
                return None;
            }
        }
        // automerge sends the whole document instead of the missing changes
        // when those are over a third of it (a "v2" message). A session has
        // a handful of changes, so that is nearly every exchange, and saving,
        // parsing and taking apart a small document costs more than applying
        // its changes (criterion `sync`, the peer lacking half: 38 against
        // 64 µs at 4 changes, 413 against 491 at 64; even at 1,024, and the
        // document wins at 256). So a document under
        // `CHANGES_ONLY_BELOW` changes goes only to a peer that has nothing
        // (their heads empty); otherwise the message carries changes.
        if state.their_heads.as_ref().is_some_and(|h| !h.is_empty())
            && self.doc.stats().num_changes < CHANGES_ONLY_BELOW
        {
            if let Some(caps) = &mut state.their_capabilities {
                caps.retain(|c| *c != Capability::MessageV2);
            }
        }
        self.doc
            .sync()
            .generate_sync_message(state)
            .map(automerge::sync::Message::encode)
    }

    /// Applies a sync message from the peer whose state is `state`, if
    /// the changes it carries inflate to at most `inflate_limit` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Sync`] when the bytes are not a sync message;
    /// [`Error::Inflation`] when its changes inflate past the limit;
    /// [`Error::Automerge`] when they do not apply. Nothing is applied
    /// then.
    pub fn receive_sync_message(
        &mut self,
        state: &mut automerge::sync::State,
        msg: &[u8],
        inflate_limit: usize,
    ) -> Result<(), Error> {
        use automerge::sync::SyncDoc as _;
        let msg = automerge::sync::Message::decode(msg).map_err(|e| Error::Sync(e.to_string()))?;
        super::sync_inflated_size(&msg, inflate_limit)?;
        self.doc.sync().receive_sync_message(state, msg)?;
        Ok(())
    }

    /// Whether changes are queued whose dependencies have not arrived.
    pub fn has_missing_deps(&mut self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }

    /// A 64-bit hash of the heads: equal documents hash equal.
    pub fn heads_hash(&mut self) -> u64 {
        hash_heads(&self.doc.get_heads())
    }

    /// Applies change chunks (each exactly one change, as pushes carry
    /// them) in one batch.
    ///
    /// # Errors
    ///
    /// [`Error::Sync`] for a malformed chunk; [`Error::Automerge`] when the
    /// changes do not apply. Nothing is applied then.
    pub fn apply_change_chunks(&mut self, chunks: &[Vec<u8>]) -> Result<(), Error> {
        let changes = chunks
            .iter()
            .map(|c| automerge::Change::from_bytes(c.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Sync(e.to_string()))?;
        self.doc.apply_changes(changes)?;
        Ok(())
    }

    /// Applies one change chunk from a peer (what a commit's `save_after`
    /// produced). Strict: bytes that are not exactly one well-formed change
    /// are an error and change nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Sync`] for malformed bytes; [`Error::Automerge`] when the
    /// change does not apply.
    ///
    /// Returns whether the document moved by exactly this change (its heads
    /// are the old ones minus the change's dependencies plus the change);
    /// `false` when it was known already, is waiting for a dependency, or
    /// completed earlier queued changes.
    pub fn apply_change_chunk(&mut self, bytes: &[u8]) -> Result<bool, Error> {
        let change = automerge::Change::from_bytes(bytes.to_vec())
            .map_err(|e| Error::Sync(e.to_string()))?;
        let mut expected = self.doc.get_heads();
        if expected.contains(&change.hash()) {
            return Ok(false);
        }
        expected.retain(|h| !change.deps().contains(h));
        expected.push(change.hash());
        expected.sort();
        self.doc.apply_changes([change])?;
        let mut heads = self.doc.get_heads();
        heads.sort();
        Ok(heads == expected)
    }
}

/// A 64-bit hash of a set of heads (in any order): what
/// [`SessionDoc::heads_hash`] gives for a document with these heads.
#[must_use]
pub fn hash_heads(heads: &[ChangeHash]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut heads = heads.to_vec();
    heads.sort();
    let mut h = Sha256::new();
    for head in &heads {
        h.update(head.0);
    }
    let digest = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(out)
}

/// What identifies one change, read without applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeHeader {
    /// Its hash.
    pub hash: ChangeHash,
    /// The changes it depends on.
    pub deps: Vec<ChangeHash>,
    /// Its author.
    pub actor: automerge::ActorId,
    /// Its place among its author's changes (from 1).
    pub seq: u64,
}

/// The header of the one change in `chunk`; `None` when `chunk` is not one
/// change.
#[must_use]
pub fn change_header(chunk: &[u8]) -> Option<ChangeHeader> {
    let change = automerge::Change::from_bytes(chunk.to_vec()).ok()?;
    Some(ChangeHeader {
        hash: change.hash(),
        deps: change.deps().to_vec(),
        actor: change.actor_id().clone(),
        seq: change.seq(),
    })
}
