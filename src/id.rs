//! Identifiers: [`SessionId`] (the secret in the cookie), [`DocKey`] (the
//! public name of a session's document) and [`NodeId`] (a node's stable name).
//!
//! A session id is a bearer token, so it never reaches the disk, the network
//! or a log: everything below the HTTP layer knows a session only by its
//! [`DocKey`], a SHA-256 digest of the id. A stolen RocksDB directory or a
//! captured replication stream therefore yields no usable cookie.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Length of every identifier in bytes (128 bits).
pub const ID_LEN: usize = 16;

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
///
/// Panics when the operating system has no random source at all; no session
/// could be issued safely in that state.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the OS CSPRNG is unavailable");
    buf
}

/// A session id: 128 random bits from the OS CSPRNG, shown as 22 URL-safe
/// base64 characters (the cookie value).
///
/// `Debug` prints only the short hash of the id, so a stray `{:?}` in a log
/// line never leaks a bearer token.
///
/// # Examples
///
/// ```
/// use sessionmesh::SessionId;
///
/// let id = SessionId::random();
/// let text = id.to_string();
/// assert_eq!(text.len(), 22);
/// assert_eq!(text.parse::<SessionId>().unwrap(), id);
/// assert!("not an id".parse::<SessionId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    /// Draws a fresh id from the OS CSPRNG.
    #[must_use]
    pub fn random() -> Self {
        Self(random_bytes())
    }

    /// An id from its 16 bytes, for adapters whose framework draws the ids
    /// (tower-sessions, actix-session).
    #[must_use]
    pub fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes of the id (a secret: never log them).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; ID_LEN] {
        self.0
    }

    /// The document key of this session: what the store and the network use.
    #[must_use]
    pub fn doc_key(&self) -> DocKey {
        let digest = Sha256::digest(self.0);
        let mut key = [0u8; ID_LEN];
        key.copy_from_slice(&digest[..ID_LEN]);
        DocKey(key)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.doc_key().short())
    }
}

/// The text was not a session id (22 URL-safe base64 characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a session id: expected 22 URL-safe base64 characters")]
pub struct ParseIdError;

impl FromStr for SessionId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 22 {
            return Err(ParseIdError);
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| ParseIdError)?;
        let arr: [u8; ID_LEN] = bytes.try_into().map_err(|_| ParseIdError)?;
        Ok(Self(arr))
    }
}

/// The name of a session's document in the store and on the wire: the first
/// 128 bits of SHA-256 of the [`SessionId`]. Not a secret; `Display` is hex.
///
/// # Examples
///
/// ```
/// use sessionmesh::SessionId;
///
/// let id = SessionId::random();
/// assert_eq!(id.doc_key(), id.doc_key());
/// assert_eq!(id.doc_key().to_string().len(), 32);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey([u8; ID_LEN]);

impl DocKey {
    /// The raw bytes (the RocksDB key).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Rebuilds a key from stored bytes; `None` unless exactly 16 bytes.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// A key from its 16 bytes.
    #[must_use]
    pub fn from_array(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The first 8 hex digits: what log lines carry.
    #[must_use]
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for DocKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for DocKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocKey({})", self.short())
    }
}

/// A node's stable name, kept in its data directory so it survives restarts.
/// Used for per-node registers inside session documents (`meta/touch/<node>`).
///
/// # Examples
///
/// ```
/// use sessionmesh::NodeId;
///
/// let id = NodeId::random();
/// assert_eq!(NodeId::from_slice(id.as_bytes()), Some(id));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; ID_LEN]);

impl NodeId {
    /// Draws a fresh node id from the OS CSPRNG.
    #[must_use]
    pub fn random() -> Self {
        Self(random_bytes())
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Rebuilds an id from stored bytes; `None` unless exactly 16 bytes.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_round_trip() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<SessionId>(), Ok(a));
        assert_ne!(a.doc_key(), b.doc_key());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let id = SessionId::random();
        assert!(!format!("{id:?}").contains(&id.to_string()));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "abc",
            "!!!!!!!!!!!!!!!!!!!!!!",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad}");
        }
    }
}
