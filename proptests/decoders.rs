//! Every decoder that takes outside input, fed arbitrary bytes: peer
//! messages, documents and changes from peers or the disk, sync messages,
//! and cookie values. None may panic; each answers with a typed error (or a
//! value that round-trips).
//!
//! Compressed data from outside inflates at most to a limit: a
//! "decompression bomb" is refused while it inflates, allocating next to
//! nothing (counted per thread with `allocation_counter`).
//!
//! `PROPTEST_CASES` raises the case count (default 512 here).

#![allow(clippy::unwrap_used)]

use automerge::ActorId;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sessionmesh::doc::{
    inflated_size, sync_message_carrying, zero_bomb, Error as DocError, SessionDoc,
};
use sessionmesh::net::wire;
use sessionmesh::{NodeId, SessionId};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512)
}

/// Real encodings with a few bytes flipped, so mutations reach deep into
/// the decoders instead of failing on the first byte.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len().max(1);
    prop::collection::vec((0..len, any::<u8>()), 0..6).prop_map(move |flips| {
        let mut b = base.clone();
        for (i, v) in flips {
            if i < b.len() {
                b[i] = v;
            }
        }
        b
    })
}

/// Bytes of the DEFLATE body of a compressed chunk from `zero_bomb`: what
/// follows its LEB128 length.
fn deflated_len(chunk: &[u8]) -> usize {
    let mut len = 0usize;
    for (i, b) in chunk[9..].iter().enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return len;
        }
    }
    unreachable!("a length ends")
}

/// 200 MB of zeros in a compressed change, sent in a sync message, is
/// refused while it inflates: what the receiver allocates stays near the
/// message's own size, and the document is unchanged.
#[test]
fn a_sync_message_that_inflates_past_the_limit_is_refused_without_allocating_it() {
    let msg = sync_message_carrying(vec![zero_bomb(200 << 20)]);
    assert!(msg.len() < 1 << 20, "{}", msg.len());
    let mut doc = sample_doc();
    let before = doc.heads();
    let mut state = automerge::sync::State::new();
    let mut result = None;
    let info = allocation_counter::measure(|| {
        result = Some(doc.receive_sync_message(&mut state, &msg, 64 << 20));
    });
    assert!(
        matches!(result, Some(Err(DocError::Inflation { .. }))),
        "{result:?}"
    );
    assert!(
        info.bytes_max < 4 * msg.len() as u64,
        "allocated {} bytes for a {} byte message",
        info.bytes_max,
        msg.len()
    );
    assert_eq!(doc.heads(), before);
}

fn sample_doc() -> SessionDoc {
    let node = NodeId::random();
    let mut doc = SessionDoc::new(ActorId::random(), node, 1_000, 60_000, 0);
    doc.insert("user", &"ada").unwrap();
    doc.increment("n", 3, node).unwrap();
    doc.commit();
    doc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn peer_messages(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(req) = wire::decode_request(&bytes) {
            // Whatever decodes re-encodes to something that decodes again.
            prop_assert!(wire::decode_request(&wire::encode_request(&req)).is_ok());
        }
        if let Ok(resp) = wire::decode_response(&bytes) {
            prop_assert!(wire::decode_response(&wire::encode_response(&resp)).is_ok());
        }
    }

    #[test]
    fn mutated_peer_messages(bytes in mutated(wire::encode_request(&sessionmesh::net::Request::Digest {
        from: serde_bytes::ByteBuf::from(vec![1, 2]),
        to: serde_bytes::ByteBuf::new(),
        entries: vec![sessionmesh::net::DigestEntry { key: serde_bytes::ByteArray::new([5; 16]), heads: 9 }],
    }))) {
        let _ = wire::decode_request(&bytes);
        let _ = wire::decode_response(&bytes);
    }

    #[test]
    fn documents_from_disk_or_peers(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(mut doc) = SessionDoc::load(&bytes, ActorId::random()) {
            let _ = doc.summary();
        }
    }

    #[test]
    fn mutated_documents(bytes in mutated(sample_doc().save())) {
        if let Ok(mut doc) = SessionDoc::load(&bytes, ActorId::random()) {
            let _ = doc.summary();
            let _ = doc.status(2_000);
        }
    }

    #[test]
    fn change_chunks_and_sync_messages(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut doc = sample_doc();
        let before = doc.heads();
        let chunk = doc.apply_change_chunk(&bytes);
        let mut state = automerge::sync::State::new();
        let sync = doc.receive_sync_message(&mut state, &bytes, 1 << 20);
        // Junk that both decoders refuse changes nothing.
        if chunk.is_err() && sync.is_err() {
            prop_assert_eq!(doc.heads(), before);
        }
        let _ = doc.summary();
    }

    #[test]
    fn inflation_is_counted_exactly_and_stops_at_the_limit(
        zeros in 0usize..(4 << 20),
        limit in 1usize..(4 << 20),
    ) {
        let bomb = zero_bomb(zeros);
        let mut counted = None;
        let info = allocation_counter::measure(|| {
            counted = Some(inflated_size(&bomb, limit));
        });
        // The chunk's header (magic, checksum, type, length) plus the body.
        let header = bomb.len() - deflated_len(&bomb);
        // Refused: next to nothing allocated. Taken: the change's body is
        // read once (its run-length columns are checked), nothing more.
        let allowed = match counted.unwrap() {
            Ok(n) => {
                prop_assert_eq!(n, header + zeros);
                zeros as u64 + (256 << 10)
            }
            Err(DocError::Inflation { limit: l }) => {
                prop_assert_eq!(l, limit);
                prop_assert!(header + zeros > limit);
                256 << 10
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        prop_assert!(info.bytes_max < allowed, "allocated {} bytes", info.bytes_max);
    }

    #[test]
    fn cookie_values(text in ".{0,40}") {
        if let Ok(id) = text.parse::<SessionId>() {
            prop_assert_eq!(id.to_string(), text);
        }
    }
}
