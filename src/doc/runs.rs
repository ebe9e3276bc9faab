//! How many operations a change claims, read from the run-length encoded
//! columns of its operations without decoding them. A change of a few
//! dozen bytes can describe a run of 2^60 operations: automerge would spin
//! verifying them, or build gigabytes applying a few hundred million. Peers
//! never send changes larger than one request's writes, so a change past
//! [`MAX_OPS`] in any column is refused before automerge sees it.

use super::inflate::{malformed, Reader};
use super::Error;

/// Operations one change may carry: a `Clear` of the largest session of
/// small keys, with room to spare.
pub(crate) const MAX_OPS: u64 = 1 << 20;
/// Entries a column of a whole document may hold: a generation's changes
/// and operations, with room to spare.
pub(crate) const MAX_DOC_ENTRIES: u64 = 1 << 22;

/// Column types, as the low three bits of a column specification.
const GROUP: u64 = 0;
const ACTOR: u64 = 1;
const INTEGER: u64 = 2;
const DELTA: u64 = 3;
const BOOLEAN: u64 = 4;
const STRING: u64 = 5;
const VALUE_META: u64 = 6;

/// Checks that no column of the change whose body (what follows the chunk
/// header) is `body` holds more than [`MAX_OPS`] entries.
pub(crate) fn check_change(body: &[u8]) -> Result<(), Error> {
    let mut r = Reader(body);
    r.hashes()?;
    r.len_bytes()?; // actor
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.sleb()?; // time
    r.len_bytes()?; // message
    r.actors()?;
    let cols = r.column_specs()?;
    for (spec, len) in cols {
        check_column(spec, r.take(len)?, MAX_OPS)?;
    }
    Ok(())
}

/// Checks that the column with specification `spec` and (uncompressed)
/// `data` holds at most `cap` entries.
pub(crate) fn check_column(spec: u64, data: &[u8], cap: u64) -> Result<(), Error> {
    let entries = match spec & 0b111 {
        BOOLEAN => booleans(data, cap)?,
        GROUP | ACTOR | VALUE_META => runs(data, Value::Unsigned, cap)?,
        INTEGER | DELTA => runs(data, Value::Signed, cap)?,
        STRING => runs(data, Value::Text, cap)?,
        _ => 0, // raw values: their count comes from the metadata column
    };
    if entries > cap {
        return Err(malformed(&format!(
            "a column claiming {entries} entries, over {cap}"
        )));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Value {
    Unsigned,
    Signed,
    Text,
}

/// Entries of a run-length encoded column: runs of one value (a positive
/// count, then the value), literal runs (a negative count, then that many
/// values) and null runs (0, then a count). Stops counting past the cap.
fn runs(data: &[u8], value: Value, cap: u64) -> Result<u64, Error> {
    let mut r = Reader(data);
    let mut total: u64 = 0;
    while !r.0.is_empty() && total <= cap {
        let count = r.sleb()?;
        let values = match count {
            c if c > 0 => {
                total = total.saturating_add(c.unsigned_abs());
                1
            }
            c if c < 0 => {
                total = total.saturating_add(c.unsigned_abs());
                c.unsigned_abs()
            }
            _ => {
                total = total.saturating_add(r.uleb()?);
                0
            }
        };
        if total > cap {
            break;
        }
        for _ in 0..values {
            match value {
                Value::Unsigned => {
                    r.uleb()?;
                }
                Value::Signed => {
                    r.sleb()?;
                }
                Value::Text => r.len_bytes()?,
            }
        }
    }
    Ok(total)
}

/// Entries of a boolean column: alternating run lengths.
fn booleans(data: &[u8], cap: u64) -> Result<u64, Error> {
    let mut r = Reader(data);
    let mut total: u64 = 0;
    while !r.0.is_empty() && total <= cap {
        total = total.saturating_add(r.uleb()?);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use automerge::ActorId;

    use super::*;
    use crate::doc::SessionDoc;
    use crate::NodeId;

    /// The body of a change chunk (after magic, checksum, type, length).
    fn body(chunk: &[u8]) -> &[u8] {
        let mut r = Reader(&chunk[9..]);
        let len = r.len_prefix().unwrap();
        r.take(len).unwrap()
    }

    #[test]
    fn real_changes_pass_and_a_run_of_billions_does_not() {
        let node = NodeId::random();
        let mut doc = SessionDoc::new(ActorId::random(), node, 1_000, 60_000, 0);
        for i in 0..200 {
            doc.insert(&format!("k{i}"), &i).unwrap();
        }
        doc.increment("n", 3, node).unwrap();
        doc.commit();
        let chunk = doc.save_after(&[]);
        check_change(body(&chunk)).unwrap();
        // The same change with its first column's data replaced by one run
        // of 2^40 entries.
        let mut forged = Vec::new();
        forged.push(0); // no deps
        forged.extend([1, 0xaa]); // actor
        forged.extend([1, 1, 0, 0, 0]); // seq, start op, time, message, others
        forged.extend([1, 0x11, 7]); // one column: actor type, 7 bytes
        forged.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0]); // 2^40 × 0
        assert!(matches!(check_change(&forged), Err(Error::Sync(_))));
    }
}
