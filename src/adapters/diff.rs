//! The base marker and the diff from a framework's final session state to
//! the operations that state implies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::doc::Op;

/// The data key under which an adapter keeps what a request loaded.
pub const BASE_KEY: &str = "__sessionmesh_base";

fn hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys an application declared as counters (see the stores'
/// `with_counters`).
pub(crate) type Counters = Arc<BTreeSet<String>>;

/// The marker for a session loaded with `attributes`: `{"h": {key: hash}}`,
/// and `"c": {key: integer}` for each of `counters` that holds an integer
/// (adapters may add fields of their own next to these).
pub(crate) fn stamp(
    attributes: &BTreeMap<String, Value>,
    counters: &Counters,
) -> serde_json::Map<String, Value> {
    let hashes = attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(hash(v))))
        .collect();
    let mut marker = serde_json::Map::new();
    marker.insert("h".into(), Value::Object(hashes));
    let loaded: serde_json::Map<String, Value> = counters
        .iter()
        .filter_map(|k| Some((k.clone(), attributes.get(k)?.as_i64()?.into())))
        .collect();
    if !loaded.is_empty() {
        marker.insert("c".into(), Value::Object(loaded));
    }
    marker
}

/// Every attribute of `data` as a write, ignoring any marker: what a new
/// session (created fresh, or moved to a new id) holds.
pub(crate) fn full<'a>(data: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Vec<Op> {
    data.into_iter()
        .filter(|(k, _)| k.as_str() != BASE_KEY)
        .map(|(k, v)| Op::Insert {
            key: k.clone(),
            json: v.to_string(),
        })
        .collect()
}

/// The operations that turn the loaded state (described by the marker in
/// `data`, if any) into `data`. A key of `counters` that went from the
/// integer `a` (as loaded; 0 when it was not there) to the integer `b` is
/// an increment of `b - a`, so concurrent read-modify-write increments on
/// any nodes add up.
pub(crate) fn ops<'a>(
    data: impl IntoIterator<Item = (&'a String, &'a Value)>,
    counters: &Counters,
) -> Vec<Op> {
    let data: Vec<(&String, &Value)> = data.into_iter().collect();
    let marker = data
        .iter()
        .find(|(k, _)| k.as_str() == BASE_KEY)
        .map(|(_, v)| *v);
    let base = marker.and_then(|m| m.get("h")).and_then(Value::as_object);
    let loaded_counters = marker.and_then(|m| m.get("c")).and_then(Value::as_object);
    let mut ops = Vec::new();
    if base.is_none() {
        ops.push(Op::Clear);
    }
    for (k, v) in &data {
        if k.as_str() == BASE_KEY {
            continue;
        }
        let unchanged =
            base.and_then(|b| b.get(k.as_str())).and_then(Value::as_str) == Some(hash(v).as_str());
        if unchanged {
            continue;
        }
        let was = match (base, loaded_counters.and_then(|c| c.get(k.as_str()))) {
            (_, Some(n)) => n.as_i64(),
            (Some(b), None) if !b.contains_key(k.as_str()) => Some(0),
            _ => None,
        };
        let by = was
            .filter(|_| counters.contains(k.as_str()))
            .zip(v.as_i64())
            .and_then(|(a, b)| b.checked_sub(a));
        ops.push(match by {
            Some(by) => Op::Increment {
                key: (*k).clone(),
                by,
            },
            None => Op::Insert {
                key: (*k).clone(),
                json: v.to_string(),
            },
        });
    }
    if let Some(base) = base {
        for k in base.keys() {
            if !data.iter().any(|(d, _)| *d == k) {
                ops.push(Op::Remove { key: k.clone() });
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none() -> Counters {
        Counters::default()
    }

    #[test]
    fn declared_counters_that_moved_become_increments() {
        let counters: Counters = Arc::new(["n", "m", "fresh", "text"].map(String::from).into());
        let base = loaded(&[
            ("n", json!(5)),
            ("m", json!(2)),
            ("text", json!("x")),
            ("k", json!(1)),
        ]);
        let mut data = base.clone();
        data.insert(BASE_KEY.into(), Value::Object(stamp(&base, &counters)));
        // Read-modify-write: 5 -> 7, a new counter 0 -> 1, an undeclared
        // integer and a declared key that held text are plain writes.
        data.insert("n".into(), json!(7));
        data.insert("fresh".into(), json!(1));
        data.insert("k".into(), json!(2));
        data.insert("text".into(), json!(3));
        assert_eq!(
            ops(&data, &counters),
            vec![
                Op::Increment {
                    key: "fresh".into(),
                    by: 1
                },
                Op::Insert {
                    key: "k".into(),
                    json: "2".into()
                },
                Op::Increment {
                    key: "n".into(),
                    by: 2
                },
                Op::Insert {
                    key: "text".into(),
                    json: "3".into()
                },
            ]
        );
        // Without a marker (the application cleared the session) nothing is
        // an increment.
        let cleared = loaded(&[("n", json!(1))]);
        assert!(ops(&cleared, &counters)
            .iter()
            .all(|op| !matches!(op, Op::Increment { .. })));
    }

    fn loaded(attrs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn only_changed_keys_become_writes() {
        let base = loaded(&[("a", json!(1)), ("b", json!("x")), ("c", json!([1]))]);
        let mut data: BTreeMap<String, Value> = base.clone();
        data.insert(BASE_KEY.into(), Value::Object(stamp(&base, &none())));
        data.insert("b".into(), json!("y"));
        data.remove("c");
        data.insert("d".into(), json!(true));
        let ops = ops(&data, &none());
        assert_eq!(
            ops,
            vec![
                Op::Insert {
                    key: "b".into(),
                    json: "\"y\"".into()
                },
                Op::Insert {
                    key: "d".into(),
                    json: "true".into()
                },
                Op::Remove { key: "c".into() },
            ]
        );
    }

    #[test]
    fn without_a_marker_everything_is_replaced() {
        let data: BTreeMap<String, Value> = loaded(&[("a", json!(1))]);
        assert_eq!(
            ops(&data, &none()),
            vec![
                Op::Clear,
                Op::Insert {
                    key: "a".into(),
                    json: "1".into()
                }
            ]
        );
    }
}
