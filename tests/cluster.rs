//! Several nodes in one process, replicating over real TCP on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{eventually, mesh, net_node, KEY};
use serde_json::Value;
use sessionmesh::doc::Op;
use sessionmesh::net::Replication;
use sessionmesh::{Node, SessionId};

fn insert(key: &str, json: &str) -> Op {
    Op::Insert {
        key: key.into(),
        json: json.into(),
    }
}

async fn attrs(node: &Node, id: &SessionId) -> Option<BTreeMap<String, Value>> {
    node.load(id).await.unwrap().map(|v| v.attributes)
}

struct Cluster {
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn cluster(n: usize, replication: Replication) -> Cluster {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        nodes.push(net_node(dir.path(), KEY, replication).await);
        dirs.push(dir);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    Cluster { nodes, _dirs: dirs }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_a_read_on_b() {
    let c = cluster(2, Replication::Sync { acks: 1 }).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let id = SessionId::random();
    a.create(&id, &[insert("user", "\"ada\"")]).await.unwrap();
    // Synchronous replication: on B the moment A answers.
    assert_eq!(attrs(b, &id).await.unwrap()["user"], "ada");
    a.commit(&id, &[insert("cart", "[1]")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attrs(b, &id).await.unwrap()["cart"], serde_json::json!([1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_on_miss_serves_an_id_this_node_never_saw() {
    // A line: B - A - C. Anti-entropy only at connection time (the interval is
    // an hour), so B can learn of C's new session only by asking A.
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let net = sessionmesh::net::Config::new(KEY)
            .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .with_replication(Replication::Sync { acks: 1 })
            .with_anti_entropy_interval(std::time::Duration::from_secs(3_600));
        let config = sessionmesh::Config::new(dir.path()).with_network(net);
        nodes.push(Node::open(config).await.unwrap());
        dirs.push(dir);
    }
    let (a, b, cc) = (&nodes[0], &nodes[1], &nodes[2]);
    mesh(&[a, b]).await;
    mesh(&[a, cc]).await;
    let id = SessionId::random();
    cc.create(&id, &[insert("k", "1")]).await.unwrap();
    assert_eq!(a.session_count(), 1, "acked by A");
    assert_eq!(b.session_count(), 0, "B has not heard of it");
    assert_eq!(attrs(b, &id).await.unwrap()["k"], 1);
    assert_eq!(b.session_count(), 1, "the fetched session is kept");
    // An id nobody issued stays unknown.
    assert_eq!(attrs(b, &SessionId::random()).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_three_nodes_all_survive_and_increments_sum() {
    let c = cluster(3, Replication::Sync { acks: 2 }).await;
    let id = SessionId::random();
    c.nodes[0]
        .create(&id, &[insert("start", "0")])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let (node, id) = (node.clone(), id);
        tasks.push(tokio::spawn(async move {
            for j in 0..10 {
                let ops = [
                    insert(&format!("n{i}-{j}"), &j.to_string()),
                    Op::Increment {
                        key: "hits".into(),
                        by: 1,
                    },
                ];
                node.commit(&id, &ops).await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for node in &c.nodes {
        eventually("every write on every node", || async {
            let a = attrs(node, &id).await.unwrap_or_default();
            a.get("hits") == Some(&Value::from(30))
                && (0..3).all(|i| (0..10).all(|j| a.contains_key(&format!("n{i}-{j}"))))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_node_s_sessions_are_served_by_the_others_at_once() {
    let mut c = cluster(3, Replication::Sync { acks: 2 }).await;
    let ids: Vec<SessionId> = (0..20).map(|_| SessionId::random()).collect();
    for (i, id) in ids.iter().enumerate() {
        c.nodes[0]
            .create(id, &[insert("i", &i.to_string())])
            .await
            .unwrap();
    }
    let a = c.nodes.remove(0);
    let a_peer = a.peer_id().unwrap();
    drop(a); // no shutdown: the node just goes away
    for node in &c.nodes {
        eventually("the dropped node's connections close", || async {
            !node.peers().await.contains(&a_peer)
        })
        .await;
    }
    for node in &c.nodes {
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                attrs(node, id).await.unwrap()["i"],
                i,
                "acked on two peers, so here"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_and_a_new_empty_node_catch_up_without_requests() {
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        nodes.push(net_node(dir.path(), KEY, Replication::Async).await);
        dirs.push(dir);
    }
    mesh(&[&nodes[0], &nodes[1]]).await;
    let id = SessionId::random();
    nodes[0].create(&id, &[insert("v", "1")]).await.unwrap();
    eventually("replicated", || async { nodes[1].session_count() == 1 }).await;
    // Restart B from its data directory while A keeps writing.
    let b = nodes.pop().unwrap();
    let b_peer = b.peer_id().unwrap();
    b.shutdown().await.unwrap();
    drop(b);
    nodes[0]
        .commit(&id, &[insert("v", "2")])
        .await
        .unwrap()
        .unwrap();
    let more: Vec<SessionId> = (0..5).map(|_| SessionId::random()).collect();
    for m in &more {
        nodes[0].create(m, &[insert("m", "1")]).await.unwrap();
    }
    let b = net_node(dirs[1].path(), KEY, Replication::Async).await;
    assert_eq!(
        b.peer_id().unwrap(),
        b_peer,
        "the peer id survives a restart"
    );
    mesh(&[&nodes[0], &b]).await;
    eventually("restarted node caught up", || async {
        b.session_count() == 6
    })
    .await;
    assert_eq!(attrs(&b, &id).await.unwrap()["v"], 2);
    // A brand-new node with an empty directory.
    let dir = tempfile::tempdir().unwrap();
    let fresh = net_node(dir.path(), KEY, Replication::Async).await;
    mesh(&[&nodes[0], &b, &fresh]).await;
    eventually("new node caught up", || async {
        fresh.session_count() == 6
    })
    .await;
    for m in &more {
        assert_eq!(attrs(&fresh, m).await.unwrap()["m"], 1);
    }
}

/// Two connected nodes whose configs `tune` adjusts; dead sessions become
/// tombstones at the next sweep.
async fn pair(tune: impl Fn(sessionmesh::Config) -> sessionmesh::Config) -> Cluster {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let net = sessionmesh::net::Config::new(KEY)
            .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .with_anti_entropy_interval(std::time::Duration::from_millis(200));
        let config = sessionmesh::Config::new(dir.path())
            .with_network(net)
            .with_tombstone_grace(std::time::Duration::ZERO);
        nodes.push(Node::open(tune(config)).await.unwrap());
        dirs.push(dir);
    }
    mesh(&[&nodes[0], &nodes[1]]).await;
    Cluster { nodes, _dirs: dirs }
}

/// Creates a session on `a`, lets it reach `b`, cuts `b` off, then ends the
/// session on `a` and collects it into a tombstone. Returns its id.
async fn end_while_partitioned(a: &Node, b: &Node) -> SessionId {
    let id = SessionId::random();
    a.create(&id, &[insert("k", "1")]).await.unwrap();
    eventually("replicated", || async { b.session_count() == 1 }).await;
    partition(&[a], &[b], true).await;
    eventually("partitioned", || async { a.peers().await.is_empty() }).await;
    a.commit(&id, &[Op::Invalidate]).await.unwrap();
    assert_eq!(a.sweep().await.unwrap().tombstoned, 1);
    id
}

async fn partition(side_a: &[&Node], side_b: &[&Node], blocked: bool) {
    for x in side_a {
        for y in side_b {
            x.set_blocked(y.peer_id().unwrap(), blocked).await.unwrap();
            y.set_blocked(x.peer_id().unwrap(), blocked).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_both_sides_write_then_heal_and_converge() {
    let c = cluster(3, Replication::Async).await;
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let id = SessionId::random();
    let doomed = SessionId::random();
    a.create(&id, &[insert("base", "0")]).await.unwrap();
    a.create(&doomed, &[insert("x", "0")]).await.unwrap();
    for n in [b, cc] {
        eventually("replicated", || async { n.session_count() == 2 }).await;
    }
    partition(&[a], &[b, cc], true).await;
    eventually("partitioned", || async { a.peers().await.is_empty() }).await;
    // Both sides keep serving and writing.
    a.commit(
        &id,
        &[
            insert("left", "1"),
            Op::Increment {
                key: "n".into(),
                by: 2,
            },
        ],
    )
    .await
    .unwrap()
    .unwrap();
    b.commit(
        &id,
        &[
            insert("right", "1"),
            Op::Increment {
                key: "n".into(),
                by: 3,
            },
        ],
    )
    .await
    .unwrap()
    .unwrap();
    // Invalidate on one side, write on the other.
    a.commit(&doomed, &[Op::Invalidate]).await.unwrap();
    cc.commit(&doomed, &[insert("late", "1")])
        .await
        .unwrap()
        .unwrap();
    // The two sides hold different sessions, and their fingerprints say so.
    eventually("b and c alike", || async {
        b.fingerprint().await.unwrap() == cc.fingerprint().await.unwrap()
    })
    .await;
    let (left, right) = (
        a.fingerprint().await.unwrap(),
        b.fingerprint().await.unwrap(),
    );
    assert_eq!(
        (left.sessions, right.sessions),
        (1, 2),
        "the logout ends one"
    );
    assert_ne!(left.hash, right.hash);
    partition(&[a], &[b, cc], false).await;
    for n in [a, b, cc] {
        eventually("converged", || async {
            let v = attrs(n, &id).await.unwrap_or_default();
            v.contains_key("left") && v.contains_key("right") && v.get("n") == Some(&Value::from(5))
        })
        .await;
        eventually("invalidation wins after heal", || async {
            attrs(n, &doomed).await.is_none()
        })
        .await;
    }
    // All nodes hold the same session, value for value.
    let reference = attrs(a, &id).await.unwrap();
    for n in [b, cc] {
        eventually("equal everywhere", || async {
            attrs(n, &id).await.as_ref() == Some(&reference)
        })
        .await;
    }
    eventually("equal fingerprints", || async {
        let prints = [
            a.fingerprint().await.unwrap(),
            b.fingerprint().await.unwrap(),
            cc.fingerprint().await.unwrap(),
        ];
        prints[0].sessions == 1 && prints.windows(2).all(|w| w[0] == w[1])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_cluster_key_can_neither_read_nor_write() {
    let c = cluster(2, Replication::Async).await;
    let dir = tempfile::tempdir().unwrap();
    let intruder = net_node(dir.path(), [7; 32], Replication::Async).await;
    let addr = c.nodes[0].listen_addrs().await[0].clone();
    intruder.add_peer(addr).await.unwrap();
    let id = SessionId::random();
    c.nodes[0]
        .create(&id, &[insert("secret", "1")])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(intruder.peers().await.is_empty(), "handshake must fail");
    assert!(c.nodes[0].peers().await.len() == 1);
    assert_eq!(attrs(&intruder, &id).await, None);
    // Its writes go nowhere.
    let own = SessionId::random();
    intruder.create(&own, &[insert("x", "1")]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(attrs(&c.nodes[0], &own).await, None);
    assert_eq!(c.nodes[0].session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_policy_fail_reports_too_few_acks_but_keeps_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let net = sessionmesh::net::Config::new(KEY)
        .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .with_replication(Replication::Sync { acks: 2 })
        .with_sync_policy(sessionmesh::net::SyncPolicy::Fail)
        .with_sync_timeout(std::time::Duration::from_millis(300));
    let a = Node::open(sessionmesh::Config::new(dir.path()).with_network(net))
        .await
        .unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let b = net_node(dir_b.path(), KEY, Replication::Async).await;
    mesh(&[&a, &b]).await;
    let id = SessionId::random();
    let err = a.create(&id, &[insert("k", "1")]).await.unwrap_err();
    assert!(
        matches!(
            err,
            sessionmesh::Error::NotReplicated {
                acked: 1,
                wanted: 2
            }
        ),
        "{err}"
    );
    // Persisted here and on the one peer that answered.
    assert_eq!(attrs(&a, &id).await.unwrap()["k"], 1);
    assert_eq!(attrs(&b, &id).await.unwrap()["k"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_kills_the_old_id_on_every_node() {
    let c = cluster(3, Replication::Sync { acks: 2 }).await;
    let old = SessionId::random();
    c.nodes[0]
        .create(&old, &[insert("user", "\"ada\"")])
        .await
        .unwrap();
    let new = SessionId::random();
    c.nodes[1]
        .rotate(&old, &new, &[insert("role", "\"admin\"")])
        .await
        .unwrap()
        .unwrap();
    for n in &c.nodes {
        eventually("old id dead, new id live everywhere", || async {
            attrs(n, &old).await.is_none()
                && attrs(n, &new)
                    .await
                    .is_some_and(|a| a.get("user") == Some(&Value::from("ada")))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_is_never_resurrected_and_ends_a_stale_live_copy() {
    // A ends the session and collects it while B is cut off with a live copy.
    let c = pair(|config| config).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let id = end_while_partitioned(a, b).await;
    assert_eq!(attrs(b, &id).await.unwrap()["k"], 1, "B still has its copy");
    partition(&[a], &[b], false).await;
    eventually("the stale copy ends", || async {
        attrs(b, &id).await.is_none()
    })
    .await;
    // And A never takes the document back.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(attrs(a, &id).await, None);
    assert_eq!(a.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_keeps_other_peers_out() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let b = net_node(dir_b.path(), KEY, Replication::Async).await;
    // A allows only a peer id that is not B's.
    let stranger = sessionmesh::net::PeerId::random();
    let net = sessionmesh::net::Config::new(KEY)
        .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .with_allow_list([stranger]);
    let a = Node::open(sessionmesh::Config::new(dir_a.path()).with_network(net))
        .await
        .unwrap();
    b.add_peer(a.listen_addrs().await[0].clone()).await.unwrap();
    // B keeps redialling; A refuses each connection, so nothing flows.
    let id = SessionId::random();
    b.create(&id, &[insert("k", "1")]).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(a.peers().await.is_empty());
    }
    assert_eq!(a.session_count(), 0);
    assert_eq!(attrs(&a, &id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_away_past_the_gc_horizon_cannot_bring_a_collected_session_back() {
    let clock = sessionmesh::ManualClock::new(1_000_000);
    let c = pair(|config| {
        config
            .with_clock(clock.clone())
            .with_gc_horizon(std::time::Duration::from_secs(3_600))
    })
    .await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // B goes away; A ends the session, collects it, and forgets the tombstone.
    let id = end_while_partitioned(a, b).await;
    // The tombstone outlives the GC horizon and the session's own absolute
    // deadline (24 h by default), past which no copy can be live.
    clock.advance(std::time::Duration::from_secs(2 * 3_600));
    assert_eq!(a.sweep().await.unwrap().forgotten, 0);
    clock.advance(std::time::Duration::from_secs(23 * 3_600));
    assert_eq!(a.sweep().await.unwrap().forgotten, 1);
    // B comes back with its old copy; A never takes it.
    partition(&[a], &[b], false).await;
    eventually("reconnected", || async { !a.peers().await.is_empty() }).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    a.anti_entropy().await;
    b.anti_entropy().await;
    assert_eq!(a.session_count(), 0);
    assert_eq!(attrs(a, &id).await, None);
    assert_eq!(attrs(b, &id).await, None);
}

/// A writes while B, cut off, rotates the session: once they can talk
/// again, the successor holds A's write, and A's increment counts once
/// though both nodes carry it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_rotating_node_missed_reaches_the_successor_once() {
    let c = pair(|config| config).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let incr = |by| Op::Increment {
        key: "n".into(),
        by,
    };
    let old = SessionId::random();
    a.create(&old, &[insert("k", "1"), incr(1)]).await.unwrap();
    eventually("replicated", || async { b.session_count() == 1 }).await;
    partition(&[a], &[b], true).await;
    eventually("partitioned", || async { a.peers().await.is_empty() }).await;
    a.commit(&old, &[insert("late", "2"), incr(5)])
        .await
        .unwrap()
        .unwrap();
    let new = SessionId::random();
    b.rotate(&old, &new, &[]).await.unwrap().unwrap();
    partition(&[a], &[b], false).await;
    let carried = |x: &BTreeMap<String, Value>| {
        x.get("late") == Some(&Value::from(2)) && x.get("k") == Some(&Value::from(1))
    };
    for n in [a, b] {
        eventually("the successor holds the late write", || async {
            attrs(n, &new).await.is_some_and(|x| carried(&x))
        })
        .await;
    }
    for _ in 0..3 {
        a.anti_entropy().await;
        b.anti_entropy().await;
    }
    for n in [a, b] {
        let x = attrs(n, &new).await.unwrap();
        assert!(carried(&x), "{x:?}");
        assert_eq!(x["n"], 6, "the late increment counted once");
        assert!(attrs(n, &old).await.is_none(), "the old id is dead");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_kept_alive_across_a_partition_is_served_where_it_expired() {
    let clock = sessionmesh::ManualClock::new(1_000_000);
    let c = pair(|config| config.with_clock(clock.clone())).await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let id = SessionId::random();
    a.create(&id, &[insert("user", "\"ada\"")]).await.unwrap();
    eventually("replicated", || async { b.session_count() == 1 }).await;
    partition(&[a], &[b], true).await;
    eventually("partitioned", || async { a.peers().await.is_empty() }).await;
    // The user goes on on B for 40 minutes; on A the session idles out
    // (30 minutes) and is collected.
    for i in 0..4 {
        clock.advance(std::time::Duration::from_secs(600));
        assert!(attrs(b, &id).await.is_some());
        b.commit(&id, &[insert("step", &i.to_string())])
            .await
            .unwrap();
    }
    assert_eq!(a.sweep().await.unwrap().tombstoned, 1);
    assert_eq!(attrs(a, &id).await, None);
    partition(&[a], &[b], false).await;
    eventually("reconnected", || async { !a.peers().await.is_empty() }).await;
    // A request on A finds the session alive on B and serves it.
    eventually("served on A", || async {
        attrs(a, &id)
            .await
            .is_some_and(|m| m.get("step") == Some(&3.into()))
    })
    .await;
}

/// Two nodes whose clocks are two hours apart: they measure it, move
/// toward each other, and a session created on the slow one then lives on
/// the other (before, it arrived there dead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_clocks_disagree_agree_before_they_decide_expiry() {
    const HOUR: u64 = 3_600_000;
    let clocks = [
        sessionmesh::ManualClock::new(100 * HOUR),
        sessionmesh::ManualClock::new(98 * HOUR),
    ];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = Vec::new();
    for (dir, clock) in dirs.iter().zip(&clocks) {
        let net = sessionmesh::net::Config::new(KEY)
            .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .with_anti_entropy_interval(std::time::Duration::from_millis(100));
        let config = sessionmesh::Config::new(dir.path())
            .with_network(net)
            .with_clock(clock.clone());
        nodes.push(Node::open(config).await.unwrap());
    }
    let (fast, slow) = (&nodes[0], &nodes[1]);
    mesh(&[fast, slow]).await;
    // Both move at once (to the middle); each one's record of the other's
    // offset is right again at its next measurement.
    eventually("the clocks agree, and each node measures it", || async {
        let (offsets, _) = slow.clock_offsets();
        fast.now_ms().abs_diff(slow.now_ms()) < 2_000
            && offsets.iter().all(|(_, o)| o.abs() < 2_000)
    })
    .await;
    let (_, correction) = slow.clock_offsets();
    assert!(correction > 0, "the slow node moved forward: {correction}");
    let id = SessionId::random();
    slow.create(&id, &[insert("user", "\"ada\"")])
        .await
        .unwrap();
    eventually("served by the other node", || async {
        attrs(fast, &id).await.is_some_and(|m| m["user"] == "ada")
    })
    .await;
}
