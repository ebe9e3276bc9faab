//! The demo peers' command line as an operator uses it: `--help`, settings
//! from a config file and from `SESSIONMESH_*` variables, and a clean stop on
//! SIGTERM in the middle of traffic, for every demo peer.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{cookie_of, example_binary, free_port, PeerProcess};
use reqwest::{Client, StatusCode};

/// Every setting of the demo contract, as a flag and as a variable.
const SETTINGS: [(&str, &str); 9] = [
    ("--http", "SESSIONMESH_HTTP"),
    ("--data", "SESSIONMESH_DATA"),
    ("--listen", "SESSIONMESH_LISTEN"),
    ("--peer", "SESSIONMESH_PEER"),
    ("--cluster-key ", "SESSIONMESH_CLUSTER_KEY"),
    ("--cluster-key-file", "SESSIONMESH_CLUSTER_KEY_FILE"),
    ("--replication", "SESSIONMESH_REPLICATION"),
    ("--mdns", "SESSIONMESH_MDNS"),
    ("--config", "SESSIONMESH_CONFIG"),
];

fn demo_peers() -> Vec<&'static str> {
    let mut names = vec!["peer"];
    if cfg!(feature = "tower-sessions") {
        names.push("tower_sessions_peer");
    }
    if cfg!(feature = "actix") {
        names.push("actix_peer");
    }
    names
}

#[test]
fn help_lists_every_flag_with_its_variable() {
    for name in demo_peers() {
        let out = Command::new(example_binary(name))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} --help: {}", out.status);
        let help = String::from_utf8(out.stdout).unwrap();
        for (flag, var) in SETTINGS {
            assert!(help.contains(flag), "{name} --help lacks {flag}:\n{help}");
            assert!(help.contains(var), "{name} --help lacks {var}:\n{help}");
        }
    }
}

#[test]
fn bad_settings_exit_2_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("peer.toml");
    std::fs::write(&config, "http = \"127.0.0.1:1\"\ndata = \"x\"\nnodes = 3\n").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--config", config.to_str().unwrap()], "nodes"),
        (
            &[
                "--http",
                "127.0.0.1:1",
                "--data",
                "x",
                "--peer",
                "/ip4/127.0.0.1/tcp/1",
            ],
            "cluster key",
        ),
        (&["--data", "x"], "--http is required"),
    ];
    for (args, says) in cases {
        let out = Command::new(example_binary("peer"))
            .args(args)
            .env_remove("SESSIONMESH_HTTP")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Node A from a config file (its HTTP address from the environment), node B
/// from variables only, the cluster key in a file for both; a flag overrides
/// its variable. A sync write on B is served by A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_a_config_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("cluster.key");
    std::fs::write(&key_file, format!("{}\n", "3c".repeat(32))).unwrap();
    let p2p = free_port();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nlisten = [\"/ip4/127.0.0.1/tcp/{p2p}\"]\n\
             cluster_key_file = {:?}\nreplication = \"sync\"\n",
            a_data.to_str().unwrap(),
            key_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let a_port = free_port();
    let mut a = Command::new(example_binary("peer"));
    a.env("SESSIONMESH_CONFIG", &config)
        .env("SESSIONMESH_HTTP", format!("127.0.0.1:{a_port}"));
    let a = PeerProcess::launch(a, a_port).await;

    let (b_port, unused) = (free_port(), free_port());
    let mut b = Command::new(example_binary("peer"));
    b.env("SESSIONMESH_HTTP", format!("127.0.0.1:{unused}"))
        .args(["--http", &format!("127.0.0.1:{b_port}")])
        .env("SESSIONMESH_DATA", &b_data)
        .env("SESSIONMESH_PEER", format!("/ip4/127.0.0.1/tcp/{p2p}"))
        .env("SESSIONMESH_CLUSTER_KEY_FILE", &key_file)
        .env("SESSIONMESH_REPLICATION", "sync");
    let b = PeerProcess::launch(b, b_port).await;
    common::wait_for_peers(&b.base, 1).await;

    let http = Client::new();
    let res = http
        .put(format!("{}/session/user", b.base))
        .body("\"ada\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cookie = cookie_of(&res).unwrap();
    // Sync: A acknowledged the write before B answered, so A serves it now.
    let on_a = common::session_json(&http, &a.base, Some(&cookie)).await;
    assert_eq!(on_a["user"], "ada", "{on_a}");
    drop((a, b));
    assert!(
        a_data.join("CURRENT").exists(),
        "A's data is where the file said"
    );
    assert!(
        b_data.join("CURRENT").exists(),
        "B's data is where the variable said"
    );
}

/// Writers PUT fresh keys into one session; SIGTERM arrives mid-stream. Each
/// demo peer drains, shuts its node down and exits 0, and every write it
/// answered 204 is in its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_keeps_every_acknowledged_write() {
    for name in demo_peers() {
        sigterm_under_load(name).await;
    }
}

async fn sigterm_under_load(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut peer = PeerProcess::start_example(name, dir.path(), &[]).await;
    let http = Client::new();
    let (cookie, acked, writers) = common::start_writing(&http, &peer.base, 4).await;
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = tokio::task::block_in_place(|| peer.terminate(Duration::from_secs(20)));
    assert!(status.success(), "SIGTERM ended {name} with {status}");
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // The same peer on the same directory serves them all.
    let peer = PeerProcess::start_example(name, dir.path(), &[]).await;
    let all = common::session_json(&http, &peer.base, Some(&cookie)).await;
    let missing: Vec<_> = acked.iter().filter(|k| all.get(k).is_none()).collect();
    assert!(
        missing.is_empty(),
        "{name}: {} of {} acknowledged writes lost",
        missing.len(),
        acked.len()
    );
}

/// `RUST_LOG=sessionmesh=debug` prints the request path's and replication's
/// spans, naming sessions by a hash of their key, never by their id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_show_request_and_replication_spans_without_session_ids() {
    let dir = tempfile::tempdir().unwrap();
    let key = "2a".repeat(32);
    let p2p = free_port();
    let b_port = free_port();
    let mut b = Command::new(example_binary("peer"));
    b.args(["--http", &format!("127.0.0.1:{b_port}"), "--data"])
        .arg(dir.path().join("b"))
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
        .args(["--cluster-key", &key]);
    let _b = PeerProcess::launch(b, b_port).await;
    let log_path = dir.path().join("a.log");
    let a_port = free_port();
    let mut a = Command::new(example_binary("peer"));
    a.args(["--http", &format!("127.0.0.1:{a_port}"), "--data"])
        .arg(dir.path().join("a"))
        .args(["--peer", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
        .args(["--cluster-key", &key])
        .env("RUST_LOG", "sessionmesh=debug");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut a = PeerProcess::launch_logged(a, a_port, log.into()).await;
    common::wait_for_peers(&a.base, 1).await;
    let http = Client::new();
    let res = http
        .put(format!("{}/session/user", a.base))
        .body("\"ada\"")
        .send()
        .await
        .unwrap();
    let cookie = cookie_of(&res).unwrap();
    let id = cookie.trim_start_matches("id=").to_owned();
    let read = common::session_json(&http, &a.base, Some(&cookie)).await;
    assert_eq!(read["user"], "ada");
    for _ in 0..200 {
        if std::fs::read_to_string(&log_path)
            .unwrap()
            .contains("push answered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::task::block_in_place(|| a.terminate(Duration::from_secs(20)));
    let log = std::fs::read_to_string(&log_path).unwrap();
    for span in ["session.create", "session.load", "replication.push"] {
        assert!(log.contains(span), "no {span} span in:\n{log}");
    }
    assert!(log.contains("close"), "spans are printed as they close");
    assert!(!log.contains(&id), "the session id leaked into the log");
}
