//! The layout of a session document's root map: its key prefixes and the
//! helpers that build and take apart its keys. Every key sits directly on
//! the root (see the [module docs](super) for why).

use crate::id::NodeId;

pub(super) const DATA: &str = "data/";
pub(super) const COUNT: &str = "count/";
pub(super) const META: &str = "meta/";
pub(super) const TOUCH: &str = "meta/touch/";
pub(super) const CREATED: &str = "meta/created";
pub(super) const MAX_IDLE: &str = "meta/max_idle";
pub(super) const ABSOLUTE: &str = "meta/absolute_expiry";
pub(super) const EXPIRY: &str = "meta/expiry";
pub(super) const INVALIDATED: &str = "meta/invalidated";
pub(super) const SUCCESSOR: &str = "meta/successor";
/// A generation's end: the next one starts from the state at the winning
/// mark (see `generation.rs`).
pub(super) const NEXT: &str = "meta/next";

pub(super) fn data_key(key: &str) -> String {
    format!("{DATA}{key}")
}

pub(super) fn count_key(key: &str, node: NodeId) -> String {
    format!("{COUNT}{key}/{node}")
}

pub(super) fn touch_key(node: NodeId) -> String {
    format!("{TOUCH}{node}")
}

/// The keys that start with `prefix`, which ends in `/`, as a key range:
/// automerge seeks to it instead of walking every key of the map.
pub(super) fn prefix_range(prefix: &str) -> std::ops::Range<String> {
    let stem = prefix.strip_suffix('/').unwrap_or(prefix);
    // '0' is the character after '/'.
    prefix.to_owned()..format!("{stem}0")
}

/// The attribute a root key holds a part of: `data/<name>` or
/// `count/<name>/<node>`.
pub(super) fn attribute_of(root_key: &str) -> Option<&str> {
    if let Some(name) = root_key.strip_prefix(DATA) {
        return Some(name);
    }
    root_key
        .strip_prefix(COUNT)
        .and_then(|rest| rest.rsplit_once('/'))
        .map(|(name, _node)| name)
}

/// Whether root key `k` is one node's counter slot under `prefix`
/// (`count/<key>/`).
pub(super) fn is_slot_of(k: &str, prefix: &str) -> bool {
    // `count/<key>/<32 hex>`: the node part has no '/', so a key that is a
    // prefix of another ("a" vs "a/b") never picks up the other's slots.
    k.strip_prefix(prefix)
        .is_some_and(|node| !node.contains('/'))
}
