//! Shared helpers for the integration tests: temp nodes, requests through
//! the real tower stack, cookie plumbing, and the demo peer as a process.
#![allow(dead_code, unreachable_pub, clippy::zombie_processes)] // PeerProcess waits in kill() and Drop

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sessionmesh::{Config, Node};
use tower::ServiceExt;

/// A node on a fresh RocksDB in `dir`; dead sessions become tombstones at
/// the next sweep.
pub async fn node(dir: &Path) -> Node {
    let config = Config::new(dir).with_tombstone_grace(std::time::Duration::ZERO);
    Node::open(config).await.expect("open node")
}

/// One answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The `Set-Cookie` header for cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// `name=value` of the session cookie set by this answer.
    pub fn cookie(&self) -> Option<String> {
        self.set_cookie("id")
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
    }
}

/// Sends one request through `app` (the whole tower stack, no socket).
pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    body: &str,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let req = req.body(Body::from(body.to_owned())).expect("request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// The demo peer binary that `cargo test` builds next to the test binaries.
pub fn peer_binary() -> PathBuf {
    example_binary("peer")
}

/// An example binary that `cargo test` built next to the test binaries.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} missing: run the tests with `cargo test`, which builds examples",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The peer example running as a child process.
pub struct PeerProcess {
    pub child: Child,
    pub base: String,
}

impl PeerProcess {
    pub async fn start(data: &Path) -> Self {
        Self::start_with(data, &[]).await
    }

    pub async fn start_with(data: &Path, extra: &[String]) -> Self {
        Self::start_example("peer", data, extra).await
    }

    /// Starts the example `name` (any demo peer: same flags, same routes).
    pub async fn start_example(name: &str, data: &Path, extra: &[String]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(example_binary(name));
        cmd.args(["--http", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args(extra);
        Self::launch(cmd, port).await
    }

    /// Runs `cmd`, a demo peer set up to serve HTTP on 127.0.0.1:`port`,
    /// and waits until it answers. It logs warnings to this test's stderr,
    /// unless `cmd` sets `RUST_LOG` itself (then its log goes to `log`).
    pub async fn launch(cmd: Command, port: u16) -> Self {
        Self::launch_logged(cmd, port, Stdio::inherit()).await
    }

    /// [`launch`](Self::launch), its stderr going to `log`.
    pub async fn launch_logged(mut cmd: Command, port: u16, log: Stdio) -> Self {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "warn");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn peer");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                return Self { child, base };
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("peer did not come up on {base}");
    }

    /// SIGTERM, then waits (at most `limit`) for the process to exit.
    pub fn terminate(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.expect("kill").success(), "SIGTERM to {pid}");
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(start.elapsed() < limit, "no exit {limit:?} after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster key for tests.
pub const KEY: [u8; 32] = [42; 32];

/// A node with a network listening on a free loopback port.
pub async fn net_node(
    dir: &Path,
    key: [u8; 32],
    replication: sessionmesh::net::Replication,
) -> Node {
    let net = sessionmesh::net::Config::new(key)
        .with_listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .with_replication(replication)
        .with_anti_entropy_interval(std::time::Duration::from_millis(200))
        .with_fetch_timeout(std::time::Duration::from_secs(2));
    let config = Config::new(dir).with_network(net);
    Node::open(config).await.expect("open node")
}

/// Connects every node to every other and waits until all see each other.
pub async fn mesh(nodes: &[&Node]) {
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            let addr = b
                .listen_addrs()
                .await
                .into_iter()
                .next()
                .expect("listening");
            a.add_peer(addr).await.expect("add peer");
        }
    }
    for a in nodes {
        for b in nodes {
            let peer = b.peer_id().expect("network");
            if a.peer_id() != Some(peer) {
                eventually("full mesh", || async { a.peers().await.contains(&peer) }).await;
            }
        }
    }
}

/// Polls `check` until it holds, for at most 15 s.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(15) {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `name=value` of the `id` session cookie a response sets (not a removal).
pub fn cookie_of(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("id=") && !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// `GET /session` of the demo peer at `base`, with `cookie` if given (a
/// client with a cookie store sends its own), as JSON.
pub async fn session_json(
    http: &reqwest::Client,
    base: &str,
    cookie: Option<&str>,
) -> serde_json::Value {
    let mut req = http.get(format!("{base}/session"));
    if let Some(c) = cookie {
        req = req.header(reqwest::header::COOKIE, c);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Waits until the demo peer at `base` reports `n` connected peers.
pub async fn wait_for_peers(base: &str, n: usize) {
    let http = reqwest::Client::new();
    eventually("peers connected", || async {
        let c: serde_json::Value = http
            .get(format!("{base}/cluster"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        c["peers"].as_array().is_some_and(|a| a.len() == n)
    })
    .await;
}

/// Keys a set of writers had answered 204.
pub type Acked = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// `n` writers that PUT fresh keys (`w<writer>-<i>`) into the session of
/// `cookie` on `base` until a request fails (at most 10,000 each),
/// recording every key that was answered 204.
pub fn spawn_writers(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    n: usize,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked: Acked = Acked::default();
    let writers = (0..n)
        .map(|w| {
            let (http, base, cookie, acked) = (
                http.clone(),
                base.to_owned(),
                cookie.to_owned(),
                std::sync::Arc::clone(&acked),
            );
            tokio::spawn(async move {
                for i in 0..10_000 {
                    let key = format!("w{w}-{i}");
                    let res = http
                        .put(format!("{base}/session/{key}"))
                        .header(reqwest::header::COOKIE, &cookie)
                        .body(i.to_string())
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                            acked.lock().expect("lock").insert(key);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    (acked, writers)
}

/// Starts a session on `base` with one write, then `n` writers into it
/// ([`spawn_writers`]); returns the session cookie too.
pub async fn start_writing(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> (String, Acked, Vec<tokio::task::JoinHandle<()>>) {
    let first = http
        .put(format!("{base}/session/seed"))
        .body("0")
        .send()
        .await
        .expect("first write");
    let cookie = cookie_of(&first).expect("a session cookie");
    let (acked, writers) = spawn_writers(http, base, &cookie, n);
    (cookie, acked, writers)
}

/// `n` demo peer processes on loopback, each listening on a free port and
/// dialing all the others, with the cluster key and `extra` flags; returns
/// once each sees the others.
pub async fn peer_mesh(dirs: &[&Path], extra: &[&str]) -> Vec<PeerProcess> {
    let key = "2a".repeat(32);
    let p2p: Vec<u16> = dirs.iter().map(|_| free_port()).collect();
    let mut peers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut args = vec![
            "--listen".to_owned(),
            format!("/ip4/127.0.0.1/tcp/{}", p2p[i]),
            "--cluster-key".to_owned(),
            key.clone(),
        ];
        for (j, port) in p2p.iter().enumerate() {
            if j != i {
                args.push("--peer".to_owned());
                args.push(format!("/ip4/127.0.0.1/tcp/{port}"));
            }
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        peers.push(PeerProcess::start_with(dir, &args).await);
    }
    for p in &peers {
        wait_for_peers(&p.base, dirs.len() - 1).await;
    }
    peers
}
