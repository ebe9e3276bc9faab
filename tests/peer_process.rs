//! The demo peer as a real OS process: durability across SIGKILL in the
//! middle of a stream of commits. (Its HTTP contract over a socket is
//! `tests/adapters.rs`, run against every integration path.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cookie_of, spawn_writers, PeerProcess};
use reqwest::{Client, StatusCode};
use sessionmesh::{Config, Node, SessionId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut peer = PeerProcess::start(dir.path()).await;
    let http = Client::new();
    let (cookie, acked, writers) = common::start_writing(&http, &peer.base, 4).await;
    // Let a few hundred commits land, then kill mid-stream.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    peer.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let node = Node::open(Config::new(dir.path())).await.unwrap();
    let id: SessionId = cookie.trim_start_matches("id=").parse().unwrap();
    let view = node.load(&id).await.unwrap().expect("session survives");
    let missing: Vec<_> = acked
        .iter()
        .filter(|k| !view.attributes.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    node.shutdown().await.unwrap();
}

/// Three peer processes with `--replication sync`; writers hit A, A is
/// killed with `SIGKILL` mid-traffic, and every write A acknowledged is
/// served by B and C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_replication_loses_no_acknowledged_write_when_a_node_is_killed() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(tempfile::TempDir::path).collect();
    let mut peers = common::peer_mesh(&paths, &["--replication", "sync"]).await;
    let http = Client::new();
    let first = http
        .put(format!("{}/session/seed", peers[0].base))
        .body("0")
        .send()
        .await
        .unwrap();
    let cookie = cookie_of(&first).unwrap();
    let (acked, writers) = spawn_writers(&http, &peers[0].base, &cookie, 3);
    while acked.lock().unwrap().len() < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    peers[0].kill();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for p in &peers[1..] {
        common::eventually("every acknowledged write on the survivors", || async {
            let all = common::session_json(&http, &p.base, Some(&cookie)).await;
            acked.iter().all(|k| all.get(k).is_some())
        })
        .await;
    }
}

/// The write-ahead log file holding the most bytes in `dir`.
fn largest_wal(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a write-ahead log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_write_ahead_log_is_reported_not_silently_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut peer = PeerProcess::start(dir.path()).await;
    let http = Client::new();
    for i in 0..20 {
        let res = http
            .put(format!("{}/session/k", peer.base))
            .body(i.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    peer.kill();
    // One byte flipped in the middle of the log a crash left behind.
    let wal = largest_wal(dir.path());
    let mut bytes = std::fs::read(&wal).unwrap();
    assert!(bytes.len() > 1_000, "{} bytes", bytes.len());
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&wal, &bytes).unwrap();

    let refused = Node::open(Config::new(dir.path())).await;
    let err = refused.expect_err("a damaged log is not opened silently");
    assert!(
        matches!(
            err,
            sessionmesh::Error::Store(sessionmesh::store::Error::WalCorrupt { .. })
        ),
        "{err}"
    );
    // Asked to, it opens at the last consistent point: some sessions lost.
    let node = Node::open(Config::new(dir.path()).with_wal_salvage(true))
        .await
        .unwrap();
    assert!(node.session_count() < 20, "{}", node.session_count());
    node.shutdown().await.unwrap();
}

/// The actix example on its own: its cookie key comes from the node, so a
/// restart keeps every user logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actix_example_keeps_its_sessions_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http = Client::new();
    let cookie = {
        let peer = PeerProcess::start_example("actix_peer", dir.path(), &[]).await;
        let res = http
            .put(format!("{}/session/user", peer.base))
            .body("\"ada\"")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        cookie_of(&res).expect("a session cookie")
    };
    let peer = PeerProcess::start_example("actix_peer", dir.path(), &[]).await;
    let body = common::session_json(&http, &peer.base, Some(&cookie)).await;
    assert_eq!(body["user"], "ada", "{body}");
}
