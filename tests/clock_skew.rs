//! A node restarted with its clock past the idle timeout (found by the
//! nemesis: with libfaketime at +31 min, a restarted node answered its
//! users with fresh, empty sessions, then with stale ones, for seconds
//! after it came up). It checks its clock against its peers before it
//! serves or sweeps, and serves the live session it holds.
#![allow(clippy::unwrap_used)]

mod common;

use sessionmesh::net::{self, Replication};
use sessionmesh::{Clock, Config, ManualClock, Node, SessionId, SystemClock};

async fn open_b(dir: &std::path::Path, peers: &[&Node], clock: impl Clock) -> Node {
    let mut net = net::Config::new(common::KEY)
        .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .with_replication(Replication::Async);
    for p in peers {
        net = net.with_peer(p.listen_addrs().await.into_iter().next().unwrap());
    }
    Node::open(Config::new(dir).with_clock(clock).with_network(net))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_31_minutes_ahead_sets_its_clock_before_it_serves_or_sweeps() {
    // Two nodes with the right time (two nodes alone cannot tell whose
    // clock is right: they meet in the middle), and B.
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = common::net_node(dirs[0].path(), common::KEY, Replication::Async).await;
    let c = common::net_node(dirs[2].path(), common::KEY, Replication::Async).await;
    common::mesh(&[&a, &c]).await;
    let id = SessionId::random();
    a.create(&id, &[]).await.unwrap();
    let b = open_b(dirs[1].path(), &[&a, &c], SystemClock).await;
    common::eventually("the session on B", || async { b.session_count() == 1 }).await;
    b.shutdown().await.unwrap();

    // B again, its clock 31 minutes ahead (past the 30 minute idle timeout).
    let ahead = ManualClock::new(a.now_ms() + 31 * 60_000);
    let b = open_b(dirs[1].path(), &[&a, &c], ahead).await;
    let off = b.now_ms().abs_diff(a.now_ms());
    assert!(
        off < 5_000,
        "B opened {off} ms off its peers: B {:?}, A {:?}, C {:?}",
        b.clock_offsets(),
        a.clock_offsets(),
        c.clock_offsets()
    );
    assert_eq!(b.sweep().await.unwrap().tombstoned, 0);
    assert_eq!(b.session_count(), 1, "B tombstoned the session it holds");
    assert!(
        b.load(&id).await.unwrap().is_some(),
        "B judged a live session expired"
    );
    for node in [b, a, c] {
        node.shutdown().await.unwrap();
    }
}
