use crate::clock::Millis;

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
}

impl Record {
    const LEN: usize = 8 + 4 + 4 + 8 + 8;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.deadline.to_be_bytes());
        out[8..12].copy_from_slice(&self.next_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.log_count.to_be_bytes());
        out[16..24].copy_from_slice(&self.bytes.to_be_bytes());
        out[24..].copy_from_slice(&self.heads.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let arr: &[u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| Error::Corrupt(format!("meta record of {} bytes", bytes.len())))?;
        let (d, rest) = arr.split_at(8);
        let (s, rest) = rest.split_at(4);
        let (c, rest) = rest.split_at(4);
        let (b, h) = rest.split_at(8);
        let arr8 = |x: &[u8]| -> [u8; 8] { x.try_into().unwrap_or([0; 8]) };
        let arr4 = |x: &[u8]| -> [u8; 4] { x.try_into().unwrap_or([0; 4]) };
        Ok(Self {
            deadline: u64::from_be_bytes(arr8(d)),
            next_seq: u32::from_be_bytes(arr4(s)),
            log_count: u32::from_be_bytes(arr4(c)),
            bytes: u64::from_be_bytes(arr8(b)),
            heads: u64::from_be_bytes(arr8(h)),
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
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(Record::decode(&[1, 2, 3]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..64)) {
            match Record::decode(&bytes) {
                Ok(r) => proptest::prop_assert_eq!(&r.encode()[..], &bytes[..]),
                Err(_) => proptest::prop_assert_ne!(bytes.len(), Record::LEN),
            }
        }
    }
}
