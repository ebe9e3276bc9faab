//! Every decoder that takes outside input, fed arbitrary bytes: peer
//! messages, documents and changes from peers or the disk, sync messages,
//! and cookie values. None may panic; each answers with a typed error (or a
//! value that round-trips).
//!
//! `PROPTEST_CASES` raises the case count (default 512 here).

#![allow(clippy::unwrap_used)]

use automerge::ActorId;
use proptest::prelude::*;
use sessionmesh::doc::SessionDoc;
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
        let sync = doc.receive_sync_message(&mut state, &bytes);
        // Junk that both decoders refuse changes nothing.
        if chunk.is_err() && sync.is_err() {
            prop_assert_eq!(doc.heads(), before);
        }
        let _ = doc.summary();
    }

    #[test]
    fn cookie_values(text in ".{0,40}") {
        if let Ok(id) = text.parse::<SessionId>() {
            prop_assert_eq!(id.to_string(), text);
        }
    }
}
