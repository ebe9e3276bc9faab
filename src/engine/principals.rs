//! "Log out everywhere": the sessions of a principal (a user), found on
//! any node. The principal is an ordinary attribute with a reserved name
//! ([`PRINCIPAL_ATTRIBUTE`]), so it replicates, merges, survives
//! generation switches and rotations like any other; each node indexes the
//! sessions it holds by it (`principals` column family). The index is
//! written before the document that names the principal and checked on
//! every read, so it may hold more than the truth, never less.

use sha2::{Digest, Sha256};

use super::requests;
use super::shared::{Pushes, Shared};
use super::slots::with_slot;
use super::view::SessionView;
use crate::doc::{may_write, Op, Status, Summary};
use crate::id::DocKey;
use crate::store::{PrincipalKey, SlotState};
use crate::Error;

/// The attribute that names a session's principal (a string). Set it with
/// [`Session::set_principal`](crate::http::Session::set_principal), or
/// through an adapter's own session API under this name.
pub const PRINCIPAL_ATTRIBUTE: &str = "sessionmesh.principal";

/// The principal `summary` names, if any.
pub(crate) fn principal_of(summary: &Summary) -> Option<&str> {
    summary
        .attributes
        .get(PRINCIPAL_ATTRIBUTE)
        .and_then(serde_json::Value::as_str)
}

/// The index's fixed-length name for `principal`.
fn index_key(principal: &str) -> PrincipalKey {
    let digest = Sha256::new()
        .chain_update(b"sessionmesh principal\0")
        .chain_update(principal.as_bytes())
        .finalize();
    let mut key = PrincipalKey::default();
    let n = key.len();
    key.copy_from_slice(&digest[..n]);
    key
}

/// Indexes `key` under the principal `summary` names, unless it is the one
/// it named `before` (already indexed). Call before persisting `summary`'s
/// document.
pub(crate) fn index(
    shared: &Shared,
    key: DocKey,
    before: Option<&str>,
    summary: &Summary,
) -> Result<(), Error> {
    match principal_of(summary) {
        Some(p) if Some(p) != before => {
            shared.store()?.index_principal(&index_key(p), key)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether the change chunk `chunk` may set or remove the principal (see
/// [`may_write`]). Such a change is applied at once rather than deferred,
/// so the index entry is written before it is stored (a deferred change
/// would reach the index only when the session is next read).
pub(crate) fn may_write_principal(chunk: &[u8]) -> bool {
    /// The principal's root key in the document.
    const ROOT_KEY: &str = "data/sessionmesh.principal";
    may_write(chunk, &[ROOT_KEY])
}

/// The live sessions of `principal` on this node. Index entries of
/// sessions that are gone for good or name another principal are dropped.
pub(crate) fn sessions_of(
    shared: &Shared,
    principal: &str,
) -> Result<Vec<(DocKey, SessionView)>, Error> {
    let ik = index_key(principal);
    let keys = shared.store()?.principal_keys(&ik)?;
    let mut live = Vec::new();
    for key in keys {
        let now = shared.now();
        let (view, stale) = with_slot(shared, key, |state| {
            Ok(match state {
                SlotState::Doc { summary, .. } if principal_of(summary) == Some(principal) => {
                    match summary.status(now) {
                        Status::Live => (Some(SessionView::of(summary)), false),
                        // Expired may yet be revived by a peer's copy.
                        Status::Expired | Status::Empty => (None, false),
                        Status::Invalidated | Status::Rotated(_) => (None, true),
                    }
                }
                // A new copy from a peer is indexed again when it arrives.
                _ => (None, true),
            })
        })?;
        if let Some(view) = view {
            live.push((key, view));
        } else if stale {
            shared.store()?.unindex_principal(&ik, key)?;
        }
    }
    Ok(live)
}

/// Invalidates every live session of `principal` on this node (and, through
/// the returned pushes, everywhere); returns how many.
pub(crate) fn invalidate_all_of(
    shared: &Shared,
    principal: &str,
) -> Result<(usize, Pushes), Error> {
    let mut pushes = Vec::new();
    let mut ended = 0;
    for (key, _) in sessions_of(shared, principal)? {
        let (_, p) = requests::commit(shared, key, &[Op::Invalidate])?;
        ended += 1;
        pushes.extend(p);
    }
    Ok((ended, pushes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_that_sets_or_removes_the_principal_is_recognised() {
        use automerge::ActorId;

        use crate::doc::SessionDoc;
        use crate::id::NodeId;

        let node = NodeId::random();
        let mut doc = SessionDoc::new(ActorId::random(), node, 1_000, 60_000, 0);
        doc.commit();
        // The change that `ops` make, as a chunk.
        let mut change = |ops: &dyn Fn(&mut SessionDoc)| {
            let heads = doc.heads();
            ops(&mut doc);
            doc.commit();
            doc.save_after(&heads)
        };
        let set = |value: &'static str| {
            move |d: &mut SessionDoc| d.insert(PRINCIPAL_ATTRIBUTE, &value).unwrap()
        };
        assert!(!may_write_principal(&change(&|d| d
            .insert("user", &"ada")
            .unwrap())));
        assert!(may_write_principal(&change(&set("user-42"))));
        // A large change as automerge compresses it (sync messages do).
        let compressed = |chunk: Vec<u8>| {
            let bytes = automerge::Change::from_bytes(chunk)
                .unwrap()
                .bytes()
                .into_owned();
            assert_eq!(bytes[8], 2, "a large change is compressed");
            bytes
        };
        let big = compressed(change(&|d| {
            d.insert("big", &"x".repeat(4_000)).unwrap();
            d.insert(PRINCIPAL_ATTRIBUTE, &"user-43").unwrap();
        }));
        assert!(may_write_principal(&big));
        let big = compressed(change(&|d| d.insert("big", &"y".repeat(4_000)).unwrap()));
        assert!(!may_write_principal(&big));
        assert!(may_write_principal(&change(&|d| d
            .remove(PRINCIPAL_ATTRIBUTE)
            .unwrap())));
    }

    #[test]
    fn principals_get_distinct_index_keys() {
        assert_ne!(index_key("user-42"), index_key("user-43"));
        assert_eq!(index_key("user-42"), index_key("user-42"));
        // A principal that is a prefix of another shares nothing with it.
        assert_ne!(index_key("user-4")[..], index_key("user-42")[..]);
    }
}
