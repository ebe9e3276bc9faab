//! A bound on what bytes from outside inflate to, checked before automerge
//! sees them.
//!
//! automerge inflates DEFLATE streams in what it decodes with no limit: a
//! compressed change chunk, and the compressed columns of a document or a
//! bundle. DEFLATE reaches about 1,000:1, so one wire message at the limit
//! could ask for gigabytes. [`inflated_size`] walks the chunks the way
//! automerge's storage format lays them out, inflates every compressed
//! part into a small scratch buffer, counts, and stops as soon as the count
//! passes the limit: nothing the size of the output is ever allocated.
//!
//! The walk reads headers and column metadata only; everything else about
//! the bytes (checksums, the operations) automerge checks afterwards. Two
//! other shapes that would make automerge allocate without bound are
//! refused here as well: bundle chunks (no part of what peers exchange;
//! automerge expands their run-length columns while parsing) and sync
//! messages whose bloom filters have no bits or billions of probes.

use std::io::Read as _;

use super::Error;

/// The first bytes of every automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Bloom filters a sync message may carry (automerge sends at most one).
const MAX_HAVES: usize = 8;
/// Probes per entry a bloom filter may ask for (automerge uses 7).
const MAX_PROBES: u64 = 64;
/// A column specification's bit for "this column is DEFLATE compressed".
const DEFLATE_BIT: u32 = 0b1000;
/// The most a compressed change may inflate to (one request's writes, at
/// most the session limit, fit many times over).
const MAX_CHANGE: usize = 16 << 20;
/// Bytes of a change hash.
const HASH_LEN: usize = 32;

/// How many bytes the automerge chunks in `bytes` (any number of them,
/// concatenated: change chunks, compressed change chunks, documents; not
/// bundles) take once every compressed part is inflated, if that is at
/// most `limit`.
///
/// # Errors
///
/// [`Error::Inflation`] as soon as the count passes `limit` (the rest is
/// not inflated); [`Error::Sync`] when the bytes are not well-formed
/// chunks or a compressed part is not a DEFLATE stream.
pub fn inflated_size(bytes: &[u8], limit: usize) -> Result<usize, Error> {
    let mut budget = Budget::new(limit, true);
    budget.walk(bytes)?;
    Ok(budget.used)
}

/// [`inflated_size`] for a peer's push: change chunks only (plain or
/// compressed), no documents.
///
/// # Errors
///
/// As [`inflated_size`]; [`Error::Sync`] also for a document chunk.
pub fn change_inflated_size(bytes: &[u8], limit: usize) -> Result<usize, Error> {
    let mut budget = Budget::new(limit, false);
    budget.walk(bytes)?;
    Ok(budget.used)
}

/// [`inflated_size`] over every chunk an automerge sync message carries,
/// after checking the message's bloom filters are ones automerge can use
/// (a filter with no bits, or billions of probes, makes automerge divide
/// by zero or reserve gigabytes when it answers).
///
/// # Errors
///
/// As [`inflated_size`]; [`Error::Sync`] also for such a filter or more
/// than 8 of them.
pub fn sync_inflated_size(msg: &automerge::sync::Message, limit: usize) -> Result<usize, Error> {
    if msg.have.len() > MAX_HAVES {
        return Err(malformed("too many bloom filters"));
    }
    for have in &msg.have {
        bloom_usable(&have.bloom.to_bytes())?;
    }
    let mut budget = Budget::new(limit, true);
    for item in msg.changes.iter() {
        budget.walk(item)?;
    }
    Ok(budget.used)
}

struct Budget {
    used: usize,
    limit: usize,
    /// Whether document chunks are expected (sync) or only changes (push).
    documents: bool,
}

impl Budget {
    fn new(limit: usize, documents: bool) -> Self {
        Self {
            used: 0,
            limit,
            documents,
        }
    }

    /// Counts every chunk of `bytes`.
    fn walk(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let mut rest = bytes;
        while !rest.is_empty() {
            rest = chunk(rest, self)?;
        }
        Ok(())
    }

    fn add(&mut self, n: usize) -> Result<(), Error> {
        self.used = self.used.saturating_add(n);
        if self.used > self.limit {
            return Err(Error::Inflation { limit: self.limit });
        }
        Ok(())
    }

    /// Inflates `data` into a scratch buffer, counting; appends what it
    /// inflates to `keep`, if given (at most the limit, then).
    fn inflate_into(&mut self, data: &[u8], mut keep: Option<&mut Vec<u8>>) -> Result<(), Error> {
        let mut inflater = flate2::bufread::DeflateDecoder::new(data);
        let mut scratch = [0u8; 16 << 10];
        loop {
            let n = inflater
                .read(&mut scratch)
                .map_err(|e| malformed(&format!("compressed data: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            self.add(n)?;
            if let Some(out) = keep.as_deref_mut() {
                out.extend_from_slice(&scratch[..n]);
            }
        }
    }

    fn inflate(&mut self, data: &[u8]) -> Result<(), Error> {
        self.inflate_into(data, None)
    }
}

pub(super) fn malformed(what: &str) -> Error {
    Error::Sync(format!("malformed chunk: {what}"))
}

/// Reads one chunk off the front of `input`, counts it, returns the rest.
fn chunk<'a>(input: &'a [u8], budget: &mut Budget) -> Result<&'a [u8], Error> {
    let mut r = Reader(input);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(malformed("bad magic bytes"));
    }
    r.take(4)?; // checksum
    let kind = r.take(1)?[0];
    let len = r.len_prefix()?;
    let header = input.len() - r.0.len();
    let data = r.take(len)?;
    let rest = r.0;
    budget.add(header)?;
    match kind {
        // A change: its columns are never compressed (automerge refuses).
        1 => {
            budget.add(data.len())?;
            super::runs::check_change(data)?;
        }
        // A compressed change: the whole body is one DEFLATE stream.
        // Counted first without keeping anything; then, if small enough to
        // be a change a peer makes, inflated again to read its columns.
        2 => {
            let before = budget.used;
            budget.inflate(data)?;
            let size = budget.used - before;
            if size > MAX_CHANGE {
                return Err(malformed("a compressed change over 16 MiB"));
            }
            let mut body = Vec::with_capacity(size);
            let mut again = Budget::new(size, false);
            again.inflate_into(data, Some(&mut body))?;
            super::runs::check_change(&body)?;
        }
        0 if budget.documents => document(data, budget)?,
        0 => return Err(malformed("a document where a change belongs")),
        // Bundles are no part of what peers exchange, and automerge expands
        // their columns while parsing, before any check of ours could.
        3 => return Err(malformed("bundles are not accepted")),
        other => return Err(malformed(&format!("unknown chunk type {other}"))),
    }
    Ok(rest)
}

/// A document: actors, heads, change and op column metadata, then the
/// change columns, the op columns and a suffix.
fn document(data: &[u8], budget: &mut Budget) -> Result<(), Error> {
    let mut r = Reader(data);
    r.actors()?;
    r.hashes()?;
    let changes = r.column_specs()?;
    let ops = r.column_specs()?;
    budget.add(data.len() - r.0.len())?;
    r.column_data(&changes, budget)?;
    r.column_data(&ops, budget)?;
    budget.add(r.0.len())
}

/// A bloom filter as automerge encodes it: empty, or entries, bits per
/// entry, probes, then the bits. Usable when it has bits and a sane number
/// of probes.
fn bloom_usable(bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut r = Reader(bytes);
    let (entries, bits_per_entry, probes) = (r.uleb()?, r.uleb()?, r.uleb()?);
    if entries == 0 || bits_per_entry == 0 || probes == 0 || probes > MAX_PROBES {
        return Err(malformed("unusable bloom filter"));
    }
    Ok(())
}

/// The bytes still to read.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.0.len() {
            return Err(malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A signed LEB128 number.
    pub(super) fn sleb(&mut self) -> Result<i64, Error> {
        let mut value: i64 = 0;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            value |= i64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i < 9 && byte & 0x40 != 0 {
                    value |= -1i64 << (7 * (i + 1));
                }
                return Ok(value);
            }
        }
        Err(malformed("number overflows 64 bits"))
    }

    /// A length-prefixed run of bytes, skipped.
    pub(super) fn len_bytes(&mut self) -> Result<(), Error> {
        let len = self.len_prefix()?;
        self.take(len).map(drop)
    }

    /// Column metadata: (specification, length) of each column.
    pub(super) fn column_specs(&mut self) -> Result<Vec<(u64, usize)>, Error> {
        let n = self.count(2)?;
        let mut cols = Vec::with_capacity(n);
        for _ in 0..n {
            let spec = self.uleb()?;
            let len =
                usize::try_from(self.uleb()?).map_err(|_| malformed("column past the end"))?;
            cols.push((spec, len));
        }
        Ok(cols)
    }

    /// An unsigned LEB128 number, as automerge writes them.
    pub(super) fn uleb(&mut self) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                return Err(malformed("number overflows 64 bits"));
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("number overflows 64 bits"))
    }

    /// A length: a number that must fit in what is left.
    pub(super) fn len_prefix(&mut self) -> Result<usize, Error> {
        let n = self.uleb()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.0.len())
            .ok_or_else(|| malformed("length past the end"))
    }

    /// A count of items that each take at least `min` bytes.
    pub(super) fn count(&mut self, min: usize) -> Result<usize, Error> {
        let n = self.uleb()?;
        usize::try_from(n)
            .ok()
            .filter(|n| n.saturating_mul(min) <= self.0.len())
            .ok_or_else(|| malformed("count past the end"))
    }

    pub(super) fn actors(&mut self) -> Result<(), Error> {
        for _ in 0..self.count(1)? {
            let len = self.len_prefix()?;
            self.take(len)?;
        }
        Ok(())
    }

    pub(super) fn hashes(&mut self) -> Result<(), Error> {
        let n = self.count(HASH_LEN)?;
        self.take(n * HASH_LEN)?;
        Ok(())
    }

    /// Column metadata: (whether compressed, length) of each column.
    /// The data of a document's columns `cols`: compressed ones inflated
    /// and counted (then, within the limit, inflated again to be read),
    /// and every column's run-length entries bounded.
    fn column_data(&mut self, cols: &[(u64, usize)], budget: &mut Budget) -> Result<(), Error> {
        for &(spec, len) in cols {
            let data = self.take(len)?;
            if spec & u64::from(DEFLATE_BIT) != 0 && !data.is_empty() {
                let before = budget.used;
                budget.inflate(data)?;
                let size = budget.used - before;
                let mut column = Vec::with_capacity(size);
                Budget::new(size, false).inflate_into(data, Some(&mut column))?;
                super::runs::check_column(spec, &column, super::runs::MAX_DOC_ENTRIES)?;
            } else {
                budget.add(len)?;
                super::runs::check_column(spec, data, super::runs::MAX_DOC_ENTRIES)?;
            }
        }
        Ok(())
    }
}

/// A compressed change chunk whose body is `inflated` zero bytes: what an
/// attacker would send. Built in slices, so making it allocates only its
/// compressed size (about a thousandth).
#[cfg(any(test, feature = "testing"))]
#[must_use]
pub fn zero_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = [0u8; 64 << 10];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(zeros.len());
        deflater.write_all(&zeros[..n]).expect("writing to memory");
        left -= n;
    }
    let body = deflater.finish().expect("writing to memory");
    let mut chunk = MAGIC.to_vec();
    chunk.extend([0, 0, 0, 0, 2]);
    let mut len = body.len();
    loop {
        let byte = u8::try_from(len & 0x7f).expect("seven bits");
        len >>= 7;
        if len == 0 {
            chunk.push(byte);
            break;
        }
        chunk.push(byte | 0x80);
    }
    chunk.extend(body);
    chunk
}

/// A sync message that carries `chunks` as its changes and says nothing
/// else: what a peer could send.
#[cfg(any(test, feature = "testing"))]
#[must_use]
pub fn sync_message_carrying(chunks: Vec<Vec<u8>>) -> Vec<u8> {
    automerge::sync::Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: chunks.into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use automerge::ActorId;

    use super::*;
    use crate::doc::SessionDoc;
    use crate::NodeId;

    fn doc_with(value: &str) -> SessionDoc {
        let node = NodeId::random();
        let mut doc = SessionDoc::new(ActorId::random(), node, 1_000, 60_000, 0);
        doc.insert("big", &value).unwrap();
        doc.increment("n", 2, node).unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn what_automerge_writes_is_counted_whole() {
        // Long enough that automerge compresses the value's column.
        let mut doc = doc_with(&"abc".repeat(20_000));
        let saved = doc.save();
        let size = inflated_size(&saved, usize::MAX).unwrap();
        assert!(size > 60_000, "the compressed column inflated: {size}");
        assert!(
            saved.len() < 10_000,
            "automerge compressed it: {}",
            saved.len()
        );
        assert!(matches!(
            inflated_size(&saved, size - 1),
            Err(Error::Inflation { .. })
        ));
        // Change chunks, several in a row, count as they are.
        let chunks = [doc.save_after(&[]), doc_with("x").save_after(&[])].concat();
        assert_eq!(inflated_size(&chunks, usize::MAX).unwrap(), chunks.len());
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        let bomb = zero_bomb(10 << 20);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        assert!(matches!(
            inflated_size(&bomb, 1 << 20),
            Err(Error::Inflation { limit }) if limit == 1 << 20
        ));
        let whole = inflated_size(&bomb, usize::MAX).unwrap();
        assert!(whole > 10 << 20);
    }

    #[test]
    fn bundles_and_documents_in_pushes_are_refused_unparsed() {
        // A bundle whose one column is a run of 2^33 zeros: automerge
        // would collect it into 64 GiB while parsing.
        let bomb = [
            0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 3, 12, 0, 0, 0, 1, 0x23, 6, 0x80, 0x80, 0x80, 0x80,
            0x20, 0,
        ];
        assert!(matches!(
            inflated_size(&bomb, usize::MAX),
            Err(Error::Sync(_))
        ));
        let doc = doc_with("v").save();
        assert!(inflated_size(&doc, usize::MAX).is_ok());
        assert!(matches!(
            change_inflated_size(&doc, usize::MAX),
            Err(Error::Sync(_))
        ));
    }

    #[test]
    fn a_document_column_claiming_billions_of_entries_is_refused() {
        // One op column of actor type: a run of 2^40 zeros in 7 bytes.
        let body = [0, 0, 0, 1, 0x11, 7, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0];
        let mut bomb = MAGIC.to_vec();
        bomb.extend([0, 0, 0, 0, 0, u8::try_from(body.len()).unwrap()]);
        bomb.extend(body);
        let refused = inflated_size(&bomb, usize::MAX);
        assert!(matches!(refused, Err(Error::Sync(_))), "{refused:?}");
        // A real document with a compressed column passes (checked above
        // too): its runs are read once inflated.
        let mut doc = doc_with(&"abc".repeat(20_000));
        assert!(inflated_size(&doc.save(), usize::MAX).is_ok());
    }

    #[test]
    fn a_bloom_filter_automerge_cannot_use_is_refused() {
        let mut msg = vec![0x42, 1];
        msg.extend([7u8; 32]);
        // No needs; one have: no last-sync heads, a 3-byte filter of one
        // entry, zero bits per entry, 7 probes; no changes.
        msg.extend([0, 1, 0, 3, 1, 0, 7, 0]);
        let mut doc = doc_with("v");
        let mut state = automerge::sync::State::new();
        let refused = doc.receive_sync_message(&mut state, &msg, usize::MAX);
        assert!(matches!(refused, Err(Error::Sync(_))), "{refused:?}");
        // And answering the peer afterwards is safe.
        let _ = doc.generate_sync_message(&mut state);
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let saved = doc_with("v").save();
        for bad in [
            &b"not automerge"[..],
            &saved[..saved.len() - 1],
            &[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 9, 0][..],
            &[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff][..],
        ] {
            assert!(matches!(
                inflated_size(bad, usize::MAX),
                Err(Error::Sync(_))
            ));
        }
    }
}
