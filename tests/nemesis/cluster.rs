//! The system under test: one demo peer process per namespace, and haproxy
//! in the host namespace in front of them (round robin, no stickiness,
//! health checks on `/healthz`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::Net;

/// libfaketime (Debian package faketime).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The peers' HTTP and libp2p ports (inside their namespaces).
const HTTP: u16 = 8080;
const P2P: u16 = 7000;

/// The cluster: its processes, restarted at will.
pub struct Cluster {
    pub net: Net,
    peer_bin: PathBuf,
    dir: PathBuf,
    replication: String,
    peers: Vec<Option<Child>>,
    /// Each node's clock offset (libfaketime), `None` for the real clock.
    skew: Vec<Option<String>>,
    haproxy: Option<Child>,
    /// The load balancer's address on loopback.
    pub front: String,
}

impl Cluster {
    pub async fn start(
        net: Net,
        peer_bin: &Path,
        dir: &Path,
        replication: &str,
        front_port: u16,
    ) -> Self {
        let n = net.nodes;
        let mut cluster = Self {
            net,
            peer_bin: peer_bin.to_owned(),
            dir: dir.to_owned(),
            replication: replication.to_owned(),
            peers: (0..n).map(|_| None).collect(),
            skew: vec![None; n],
            haproxy: None,
            front: format!("http://127.0.0.1:{front_port}"),
        };
        for i in 0..n {
            cluster.start_peer(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i).await;
        }
        cluster.start_haproxy(front_port);
        let front = cluster.front.clone();
        wait_for(&format!("{front}/healthz"), Duration::from_secs(20)).await;
        cluster
    }

    /// Node `i`'s HTTP base URL, reachable from the host.
    pub fn base(&self, i: usize) -> String {
        format!("http://{}:{HTTP}", self.net.addr(i))
    }

    pub fn nodes(&self) -> usize {
        self.net.nodes
    }

    fn start_peer(&mut self, i: usize) {
        let net = &self.net;
        let data = self.dir.join(format!("node{i}"));
        let log = std::fs::File::create(self.dir.join(format!("node{i}.log"))).expect("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.ns(i)])
            .arg(&self.peer_bin)
            .args(["--http", &format!("{}:{HTTP}", net.addr(i)), "--data"])
            .arg(&data)
            .args(["--listen", &format!("/ip4/{}/tcp/{P2P}", net.addr(i))])
            .args(["--cluster-key", &"5e".repeat(32)])
            .args(["--replication", &self.replication]);
        for j in 0..net.nodes {
            if j != i {
                cmd.args(["--peer", &format!("/ip4/{}/tcp/{P2P}", net.addr(j))]);
            }
        }
        if let Some(offset) = &self.skew[i] {
            // libfaketime preloaded into the peer itself (so the pid is the
            // peer's): wall clock shifted, monotonic time left alone.
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_DONT_RESET", "1");
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn peer");
        self.peers[i] = Some(child);
    }

    async fn wait_healthy(&self, i: usize) {
        wait_for(
            &format!("{}/healthz", self.base(i)),
            Duration::from_secs(20),
        )
        .await;
    }

    /// Restarts node `i` with its wall clock shifted by `offset` (libfaketime
    /// syntax, e.g. `+5s`, `-3s`, `+31m`), or back on the real clock.
    pub async fn skew(&mut self, i: usize, offset: Option<&str>) {
        self.kill(i);
        self.skew[i] = offset.map(str::to_owned);
        self.restart(i).await;
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.peers[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its data directory.
    pub async fn restart(&mut self, i: usize) {
        if self.peers[i].is_none() {
            self.start_peer(i);
            self.wait_healthy(i).await;
        }
    }

    fn start_haproxy(&mut self, port: u16) {
        let servers: String = (0..self.nodes())
            .map(|i| {
                format!(
                    "    server n{i} {}:{HTTP} check inter 300ms fall 2 rise 1\n",
                    self.net.addr(i)
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 2000\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    \
             timeout server 4s\n    retries 2\n    option redispatch\n\
             frontend front\n    bind 127.0.0.1:{port}\n    default_backend peers\n\
             backend peers\n    balance roundrobin\n    option httpchk GET /healthz\n    \
             http-response set-header X-Served-By %s\n{servers}"
        );
        let path = self.dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("haproxy config");
        let log = std::fs::File::create(self.dir.join("haproxy.log")).expect("log");
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("haproxy (Debian package haproxy; scripts/deps.sh --test installs it)");
        self.haproxy = Some(child);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.peers.len() {
            self.kill(i);
        }
        if let Some(mut h) = self.haproxy.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// Waits until `url` answers 200, at most `limit`.
async fn wait_for(url: &str, limit: Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(start.elapsed() < limit, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
