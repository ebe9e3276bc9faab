use crate::clock::Millis;

use super::lineage::LineageId;
use super::Error;

/// Per-document bookkeeping kept next to the document (`meta` column family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Record {
    /// Where the document sits in the expiry index.
    pub(crate) deadline: Millis,
    /// The seq the next change chunk gets.
    pub(crate) next_seq: u32,
    /// Chunks written since the last snapshot.
    pub(crate) log_count: u32,
    /// Bytes on disk: snapshot plus chunks (drives compaction and the cache
    /// charge).
    pub(crate) bytes: u64,
    /// A hash of the document's heads: what anti-entropy digests compare.
    pub(crate) heads: u64,
    /// Which lineage of the session this is (generation 0 for a session
    /// that never switched, and for records written before generations).
    pub(crate) lineage: LineageId,
    /// The session has other lineages (listed in the `lineages` family).
    pub(crate) others: bool,
}

impl Record {
    /// The record as written before generations: no lineage.
    pub(crate) const LEN_V1: usize = 8 + 4 + 4 + 8 + 8;
    /// With the lineage: generation, flags (has base, has others), base.
    const LEN: usize = Self::LEN_V1 + 4 + 1 + 32;

    /// The fields of [`LEN_V1`](Self::LEN_V1), for lineage lists (which
    /// hold the lineage beside it).
    pub(crate) fn encode_v1(&self) -> [u8; Self::LEN_V1] {
        let mut out = [0u8; Self::LEN_V1];
        out[..8].copy_from_slice(&self.deadline.to_be_bytes());
        out[8..12].copy_from_slice(&self.next_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.log_count.to_be_bytes());
        out[16..24].copy_from_slice(&self.bytes.to_be_bytes());
        out[24..].copy_from_slice(&self.heads.to_be_bytes());
        out
    }

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..Self::LEN_V1].copy_from_slice(&self.encode_v1());
        out[32..36].copy_from_slice(&self.lineage.gen.to_be_bytes());
        out[36] = u8::from(self.lineage.base.is_some()) | (u8::from(self.others) << 1);
        out[37..].copy_from_slice(&self.lineage.base.unwrap_or([0; 32]));
        out
    }

    /// Decodes either layout; a record without a lineage is generation 0's.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let bad = || Error::Corrupt(format!("meta record of {} bytes", bytes.len()));
        let (v1, ext) = match bytes.len() {
            Self::LEN_V1 => (bytes, None),
            Self::LEN => (&bytes[..Self::LEN_V1], Some(&bytes[Self::LEN_V1..])),
            _ => return Err(bad()),
        };
        let mut record = Self::decode_v1(v1).ok_or_else(bad)?;
        if let Some(ext) = ext {
            let flags = ext[4];
            if flags > 3 {
                return Err(bad());
            }
            let mut base = [0u8; 32];
            base.copy_from_slice(&ext[5..]);
            record.lineage = LineageId {
                gen: u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]),
                base: (flags & 1 == 1).then_some(base),
            };
            record.others = flags & 2 == 2;
        }
        Ok(record)
    }

    fn decode_v1(bytes: &[u8]) -> Option<Self> {
        let arr: &[u8; Self::LEN_V1] = bytes.try_into().ok()?;
        let (d, rest) = arr.split_at(8);
        let (s, rest) = rest.split_at(4);
        let (c, rest) = rest.split_at(4);
        let (b, h) = rest.split_at(8);
        let arr8 = |x: &[u8]| -> [u8; 8] { x.try_into().unwrap_or([0; 8]) };
        let arr4 = |x: &[u8]| -> [u8; 4] { x.try_into().unwrap_or([0; 4]) };
        Some(Self {
            deadline: u64::from_be_bytes(arr8(d)),
            next_seq: u32::from_be_bytes(arr4(s)),
            log_count: u32::from_be_bytes(arr4(c)),
            bytes: u64::from_be_bytes(arr8(b)),
            heads: u64::from_be_bytes(arr8(h)),
            lineage: LineageId::FIRST,
            others: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_bad_lengths() {
        let r = Record {
            deadline: 7,
            next_seq: 3,
            log_count: 2,
            bytes: 900,
            heads: 11,
            lineage: LineageId {
                gen: 9,
                base: Some([4; 32]),
            },
            others: true,
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(Record::decode(&[1, 2, 3]).is_err());
        // A record written before generations is generation 0's.
        let old = Record::decode(&r.encode()[..Record::LEN_V1]).unwrap();
        assert_eq!(old.lineage, LineageId::FIRST);
        assert!(!old.others);
        assert_eq!((old.next_seq, old.heads), (3, 11));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..80)) {
            match Record::decode(&bytes) {
                Ok(r) => {
                    proptest::prop_assert_eq!(Record::decode(&r.encode()).unwrap(), r);
                    proptest::prop_assert_eq!(&r.encode_v1()[..], &bytes[..Record::LEN_V1]);
                }
                Err(_) => proptest::prop_assert!(
                    (bytes.len() != Record::LEN && bytes.len() != Record::LEN_V1) || bytes[36] > 3
                ),
            }
        }
    }
}
