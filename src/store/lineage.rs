//! Which document of a session a record, a key or a message is about.
//!
//! A session is a chain of generations (see the engine's `generations.rs`);
//! a generation may have several *lineages*, one per base (the change that
//! started it). Generation 0 has no base. Every lineage is stored like a
//! document of its own: a snapshot, a change log, a [`Record`].

use automerge::ChangeHash;

use super::{Error, Record};
use crate::id::{DocKey, ID_LEN};

/// One lineage of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct LineageId {
    /// The generation.
    pub(crate) gen: u32,
    /// The hash of its first change; `None` for generation 0.
    pub(crate) base: Option<[u8; 32]>,
}

impl LineageId {
    /// Generation 0: every session's first document.
    pub(crate) const FIRST: LineageId = LineageId { gen: 0, base: None };

    pub(crate) fn new(gen: u32, base: Option<ChangeHash>) -> Self {
        Self {
            gen,
            base: base.map(|b| b.0),
        }
    }

    pub(crate) fn base_hash(&self) -> Option<ChangeHash> {
        self.base.map(ChangeHash)
    }

    /// Where the lineage's snapshot is, and the prefix of its log keys:
    /// generation 0 under the document key alone (as before generations
    /// existed), every other lineage under key ‖ gen ‖ base (in column
    /// families of their own, so that the ranges of one never cover keys of
    /// another).
    pub(crate) fn storage_key(&self, key: DocKey) -> Vec<u8> {
        let mut k = key.as_bytes().to_vec();
        if let Some(base) = self.base {
            k.extend_from_slice(&self.gen.to_be_bytes());
            k.extend_from_slice(&base);
        }
        k
    }

    /// Whether the lineage lives in the families of generation 0.
    pub(crate) fn is_first(&self) -> bool {
        self.base.is_none()
    }
}

/// A lineage that is not the session's current one, as the session's
/// lineage list records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lineage {
    pub(crate) id: LineageId,
    /// Built on its generation's winning mark (as far as this node knows).
    pub(crate) canonical: bool,
    /// Its log position, size and heads hash (`deadline` unused).
    pub(crate) record: Record,
}

const ENTRY_LEN: usize = 4 + 1 + 32 + 1 + Record::LEN_V1;
/// Lineages one session may list at most: more is a peer flooding it.
pub(crate) const MAX_LINEAGES: usize = 64;

/// Encodes a lineage list (the `lineages` family's value).
pub(crate) fn encode_list(list: &[Lineage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len() * ENTRY_LEN);
    for l in list {
        out.extend_from_slice(&l.id.gen.to_be_bytes());
        out.push(u8::from(l.id.base.is_some()));
        out.extend_from_slice(&l.id.base.unwrap_or([0; 32]));
        out.push(u8::from(l.canonical));
        out.extend_from_slice(&l.record.encode_v1());
    }
    out
}

/// Decodes what [`encode_list`] wrote.
pub(crate) fn decode_list(bytes: &[u8]) -> Result<Vec<Lineage>, Error> {
    if !bytes.len().is_multiple_of(ENTRY_LEN) || bytes.len() / ENTRY_LEN > MAX_LINEAGES {
        return Err(Error::Corrupt(format!(
            "lineage list of {} bytes",
            bytes.len()
        )));
    }
    bytes
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let gen = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let mut base = [0u8; 32];
            base.copy_from_slice(&e[5..37]);
            let base = match e[4] {
                0 => None,
                1 => Some(base),
                _ => return Err(Error::Corrupt("lineage entry".into())),
            };
            let id = LineageId { gen, base };
            Ok(Lineage {
                id,
                canonical: e[37] == 1,
                record: Record {
                    lineage: id,
                    ..Record::decode(&e[38..])?
                },
            })
        })
        .collect()
}

/// The log key of `seq` in lineage storage key `lk`.
pub(crate) fn log_key(lk: &[u8], seq: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(lk.len() + 4);
    k.extend_from_slice(lk);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The first key after every key that starts with `key` (a session's
/// range in the lineage families).
pub(crate) fn after(key: DocKey) -> [u8; ID_LEN + 1] {
    let mut k = [0xff; ID_LEN + 1];
    k[..ID_LEN].copy_from_slice(key.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_bad_ones_are_refused() {
        let later = LineageId {
            gen: 4,
            base: Some([9; 32]),
        };
        let list = vec![
            Lineage {
                id: LineageId::FIRST,
                canonical: true,
                record: Record {
                    next_seq: 3,
                    log_count: 2,
                    bytes: 90,
                    heads: 7,
                    ..Record::default()
                },
            },
            Lineage {
                id: later,
                canonical: false,
                record: Record {
                    lineage: later,
                    ..Record::default()
                },
            },
        ];
        assert_eq!(decode_list(&encode_list(&list)).unwrap(), list);
        assert!(decode_list(&[1, 2, 3]).is_err());
        let mut bad = encode_list(&list);
        bad[4] = 7;
        assert!(decode_list(&bad).is_err());
    }

    #[test]
    fn storage_keys_of_generation_zero_are_the_document_key() {
        let key = DocKey::from_array([5; 16]);
        assert_eq!(LineageId::FIRST.storage_key(key), vec![5; 16]);
        let other = LineageId {
            gen: 1,
            base: Some([1; 32]),
        };
        assert_eq!(other.storage_key(key).len(), 16 + 4 + 32);
        assert!(other.storage_key(key).as_slice() < after(key).as_slice());
    }
}
