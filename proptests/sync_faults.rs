//! Sync under a hostile network: nodes run the real replication protocol
//! (pushes, sync rounds, digests, fetch on miss) over a simulated network,
//! seeded per case, that drops requests and responses, duplicates requests,
//! delays and reorders them, and partitions the nodes. Once it heals, every
//! node must converge within a bounded number of anti-entropy rounds, with
//! every acknowledged write present and every counter exact.
//!
//! Half the cases end a session's generation every 2–4 changes (the
//! default is 64), so switches, concurrent switches on both sides of a
//! partition and changes arriving generations late are the common case;
//! every generation is kept, so nothing falls outside the window a node
//! may be away.
//!
//! `PROPTEST_CASES` raises the case count (default 24 here).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use proptest::prelude::*;
use sessionmesh::doc::Op;
use sessionmesh::net::{self, BoxFuture, PeerId, Replication, Request, Response, Transport};
use sessionmesh::{Config, Node, SessionId};

/// Anti-entropy rounds allowed after the heal.
const MAX_ROUNDS: usize = 8;

/// A seeded pseudo-random source (`SplitMix64`), so a failing case replays.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1_000 < per_mille
    }
}

#[derive(Debug)]
struct Faults {
    rng: Rng,
    /// Per mille: request lost, response lost, request delivered twice.
    drop: u64,
    drop_response: u64,
    duplicate: u64,
    /// Which side of the partition each node is on.
    side: Vec<u8>,
    healed: bool,
}

#[derive(Debug)]
struct World {
    nodes: Vec<(PeerId, Node)>,
    faults: Mutex<Faults>,
}

#[derive(Debug)]
struct SimNet {
    me: usize,
    world: Mutex<Weak<World>>,
}

impl SimNet {
    fn world(&self) -> Option<Arc<World>> {
        self.world.lock().unwrap().upgrade()
    }
}

impl Transport for SimNet {
    fn request(&self, peer: PeerId, req: Request) -> BoxFuture<'_, Result<Response, net::Error>> {
        Box::pin(async move {
            let lost = || net::Error::Request {
                peer,
                reason: "lost".into(),
            };
            let world = self.world().ok_or_else(lost)?;
            let to = world
                .nodes
                .iter()
                .position(|(p, _)| *p == peer)
                .ok_or_else(lost)?;
            let (drop, drop_response, duplicate, delay) = {
                let mut f = world.faults.lock().unwrap();
                if !f.healed && f.side[self.me] != f.side[to] {
                    return Err(lost());
                }
                let active = !f.healed;
                let (d, dr, dup) = (f.drop, f.drop_response, f.duplicate);
                (
                    active && f.rng.chance(d),
                    active && f.rng.chance(dr),
                    active && f.rng.chance(dup),
                    if active { f.rng.next() % 4 } else { 0 },
                )
            };
            // Delay by yielding: other requests overtake this one.
            for _ in 0..delay {
                tokio::task::yield_now().await;
            }
            if drop {
                return Err(lost());
            }
            let from = world.nodes[self.me].0;
            let node = world.nodes[to].1.clone();
            let resp = node.handle(from, req.clone());
            if duplicate {
                let _ = node.handle(from, req);
            }
            if drop_response {
                return Err(lost());
            }
            Ok(resp)
        })
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
        Box::pin(async move {
            let Some(world) = self.world() else {
                return Vec::new();
            };
            let f = world.faults.lock().unwrap();
            world
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != self.me && (f.healed || f.side[*i] == f.side[self.me]))
                .map(|(_, (p, _))| *p)
                .collect()
        })
    }
}

#[derive(Debug, Clone)]
enum Action {
    /// Write a fresh key into a session on a node.
    Put { node: usize, session: usize },
    /// Increment the session's counter on a node.
    Incr {
        node: usize,
        session: usize,
        by: i64,
    },
    /// Move a node to the other side of the partition.
    Flip { node: usize },
}

fn action(nodes: usize, sessions: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..nodes, 0..sessions).prop_map(|(node, session)| Action::Put { node, session }),
        3 => (0..nodes, 0..sessions, -5i64..6).prop_map(|(node, session, by)| Action::Incr { node, session, by }),
        1 => (0..nodes).prop_map(|node| Action::Flip { node }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    nodes: usize,
    sessions: usize,
    seed: u64,
    drop: u64,
    drop_response: u64,
    duplicate: u64,
    sync: bool,
    /// Changes per generation.
    every: u32,
    actions: Vec<Action>,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..5, 1usize..4).prop_flat_map(|(nodes, sessions)| {
        (
            any::<u64>(),
            0u64..300,
            0u64..300,
            0u64..300,
            any::<bool>(),
            prop_oneof![Just(64u32), 2u32..5],
            prop::collection::vec(action(nodes, sessions), 1..40),
        )
            .prop_map(
                move |(seed, drop, drop_response, duplicate, sync, every, actions)| Case {
                    nodes,
                    sessions,
                    seed,
                    drop,
                    drop_response,
                    duplicate,
                    sync,
                    every,
                    actions,
                },
            )
    })
}

async fn attrs(node: &Node, id: &SessionId) -> Option<BTreeMap<String, serde_json::Value>> {
    node.load(id).await.unwrap().map(|v| v.attributes)
}

/// What every node holds of session `id`, generation by generation, for
/// a failure to be read.
fn dump(world: &World, id: &SessionId) {
    for (i, (_, node)) in world.nodes.iter().enumerate() {
        match sessionmesh::testing::describe(node, id) {
            Ok(text) => eprintln!("node {i}:\n{text}"),
            Err(e) => eprintln!("node {i}: {e}"),
        }
    }
}

async fn run(case: Case) -> Result<(), TestCaseError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dirs: Vec<_> = (0..case.nodes)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let replication = if case.sync {
        Replication::Sync { acks: 1 }
    } else {
        Replication::Async
    };
    let net_config = net::Config::new([0; 32])
        .with_replication(replication)
        .with_sync_timeout(Duration::from_millis(200))
        .with_fetch_timeout(Duration::from_millis(200))
        .with_anti_entropy_interval(Duration::from_secs(3_600));
    let mut nodes = Vec::new();
    for d in &dirs {
        let config = Config::new(d.path())
            .with_generation_changes(case.every)
            .with_generations_kept(1_000);
        nodes.push((PeerId::random(), Node::open(config).await.unwrap()));
    }
    let faults = Faults {
        rng: Rng(case.seed),
        drop: case.drop,
        drop_response: case.drop_response,
        duplicate: case.duplicate,
        side: vec![0; case.nodes],
        healed: false,
    };
    let world = Arc::new(World {
        nodes,
        faults: Mutex::new(faults),
    });
    let nets: Vec<Arc<SimNet>> = (0..case.nodes)
        .map(|me| {
            Arc::new(SimNet {
                me,
                world: Mutex::new(Arc::downgrade(&world)),
            })
        })
        .collect();
    for (i, (_, node)) in world.nodes.iter().enumerate() {
        node.attach_transport(
            Arc::clone(&nets[i]) as Arc<dyn Transport>,
            net_config.clone(),
        )
        .unwrap();
    }

    // Every session starts on node 0, acknowledged there.
    let ids: Vec<SessionId> = (0..case.sessions).map(|_| SessionId::random()).collect();
    for id in &ids {
        world.nodes[0].1.create(id, &[]).await.unwrap();
    }
    let mut acked: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut counters = vec![0i64; case.sessions];
    for (n, a) in case.actions.iter().enumerate() {
        match a {
            Action::Flip { node } => {
                let mut f = world.faults.lock().unwrap();
                f.side[*node] ^= 1;
            }
            Action::Put { node, session } | Action::Incr { node, session, .. } => {
                let node_ref = &world.nodes[*node].1;
                let id = &ids[*session];
                // As a request would: load (fetching an unknown id), then write.
                if node_ref.load(id).await.unwrap().is_none() {
                    continue;
                }
                let (op, key) = match a {
                    Action::Put { .. } => {
                        let key = format!("w{n}");
                        (
                            Op::Insert {
                                key: key.clone(),
                                json: n.to_string(),
                            },
                            Some(key),
                        )
                    }
                    Action::Incr { by, .. } => (
                        Op::Increment {
                            key: "count".into(),
                            by: *by,
                        },
                        None,
                    ),
                    Action::Flip { .. } => unreachable!(),
                };
                if node_ref.commit(id, &[op]).await.unwrap().is_some() {
                    match (key, a) {
                        (Some(k), _) => {
                            acked.insert((*session, k));
                        }
                        (None, Action::Incr { by, .. }) => counters[*session] += by,
                        _ => {}
                    }
                }
            }
        }
    }

    // Heal, then anti-entropy rounds until every node agrees.
    world.faults.lock().unwrap().healed = true;
    let mut converged = false;
    let mut last = Vec::new();
    for _ in 0..MAX_ROUNDS {
        for (_, node) in &world.nodes {
            node.anti_entropy().await;
        }
        let mut views = Vec::new();
        for (_, node) in &world.nodes {
            let mut per = Vec::new();
            for id in &ids {
                per.push(attrs(node, id).await);
            }
            views.push(per);
        }
        last.clone_from(&views);
        if views.windows(2).all(|w| w[0] == w[1]) {
            converged = true;
            let all = &views[0];
            for (s, k) in &acked {
                let session = all[*s].as_ref();
                if !session.is_some_and(|a| a.contains_key(k)) {
                    dump(&world, &ids[*s]);
                }
                prop_assert!(
                    session.is_some_and(|a| a.contains_key(k)),
                    "acknowledged write {k} of session {s} lost"
                );
            }
            for (s, sum) in counters.iter().enumerate() {
                let got = all[s]
                    .as_ref()
                    .and_then(|a| a.get("count"))
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0);
                if got != *sum {
                    dump(&world, &ids[s]);
                }
                prop_assert_eq!(got, *sum, "counter of session {}", s);
            }
            break;
        }
    }
    prop_assert!(
        converged,
        "not converged after {} anti-entropy rounds: {:?}",
        MAX_ROUNDS,
        last
    );
    for (_, node) in &world.nodes {
        node.shutdown().await.unwrap();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24)
    ))]

    #[test]
    fn hostile_network_converges_with_every_acknowledged_write(case in case()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(case))?;
    }
}
