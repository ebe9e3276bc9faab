//! One HTTP scenario suite, run against every integration path: the native
//! `SessionLayer` (`peer`), the tower-sessions store
//! (`tower_sessions_peer`) and the actix-session store (`actix_peer`). Each
//! is the same demo contract served by a real process on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use common::{cookie_of, eventually, free_port, PeerProcess};
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

fn removes_cookie(res: &reqwest::Response) -> bool {
    res.headers().get_all(header::SET_COOKIE).iter().any(|v| {
        let v = v.to_str().unwrap_or_default();
        v.starts_with("id=") && v.contains("Max-Age=0")
    })
}

struct Peer {
    base: String,
    http: Client,
}

impl Peer {
    async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned());
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        r.send().await.unwrap()
    }

    async fn all(&self, cookie: Option<&str>) -> Value {
        let r = self.req(reqwest::Method::GET, "/session", cookie, "").await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}

async fn single_node(bin: &str) {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let proc = PeerProcess::start_example(bin, dir.path(), &[]).await;
    let p = Peer {
        base: proc.base.clone(),
        http: Client::new(),
    };

    let h = p.req(Method::GET, "/healthz", None, "").await;
    assert_eq!(
        (h.status(), h.text().await.unwrap()),
        (StatusCode::OK, "ok".to_owned())
    );
    let empty = p.req(Method::GET, "/session", None, "").await;
    assert!(
        cookie_of(&empty).is_none(),
        "{bin}: GET /session never creates a session"
    );
    assert_eq!(empty.json::<Value>().await.unwrap(), json!({}));

    let put = p.req(Method::PUT, "/session/user", None, "\"ada\"").await;
    assert_eq!(put.status(), StatusCode::NO_CONTENT, "{bin}");
    let c = cookie_of(&put).expect("a write sets the cookie");
    let c = Some(c.as_str());
    assert_eq!(p.all(c).await, json!({"user": "ada"}), "{bin}");
    assert_eq!(
        p.req(Method::PUT, "/session/x", c, "{not json")
            .await
            .status(),
        StatusCode::BAD_REQUEST,
        "{bin}"
    );
    let big = format!("\"{}\"", "z".repeat(1_100_000));
    assert_eq!(
        p.req(Method::PUT, "/session/x", c, &big).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "{bin}"
    );
    assert_eq!(
        p.all(c).await,
        json!({"user": "ada"}),
        "{bin}: nothing of a refused write lands"
    );

    let one = p.req(Method::POST, "/session/n/incr", c, "").await;
    assert_eq!(one.json::<Value>().await.unwrap(), json!(1), "{bin}");
    let more = p
        .req(Method::POST, "/session/n/incr", c, r#"{"by": 41}"#)
        .await;
    assert_eq!(more.json::<Value>().await.unwrap(), json!(42), "{bin}");
    assert_eq!(
        p.req(Method::DELETE, "/session/user", c, "").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(p.all(c).await, json!({"n": 42}), "{bin}");

    // A forged id is never adopted.
    let forged = format!("id={}", sessionmesh::SessionId::random());
    assert_eq!(p.all(Some(&forged)).await, json!({}), "{bin}");
    let w = p.req(Method::PUT, "/session/k", Some(&forged), "1").await;
    assert_ne!(cookie_of(&w).unwrap(), forged, "{bin}");

    // Rotation keeps the attributes and kills the old id.
    let cycled = p.req(Method::POST, "/session/cycle", c, "").await;
    assert_eq!(cycled.status(), StatusCode::NO_CONTENT, "{bin}");
    let new = cookie_of(&cycled).expect("new cookie");
    assert_ne!(Some(new.as_str()), c, "{bin}");
    assert_eq!(p.all(Some(&new)).await, json!({"n": 42}), "{bin}");
    assert_eq!(p.all(c).await, json!({}), "{bin}: the old id is dead");
    let cluster: Value = p
        .req(Method::GET, "/cluster", None, "")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        cluster["peer_id"].is_string() && cluster["peers"].is_array(),
        "{bin}: {cluster}"
    );
    // The first session, the forged id's fresh one, and the rotated-from
    // session, which stays stored (dead) until the sweeper collects it.
    assert_eq!(cluster["sessions"], 3, "{bin}");

    // Invalidation ends it and removes the cookie.
    let inv = p
        .req(Method::POST, "/session/invalidate", Some(&new), "")
        .await;
    assert_eq!(inv.status(), StatusCode::NO_CONTENT, "{bin}");
    assert!(removes_cookie(&inv), "{bin}: removal cookie");
    assert_eq!(p.all(Some(&new)).await, json!({}), "{bin}");
}

async fn two_nodes(bin: &str) {
    use reqwest::Method;
    let key = "5a".repeat(32);
    let ports = [free_port(), free_port()];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut procs = Vec::new();
    for i in 0..2 {
        let args = vec![
            "--listen".to_owned(),
            format!("/ip4/127.0.0.1/tcp/{}", ports[i]),
            "--peer".to_owned(),
            format!("/ip4/127.0.0.1/tcp/{}", ports[1 - i]),
            "--cluster-key".to_owned(),
            key.clone(),
            "--replication".to_owned(),
            "sync".to_owned(),
        ];
        procs.push(PeerProcess::start_example(bin, dirs[i].path(), &args).await);
    }
    let peers: Vec<Peer> = procs
        .iter()
        .map(|p| Peer {
            base: p.base.clone(),
            http: Client::new(),
        })
        .collect();
    for p in &peers {
        eventually("connected", || async {
            let c: Value = p
                .req(Method::GET, "/cluster", None, "")
                .await
                .json()
                .await
                .unwrap();
            c["peers"].as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    }
    // Write on A, read on B.
    let put = peers[0]
        .req(Method::PUT, "/session/user", None, "\"ada\"")
        .await;
    let c = cookie_of(&put).unwrap();
    assert_eq!(
        peers[1].all(Some(&c)).await,
        json!({"user": "ada"}),
        "{bin}: replicated"
    );
    // Concurrent requests of one session on two nodes, different keys.
    let mut tasks = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        for j in 0..10 {
            let (base, c) = (p.base.clone(), c.clone());
            tasks.push(tokio::spawn(async move {
                let r = Client::new()
                    .put(format!("{base}/session/n{i}-{j}"))
                    .header(header::COOKIE, c)
                    .body(j.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::NO_CONTENT);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for p in &peers {
        eventually("both nodes' writes on both nodes", || async {
            let all = p.all(Some(&c)).await;
            (0..2).all(|i| (0..10).all(|j| all.get(format!("n{i}-{j}")).is_some()))
                && all["user"] == "ada"
        })
        .await;
    }
    // 30 concurrent increments of one counter through both nodes add up
    // (the adapters' examples declare `n` a counter).
    let mut tasks = Vec::new();
    for k in 0..30 {
        let (base, c) = (peers[k % 2].base.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let r = Client::new()
                .post(format!("{base}/session/n/incr"))
                .header(header::COOKIE, c)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for p in &peers {
        eventually("30 concurrent increments on both nodes", || async {
            p.all(Some(&c)).await["n"] == 30
        })
        .await;
    }
}

/// Three peers of `bin` in a full mesh, replicating in `mode`.
async fn three(bin: &str, mode: &str) -> (Vec<PeerProcess>, Vec<tempfile::TempDir>) {
    let key = "6b".repeat(32);
    let ports = [free_port(), free_port(), free_port()];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut procs = Vec::new();
    for i in 0..3 {
        let mut args = vec![
            "--listen".to_owned(),
            format!("/ip4/127.0.0.1/tcp/{}", ports[i]),
            "--cluster-key".to_owned(),
            key.clone(),
            "--replication".to_owned(),
            mode.to_owned(),
        ];
        for (j, port) in ports.iter().enumerate() {
            if j != i {
                args.extend(["--peer".to_owned(), format!("/ip4/127.0.0.1/tcp/{port}")]);
            }
        }
        procs.push(PeerProcess::start_example(bin, dirs[i].path(), &args).await);
    }
    for p in &procs {
        common::wait_for_peers(&p.base, 2).await;
    }
    (procs, dirs)
}

/// The three-node scenarios start nine processes' worth of work; one at a
/// time keeps them from starving each other on a small machine.
static THREE_AT_ONCE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends what `request` builds, again after a short pause while the node
/// answers `503` (it cannot serve the state the user has seen yet: a
/// browser or balancer retries). Returns the answer and the retries.
async fn retrying(request: impl Fn() -> reqwest::RequestBuilder) -> (reqwest::Response, usize) {
    for retries in 0..50 {
        let r = request().send().await.unwrap();
        if r.status() != StatusCode::SERVICE_UNAVAILABLE {
            return (r, retries);
        }
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("still 503 after 50 tries");
}

/// A user behind a round-robin balancer: writes on node i, reads at once on
/// node i+1, while four other users keep the cluster busy. Every read shows
/// the user's own last write (none missed, none older than an earlier read),
/// and read-modify-write increments through the nodes add up exactly.
async fn read_your_writes(bin: &str, mode: &str) {
    const ROUNDS: usize = 400;
    let _one = THREE_AT_ONCE.lock().await;
    let (procs, _dirs) = three(bin, mode).await;
    let bases: Vec<String> = procs.iter().map(|p| p.base.clone()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4 {
        let (bases, stop) = (bases.clone(), std::sync::Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            let http = Client::builder().cookie_store(true).build().unwrap();
            let started = std::time::Instant::now();
            for n in 0..5_000usize {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || started.elapsed() > std::time::Duration::from_secs(120)
                {
                    break;
                }
                let base = &bases[(n + w) % 3];
                let _ = http
                    .put(format!("{base}/session/k{}", n % 20))
                    .body(n.to_string())
                    .send()
                    .await;
            }
        }));
    }
    let user = Client::builder().cookie_store(true).build().unwrap();
    let (mut misses, mut back_in_time, mut last) = (Vec::new(), Vec::new(), -1i64);
    let mut unavailable = 0;
    for i in 0..ROUNDS {
        let (put, retries) = retrying(|| {
            user.put(format!("{}/session/v", bases[i % 3]))
                .body(i.to_string())
        })
        .await;
        unavailable += retries;
        assert_eq!(
            put.status(),
            StatusCode::NO_CONTENT,
            "{bin} {mode}: write {i}"
        );
        let (got, retries) = retrying(|| user.get(format!("{}/session", bases[(i + 1) % 3]))).await;
        unavailable += retries;
        assert_eq!(got.status(), StatusCode::OK, "{bin} {mode}: read {i}");
        let v = got.json::<Value>().await.unwrap()["v"]
            .as_i64()
            .unwrap_or(-1);
        if v != i64::try_from(i).unwrap() {
            misses.push((i, v));
        }
        if v < last {
            back_in_time.push((i, last, v));
        }
        last = last.max(v);
    }
    for n in 0..60 {
        let (r, retries) = retrying(|| user.post(format!("{}/session/n/incr", bases[n % 3]))).await;
        unavailable += retries;
        assert_eq!(r.status(), StatusCode::OK, "{bin} {mode}: increment {n}");
    }
    eprintln!(
        "{bin} {mode}: {unavailable} answers of 503, retried, in {} requests",
        2 * ROUNDS + 60
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(
        misses.is_empty(),
        "{bin} {mode}: {} of {ROUNDS} reads missed the user's write: {misses:?}",
        misses.len()
    );
    assert!(
        back_in_time.is_empty(),
        "{bin} {mode}: reads back in time: {back_in_time:?}"
    );
    for base in &bases {
        let all = common::session_json(&user, base, None).await;
        assert_eq!(
            all["n"], 60,
            "{bin} {mode}: increments through the nodes add up"
        );
    }
}

macro_rules! suite {
    ($name:ident, $bin:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_node() {
                super::single_node($bin).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_nodes() {
                super::two_nodes($bin).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn read_your_writes_sync() {
                super::read_your_writes($bin, "sync").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn read_your_writes_async() {
                super::read_your_writes($bin, "async").await;
            }
        }
    };
}

suite!(native, "peer");
#[cfg(feature = "tower-sessions")]
suite!(tower_sessions, "tower_sessions_peer");
#[cfg(feature = "actix")]
suite!(actix, "actix_peer");
