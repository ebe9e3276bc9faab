//! Session tokens: a small, tamper-proof record of which state of its
//! session a client has seen, carried beside the session cookie. Any node
//! that serves the client's next request reads it and serves a state at
//! least that new — the user sees their own writes and time never goes
//! backwards for them, whichever node the balancer picks.
//!
//! # Format
//!
//! `base64url( 2 ‖ issued (u64 BE, ms) ‖ generation (u32 BE) ‖ n (u8) ‖
//! n heads × 32 B ‖ MAC )`, with `n ≤ 8` and MAC = the first 16 bytes of HMAC-SHA-256 over the
//! session's document key and everything before the MAC. The HMAC key is
//! derived from the cluster key, so every node of the cluster can check a
//! token and nothing outside it can make one. Binding the MAC to the
//! document key makes a token useless for any other session; the token
//! itself carries no id. Tokens of format 1 (before generations: no
//! generation field) still read, as generation 0.
//!
//! A token older than the tombstone GC horizon proves nothing any more
//! (every node may have forgotten the session since), and one issued
//! further in the future than clocks can disagree is refused: both read as
//! no token.

use automerge::ChangeHash;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::Millis;
use crate::engine::Version;
use crate::id::DocKey;

const FORMAT: u8 = 2;
/// Tokens issued before generations: no generation field.
const FORMAT_V1: u8 = 1;
const MAC_LEN: usize = 16;
const HEAD_LEN: usize = 32;
/// Bytes before the heads: format, issue time, generation, head count.
const PREFIX: usize = 1 + 8 + 4 + 1;
/// The same for format 1.
const PREFIX_V1: usize = 1 + 8 + 1;
/// The longest token text (base64 of the largest token).
const MAX_TEXT: usize = (PREFIX + Version::MAX_HEADS * HEAD_LEN + MAC_LEN) * 4 / 3 + 4;
/// How far ahead of this node's clock a token's issue time may be.
const CLOCK_TOLERANCE_MS: Millis = 10 * 60 * 1000;

/// Why a token was not taken (each reads as "no token").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Not a token of this format.
    Malformed,
    /// The MAC does not match: forged, changed, made by another cluster, or
    /// made for another session.
    Forged,
    /// Older than the GC horizon.
    Expired,
    /// Issued further in the future than clocks can disagree.
    FromTheFuture,
}

type HmacSha256 = Hmac<Sha256>;

/// The key that makes and checks tokens: an HMAC already keyed, cloned
/// for each token (keying it costs as much as a short message).
#[derive(Clone)]
pub(crate) struct TokenKey {
    keyed: HmacSha256,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// The token key of the cluster whose key is `cluster_key`.
    pub(crate) fn derive(cluster_key: &[u8; 32]) -> Self {
        let mut mac = new_mac(cluster_key);
        mac.update(b"sessionmesh session token key v1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Self {
            keyed: new_mac(&key),
        }
    }

    fn mac(&self, key: DocKey, body: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.keyed.clone();
        mac.update(key.as_bytes());
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A token saying the client has seen `version` of the session `key`.
    pub(crate) fn issue(&self, key: DocKey, version: &Version, now: Millis) -> String {
        let heads = version.heads();
        let mut bytes = Vec::with_capacity(PREFIX + heads.len() * HEAD_LEN + MAC_LEN);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&now.to_be_bytes());
        bytes.extend_from_slice(&version.gen().to_be_bytes());
        // `Version` holds at most MAX_HEADS (8) heads.
        bytes.push(u8::try_from(heads.len()).unwrap_or(u8::MAX));
        for h in heads {
            bytes.extend_from_slice(&h.0);
        }
        let mac = self.mac(key, &bytes);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The version a token for session `key` proves the client has seen.
    pub(crate) fn read(
        &self,
        key: DocKey,
        text: &str,
        now: Millis,
        max_age: Millis,
    ) -> Result<Version, TokenError> {
        if text.len() > MAX_TEXT {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() < PREFIX_V1 + MAC_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let prefix = match body[0] {
            FORMAT if body.len() >= PREFIX => PREFIX,
            FORMAT_V1 => PREFIX_V1,
            _ => return Err(TokenError::Malformed),
        };
        let n = usize::from(body[prefix - 1]);
        if n > Version::MAX_HEADS || body.len() != prefix + n * HEAD_LEN {
            return Err(TokenError::Malformed);
        }
        // Compared in constant time by the MAC library.
        let mut check = self.keyed.clone();
        check.update(key.as_bytes());
        check.update(body);
        if check.verify_truncated_left(mac).is_err() {
            return Err(TokenError::Forged);
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&body[1..9]);
        let issued = Millis::from_be_bytes(issued);
        if issued > now.saturating_add(CLOCK_TOLERANCE_MS) {
            return Err(TokenError::FromTheFuture);
        }
        if now.saturating_sub(issued) > max_age {
            return Err(TokenError::Expired);
        }
        let gen = if prefix == PREFIX {
            u32::from_be_bytes([body[9], body[10], body[11], body[12]])
        } else {
            0
        };
        let heads = body[prefix..]
            .chunks_exact(HEAD_LEN)
            .map(|c| {
                let mut h = [0u8; HEAD_LEN];
                h.copy_from_slice(c);
                ChangeHash(h)
            })
            .collect();
        Ok(Version::new(gen, heads))
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    const HOUR: Millis = 3_600_000;

    fn version(n: u8) -> Version {
        Version::new(
            u32::from(n) * 7,
            (0..n).map(|i| ChangeHash([i; 32])).collect(),
        )
    }

    #[test]
    fn a_token_reads_back_for_its_session_only_and_only_unchanged() {
        let key = TokenKey::derive(&[7; 32]);
        let (a, b) = (SessionId::random().doc_key(), SessionId::random().doc_key());
        let now = 100 * HOUR;
        for n in [0, 1, 3, 8] {
            let token = key.issue(a, &version(n), now);
            assert!(token.len() <= MAX_TEXT, "{}", token.len());
            assert_eq!(key.read(a, &token, now, HOUR), Ok(version(n)));
            assert_eq!(key.read(b, &token, now, HOUR), Err(TokenError::Forged));
            let other = TokenKey::derive(&[8; 32]);
            assert_eq!(other.read(a, &token, now, HOUR), Err(TokenError::Forged));
        }
        // Any flipped byte is refused.
        let bytes = URL_SAFE_NO_PAD
            .decode(key.issue(a, &version(2), now))
            .unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(key
                .read(a, &URL_SAFE_NO_PAD.encode(&bad), now, HOUR)
                .is_err());
        }
        // More heads than a token holds: the first ones, still valid.
        let many = Version::new(56, (0..20).map(|i| ChangeHash([i; 32])).collect());
        assert_eq!(many, version(8));
    }

    #[test]
    fn a_token_of_the_first_format_reads_as_generation_zero() {
        let key = TokenKey::derive(&[7; 32]);
        let a = SessionId::random().doc_key();
        let now = 100 * HOUR;
        let mut body = vec![FORMAT_V1];
        body.extend_from_slice(&now.to_be_bytes());
        body.push(1);
        body.extend_from_slice(&[3; 32]);
        let mac = key.mac(a, &body);
        body.extend_from_slice(&mac);
        let text = URL_SAFE_NO_PAD.encode(body);
        assert_eq!(
            key.read(a, &text, now, HOUR),
            Ok(Version::new(0, vec![ChangeHash([3; 32])]))
        );
    }

    #[test]
    fn old_future_and_garbage_tokens_are_refused() {
        let key = TokenKey::derive(&[7; 32]);
        let a = SessionId::random().doc_key();
        let now = 100 * HOUR;
        let token = key.issue(a, &version(1), now);
        assert_eq!(
            key.read(a, &token, now + 2 * HOUR, HOUR),
            Err(TokenError::Expired)
        );
        assert_eq!(
            key.read(a, &token, now - HOUR, 10 * HOUR),
            Err(TokenError::FromTheFuture)
        );
        for garbage in [
            "",
            "x",
            "!!!!",
            &"A".repeat(5_000),
            &token[..token.len() - 3],
        ] {
            assert!(key.read(a, garbage, now, HOUR).is_err(), "{garbage:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_refused_or_read_without_panic(text in ".{0,500}") {
            let key = TokenKey::derive(&[7; 32]);
            let _ = key.read(SessionId::random().doc_key(), &text, 0, u64::MAX);
        }
    }
}
