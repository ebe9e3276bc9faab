//! Session consistency across nodes, in one process over real TCP on
//! 127.0.0.1, through the demo app: the session token makes a node that
//! missed a write catch up before it serves, a node that cannot reach the
//! session answer 503 instead of starting a fresh one, and tokens that
//! prove nothing cost nothing.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../examples/demo/mod.rs"]
mod demo;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{header, Method, StatusCode};
use axum::Router;
use common::{eventually, mesh, send, Answer, KEY};
use serde_json::json;
use sessionmesh::net::{self, Replication, StaleReads};
use sessionmesh::{Config, ManualClock, Node, SessionId};

/// A browser: the cookies the demo app sets, sent back on every request to
/// any node (they share the host).
#[derive(Debug, Default, Clone)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep(&mut self, a: &Answer) {
        for v in a.headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn call(&mut self, app: &Router, method: Method, uri: &str, body: &str) -> Answer {
        let a = send(app, method, uri, self.header().as_deref(), body).await;
        self.keep(&a);
        a
    }

    async fn put(&mut self, app: &Router, key: &str, json: &str) -> Answer {
        self.call(app, Method::PUT, &format!("/session/{key}"), json)
            .await
    }

    async fn get(&mut self, app: &Router) -> Answer {
        self.call(app, Method::GET, "/session", "").await
    }

    /// The same browser without its session token.
    fn forgetting_the_token(&self) -> Self {
        let mut b = self.clone();
        b.cookies.remove("id_seen");
        b
    }
}

struct Nodes {
    nodes: Vec<Node>,
    apps: Vec<Router>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn nodes(n: usize, tune: impl Fn(net::Config) -> net::Config) -> Nodes {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let net = net::Config::new(KEY)
            .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .with_replication(Replication::Async)
            // Catch-up must come from the token, not from anti-entropy.
            .with_anti_entropy_interval(Duration::from_secs(3_600));
        let config = Config::new(dir.path()).with_network(tune(net));
        nodes.push(Node::open(config).await.unwrap());
        dirs.push(dir);
    }
    let apps = nodes.iter().map(|n| demo::app(n.clone())).collect();
    Nodes {
        nodes,
        apps,
        _dirs: dirs,
    }
}

async fn set_blocked(a: &Node, b: &Node, blocked: bool) {
    a.set_blocked(b.peer_id().unwrap(), blocked).await.unwrap();
    b.set_blocked(a.peer_id().unwrap(), blocked).await.unwrap();
    let peer = b.peer_id().unwrap();
    eventually("the link changed", || async {
        a.peers().await.contains(&peer) != blocked
    })
    .await;
}

/// A, B and C where A and B cannot talk: what A writes reaches B only
/// through C, and only when B asks.
async fn line() -> Nodes {
    let n = nodes(3, |c| c).await;
    let (a, b, c) = (&n.nodes[0], &n.nodes[1], &n.nodes[2]);
    mesh(&[a, c]).await;
    mesh(&[b, c]).await;
    set_blocked(a, b, true).await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_a_write_catches_up_before_it_serves() {
    let n = line().await;
    let (a, b) = (&n.apps[0], &n.apps[1]);
    let mut user = Browser::default();
    assert_eq!(
        user.put(a, "cart", "[1]").await.status,
        StatusCode::NO_CONTENT
    );
    assert!(user.cookies.contains_key("id_seen"), "{:?}", user.cookies);
    // B never heard of the session: it asks its peers before it answers.
    assert_eq!(user.get(b).await.json(), json!({"cart": [1]}));
    // B holds an older state now: the token makes it catch up.
    assert_eq!(
        user.put(a, "cart", "[1,2]").await.status,
        StatusCode::NO_CONTENT
    );
    let started = Instant::now();
    let read = user.get(b).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json(), json!({"cart": [1, 2]}));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Without the token B would have served what it had.
    user.put(a, "cart", "[1,2,3]").await;
    let stale = user.forgetting_the_token().get(b).await;
    assert_eq!(
        stale.json(),
        json!({"cart": [1, 2]}),
        "the token is what helps"
    );
    assert_eq!(user.get(b).await.json(), json!({"cart": [1, 2, 3]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_on_a_node_behind_starts_from_what_the_user_saw() {
    let n = line().await;
    let (a, b) = (&n.apps[0], &n.apps[1]);
    let mut user = Browser::default();
    user.put(a, "user", "\"ada\"").await;
    user.get(b).await;
    user.put(a, "cart", "[7]").await;
    let old = user.cookies["id"].clone();
    let cycled = user.call(b, Method::POST, "/session/cycle", "").await;
    assert_eq!(cycled.status, StatusCode::NO_CONTENT);
    assert_ne!(user.cookies["id"], old);
    assert_eq!(
        user.get(a).await.json(),
        json!({"user": "ada", "cart": [7]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_node_s_sessions_are_answered_503_elsewhere_never_replaced() {
    let n = nodes(3, |c| {
        c.with_anti_entropy_interval(Duration::from_millis(200))
    })
    .await;
    let (a, b, c) = (&n.nodes[0], &n.nodes[1], &n.nodes[2]);
    mesh(&[a, b, c]).await;
    set_blocked(a, c, true).await;
    set_blocked(b, c, true).await;
    // Users log in on the cut-off node; some rotate their id there.
    let mut users = Vec::new();
    for i in 0..6 {
        let mut user = Browser::default();
        user.put(&n.apps[2], "user", &format!("{i}")).await;
        if i % 2 == 0 {
            user.call(&n.apps[2], Method::POST, "/session/cycle", "")
                .await;
        }
        user.put(&n.apps[2], "step", "1").await;
        users.push(user);
    }
    for user in &users {
        for app in &n.apps[..2] {
            let before = user.cookies.clone();
            let mut probe = user.clone();
            for answer in [
                probe.get(app).await,
                probe.put(app, "more", "1").await,
                probe.call(app, Method::POST, "/session/x/incr", "").await,
            ] {
                assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(answer.headers[header::RETRY_AFTER], "1");
                assert!(answer.set_cookie("id").is_none(), "never a fresh session");
            }
            assert_eq!(probe.cookies, before);
        }
    }
    let refused = n.nodes[0].stats().refused_unreachable + n.nodes[1].stats().refused_unreachable;
    assert_eq!(refused, 6 * 2 * 3, "each refusal counted");
    // After the heal every session is served everywhere, with its data.
    set_blocked(a, c, false).await;
    set_blocked(b, c, false).await;
    for (i, user) in users.iter().enumerate() {
        for app in &n.apps {
            let mut user = user.clone();
            eventually("served after the heal", || {
                let mut user = user.clone();
                async move {
                    let a = user.get(app).await;
                    a.status == StatusCode::OK && a.json() == json!({"user": i, "step": 1})
                }
            })
            .await;
            assert_eq!(user.get(app).await.status, StatusCode::OK);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_prove_nothing_are_ignored_without_waiting() {
    // A third node of the cluster, its clock a day ahead and never connected
    // (connected, the nodes would agree on the time), mints a token from B's
    // future.
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let day = 24 * 3_600_000;
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let mut nodes = Vec::new();
    for (dir, clock) in dirs.iter().zip([now, now, now + day]) {
        let net = net::Config::new(KEY)
            .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .with_catch_up(Duration::from_secs(2));
        let config = Config::new(dir.path())
            .with_network(net)
            .with_clock(ManualClock::new(clock))
            .with_max_idle(Duration::from_secs(10 * day / 1000))
            .with_absolute_timeout(Duration::ZERO);
        nodes.push(Node::open(config).await.unwrap());
    }
    mesh(&[&nodes[0], &nodes[1]]).await;
    let (a, b) = (demo::app(nodes[0].clone()), demo::app(nodes[1].clone()));
    let mut user = Browser::default();
    user.put(&a, "k", "1").await;
    let mut other = Browser::default();
    other.put(&a, "k", "2").await;
    eventually("replicated", || async { nodes[1].session_count() == 2 }).await;
    let id: SessionId = user.cookies["id"].parse().unwrap();
    let version = nodes[1].load(&id).await.unwrap().unwrap().version;
    let from_the_future = nodes[2].token(&id, &version).unwrap();
    let with = |token: &str| {
        let mut b = user.clone();
        b.cookies.insert("id_seen".into(), token.to_owned());
        b
    };
    for (what, token) in [
        ("from the future", from_the_future),
        ("forged", "AQAAAAAAAAAAAQ".to_owned()),
        ("of another session", other.cookies["id_seen"].clone()),
    ] {
        let mut browser = with(&token);
        let started = Instant::now();
        let read = browser.get(&b).await;
        assert_eq!(read.status, StatusCode::OK, "{what}");
        assert_eq!(read.json(), json!({"k": 1}), "{what}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{what}: no wait"
        );
        // Not proof of anything: B sets a token of its own.
        assert_ne!(browser.cookies["id_seen"], token, "{what}");
    }
    assert_eq!(nodes[1].stats().tokens_ignored, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_naming_a_node_that_is_down_is_answered_within_the_bound() {
    for policy in [StaleReads::Refuse, StaleReads::Serve] {
        let bound = Duration::from_millis(600);
        let n = nodes(2, |c| c.with_catch_up(bound).with_stale_reads(policy)).await;
        let (a, b) = (&n.nodes[0], &n.nodes[1]);
        mesh(&[a, b]).await;
        let mut user = Browser::default();
        user.put(&n.apps[0], "k", "1").await;
        eventually("replicated", || async { b.session_count() == 1 }).await;
        let mut bystander = Browser::default();
        bystander.put(&n.apps[1], "mine", "1").await;
        // A write B never gets: A is cut off, then gone.
        set_blocked(a, b, true).await;
        user.put(&n.apps[0], "k", "2").await;
        a.shutdown().await.unwrap();

        let app_b = n.apps[1].clone();
        let mut waiting = user.clone();
        let slow = tokio::spawn(async move {
            let started = Instant::now();
            (waiting.get(&app_b).await, started.elapsed())
        });
        // B serves others meanwhile.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        assert_eq!(bystander.get(&n.apps[1]).await.json(), json!({"mine": 1}));
        assert!(started.elapsed() < bound / 2, "{:?}", started.elapsed());
        let (answer, took) = slow.await.unwrap();
        assert!(
            took >= bound && took < bound + Duration::from_millis(400),
            "{took:?}"
        );
        match policy {
            StaleReads::Refuse => {
                assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(answer.headers[header::RETRY_AFTER], "1");
            }
            StaleReads::Serve => {
                assert_eq!(answer.status, StatusCode::OK);
                assert_eq!(answer.json(), json!({"k": 1}));
                assert_eq!(answer.headers[sessionmesh::http::STALE_HEADER], "true");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_writes_gets_no_cookie_at_all() {
    let n = nodes(2, |c| c).await;
    mesh(&[&n.nodes[0], &n.nodes[1]]).await;
    for app in &n.apps {
        let a = send(app, Method::GET, "/session", None, "").await;
        assert_eq!(a.json(), json!({}));
        assert_eq!(a.headers.get_all(header::SET_COOKIE).iter().count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_never_lets_a_later_node_serve_the_older_state_silently() {
    // A is cut off from B and D; B and D are both behind what A shows.
    let bound = Duration::from_millis(300);
    let n = nodes(3, |c| {
        c.with_catch_up(bound).with_stale_reads(StaleReads::Serve)
    })
    .await;
    let (a, b, d) = (&n.nodes[0], &n.nodes[1], &n.nodes[2]);
    mesh(&[a, b, d]).await;
    let mut user = Browser::default();
    user.put(&n.apps[0], "cart", "[1]").await;
    eventually("replicated", || async {
        b.session_count() == 1 && d.session_count() == 1
    })
    .await;
    set_blocked(a, b, true).await;
    set_blocked(a, d, true).await;
    user.put(&n.apps[0], "cart", "[1,2]").await;
    for app in [&n.apps[1], &n.apps[2], &n.apps[1]] {
        let read = user.get(app).await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(read.json(), json!({"cart": [1]}));
        assert_eq!(
            read.headers
                .get(sessionmesh::http::STALE_HEADER)
                .map(|v| v.to_str().unwrap()),
            Some("true"),
            "an older state than the user saw is always marked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_waits_once_however_often_the_handler_asks() {
    use axum::routing::get;
    use sessionmesh::http::{Session, SessionLayer};
    let bound = Duration::from_millis(500);
    let n = nodes(2, |c| c.with_catch_up(bound)).await;
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    mesh(&[a, b]).await;
    set_blocked(a, b, true).await;
    let mut user = Browser::default();
    user.put(&n.apps[0], "k", "1").await;
    // A handler that ignores the first failure and asks again.
    let twice = Router::new()
        .route(
            "/twice",
            get(|s: Session| async move {
                let _ = s.get::<i64>("k").await;
                let _ = s.get::<i64>("k").await;
                "done"
            }),
        )
        .layer(SessionLayer::new(b.clone()).with_secure(false));
    let started = Instant::now();
    let answer = user.call(&twice, Method::GET, "/twice", "").await;
    let took = started.elapsed();
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        took < bound + bound / 2,
        "waited {took:?} for a bound of {bound:?}"
    );
}
