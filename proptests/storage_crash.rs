//! Storage and crashes: random commit sequences on a few sessions, with
//! three kinds of fault (compaction every 3 commits, so they land around
//! snapshots too):
//!
//! - a crash: the node is dropped without `shutdown()` and opened again
//!   from its directory. Every acknowledged commit is there.
//! - a power loss: from a point on, the store acknowledges writes without
//!   keeping them (what `Durability::Process` allows a power cut to do to
//!   writes not yet synced); at the next crash the directory must hold
//!   exactly the commits before that point, whole and loadable, and the
//!   restarted node must write on without clashing with what it lost.
//! - a failed write: the next commit gets a storage error and changes
//!   nothing, and the node keeps serving.
//!
//! A `SIGKILL` of a real process in the middle of a stream of commits is in
//! `tests/peer_process.rs`.
//!
//! `PROPTEST_CASES` raises the case count (default 48 here).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;
use sessionmesh::doc::Op;
use sessionmesh::testing::{open_with_faults, StorageFaults, WriteKind};
use sessionmesh::{Config, Error, Node, SessionId};

#[derive(Debug, Clone)]
enum Step {
    Put { session: usize, key: u8, value: i64 },
    Remove { session: usize, key: u8 },
    Incr { session: usize, by: i64 },
    Clear { session: usize },
    Invalidate { session: usize },
    Crash,
    PowerLoss,
    FailNextWrite,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..3, 0u8..4, any::<i64>()).prop_map(|(session, key, value)| Step::Put { session, key, value }),
        2 => (0usize..3, 0u8..4).prop_map(|(session, key)| Step::Remove { session, key }),
        3 => (0usize..3, -100i64..100).prop_map(|(session, by)| Step::Incr { session, by }),
        1 => (0usize..3).prop_map(|session| Step::Clear { session }),
        1 => (0usize..3).prop_map(|session| Step::Invalidate { session }),
        2 => Just(Step::Crash),
        1 => Just(Step::PowerLoss),
        1 => Just(Step::FailNextWrite),
    ]
}

async fn open(dir: &std::path::Path, faults: &StorageFaults) -> Node {
    open_with_faults(Config::new(dir).with_compact_every(3), faults)
        .await
        .unwrap()
}

/// The model: each session's attributes, or `None` once invalidated.
type Model = Vec<Option<BTreeMap<String, Value>>>;

async fn check(node: &Node, ids: &[SessionId], model: &Model) -> Result<(), TestCaseError> {
    for (i, id) in ids.iter().enumerate() {
        let got = node.load(id).await.unwrap().map(|v| v.attributes);
        prop_assert_eq!(&got, &model[i], "session {}", i);
    }
    Ok(())
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<SessionId> = (0..3).map(|_| SessionId::random()).collect();
    let mut faults = StorageFaults::new();
    let mut node = open(dir.path(), &faults).await;
    let mut model: Model = Vec::new();
    for id in &ids {
        node.create(id, &[]).await.unwrap();
        model.push(Some(BTreeMap::new()));
    }
    // What the disk holds since a power loss (the model at that point).
    let mut durable: Option<Model> = None;
    for s in steps {
        let (session, ops) = match &s {
            Step::Crash => {
                drop(node);
                if let Some(kept) = durable.take() {
                    model = kept;
                }
                faults = StorageFaults::new();
                node = open(dir.path(), &faults).await;
                check(&node, &ids, &model).await?;
                continue;
            }
            Step::PowerLoss => {
                if durable.is_none() {
                    faults.crash();
                    durable = Some(model.clone());
                }
                continue;
            }
            Step::FailNextWrite => {
                // A write that surely writes, on a live session: it fails,
                // and nothing of it shows. (Not after a power loss: the node
                // would be gone, and a failed write reads the disk again.)
                let live = model.iter().position(Option::is_some);
                if let (Some(i), None) = (live, &durable) {
                    faults.fail_next(WriteKind::Any);
                    let ops = [Op::Insert {
                        key: "failed".into(),
                        json: "1".into(),
                    }];
                    let failed = node.commit(&ids[i], &ops).await;
                    prop_assert!(matches!(failed, Err(Error::Store(_))), "{:?}", failed);
                    let now = node.load(&ids[i]).await.unwrap().map(|v| v.attributes);
                    prop_assert_eq!(&now, &model[i], "a failed write changed nothing");
                }
                continue;
            }
            Step::Put {
                session,
                key,
                value,
            } => (
                *session,
                vec![Op::Insert {
                    key: format!("k{key}"),
                    json: value.to_string(),
                }],
            ),
            Step::Remove { session, key } => (
                *session,
                vec![Op::Remove {
                    key: format!("k{key}"),
                }],
            ),
            Step::Incr { session, by } => (
                *session,
                vec![Op::Increment {
                    key: "n".into(),
                    by: *by,
                }],
            ),
            Step::Clear { session } => (*session, vec![Op::Clear]),
            Step::Invalidate { session } => (*session, vec![Op::Invalidate]),
        };
        let acked = node.commit(&ids[session], &ops).await.unwrap();
        let Some(attrs) = model[session].as_mut() else {
            prop_assert!(
                acked.is_none(),
                "a write to an invalidated session must not land"
            );
            continue;
        };
        match s {
            Step::Put { key, value, .. } => {
                attrs.insert(format!("k{key}"), value.into());
            }
            Step::Remove { key, .. } => {
                attrs.remove(&format!("k{key}"));
            }
            Step::Incr { by, .. } => {
                let n = attrs.get("n").and_then(Value::as_i64).unwrap_or(0);
                attrs.insert("n".into(), (n + by).into());
            }
            Step::Clear { .. } => attrs.clear(),
            Step::Invalidate { .. } => model[session] = None,
            Step::Crash | Step::PowerLoss | Step::FailNextWrite => unreachable!(),
        }
        let now = model[session].clone();
        prop_assert_eq!(acked.map(|v| v.attributes), now, "acknowledged state");
    }
    drop(node);
    if let Some(kept) = durable.take() {
        model = kept;
    }
    let node = open(dir.path(), &StorageFaults::new()).await;
    check(&node, &ids, &model).await?;
    // The restarted node writes on, whatever it lost.
    for id in &ids {
        let _ = node
            .commit(
                id,
                &[Op::Increment {
                    key: "after".into(),
                    by: 1,
                }],
            )
            .await
            .unwrap();
    }
    node.shutdown().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48)
    ))]

    #[test]
    fn every_acknowledged_commit_survives_a_crash(steps in prop::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(steps))?;
    }
}
