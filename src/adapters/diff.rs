//! The base marker and the diff from a framework's final session state to
//! the operations that state implies.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::doc::Op;

/// The data key under which an adapter keeps what a request loaded.
pub const BASE_KEY: &str = "__sessionmesh_base";

fn hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The marker for a session loaded with `attributes`: `{"h": {key: hash}}`
/// (adapters may add fields of their own next to `h`).
pub(crate) fn stamp(attributes: &BTreeMap<String, Value>) -> serde_json::Map<String, Value> {
    let hashes = attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(hash(v))))
        .collect();
    let mut marker = serde_json::Map::new();
    marker.insert("h".into(), Value::Object(hashes));
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
/// `data`, if any) into `data`.
pub(crate) fn ops<'a>(data: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Vec<Op> {
    let data: Vec<(&String, &Value)> = data.into_iter().collect();
    let base = data
        .iter()
        .find(|(k, _)| k.as_str() == BASE_KEY)
        .and_then(|(_, v)| v.get("h"))
        .and_then(Value::as_object);
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
        if !unchanged {
            ops.push(Op::Insert {
                key: (*k).clone(),
                json: v.to_string(),
            });
        }
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
        data.insert(BASE_KEY.into(), Value::Object(stamp(&base)));
        data.insert("b".into(), json!("y"));
        data.remove("c");
        data.insert("d".into(), json!(true));
        let ops = ops(&data);
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
            ops(&data),
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
