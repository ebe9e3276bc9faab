//! HTTP flows through the real tower stack: `SessionLayer` over tower-cookies
//! over axum, against a real RocksDB in a temp dir.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../examples/demo/mod.rs"]
mod demo;

use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::Router;
use common::{send, Answer};
use sessionmesh::http::{Expiry, Session, SessionLayer};
use sessionmesh::SessionId;
use tower_cookies::cookie::{Key, SameSite};

async fn demo_app() -> (Router, sessionmesh::Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    (demo::app(node.clone()), node, dir)
}

async fn put(app: &Router, cookie: Option<&str>, key: &str, body: &str) -> Answer {
    send(app, Method::PUT, &format!("/session/{key}"), cookie, body).await
}

async fn get_all(app: &Router, cookie: Option<&str>) -> serde_json::Value {
    let a = send(app, Method::GET, "/session", cookie, "").await;
    assert_eq!(a.status, StatusCode::OK);
    a.json()
}

#[tokio::test]
async fn lazy_nothing_is_created_or_set_until_a_write() {
    let (app, node, _dir) = demo_app().await;
    let a = send(&app, Method::GET, "/session", None, "").await;
    assert_eq!(a.json(), serde_json::json!({}));
    assert!(a.set_cookie("id").is_none());
    assert_eq!(node.session_count(), 0);
    let w = put(&app, None, "user", "\"ada\"").await;
    assert_eq!(w.status, StatusCode::NO_CONTENT);
    let cookie = w.cookie().expect("a write sets the cookie");
    assert_eq!(node.session_count(), 1);
    // A read of an existing session sets no cookie again.
    let r = send(&app, Method::GET, "/session", Some(&cookie), "").await;
    assert_eq!(r.json(), serde_json::json!({"user": "ada"}));
    assert!(r.set_cookie("id").is_none());
}

#[tokio::test]
async fn default_cookie_flags_match_tower_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    let app = Router::new()
        .route(
            "/",
            get(|s: Session| async move { s.insert("k", 1).await.map_err(|e| e.to_string()) }),
        )
        .layer(SessionLayer::new(node));
    let a = send(&app, Method::GET, "/", None, "").await;
    let c = a.set_cookie("id").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    assert!(!c.contains("Domain") && !c.contains("Max-Age"), "{c}");
}

#[tokio::test]
async fn custom_cookie_options_and_a_matching_removal_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    let layer = SessionLayer::new(node)
        .with_name("sid")
        .with_path("/app")
        .with_domain("example.test")
        .with_same_site(SameSite::Lax)
        .with_http_only(true)
        .with_secure(true)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(10)));
    let app = Router::new()
        .route(
            "/app/in",
            get(|s: Session| async move { s.insert("k", 1).await.map_err(|e| e.to_string()) }),
        )
        .route(
            "/app/out",
            get(|s: Session| async move { s.invalidate().await.map_err(|e| e.to_string()) }),
        )
        .layer(layer);
    let a = send(&app, Method::GET, "/app/in", None, "").await;
    let c = a.set_cookie("sid").unwrap();
    for attr in [
        "Path=/app",
        "Domain=example.test",
        "SameSite=Lax",
        "Max-Age=600",
        "Secure",
        "HttpOnly",
    ] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    let cookie = c.split(';').next().unwrap().to_owned();
    let out = send(&app, Method::GET, "/app/out", Some(&cookie), "").await;
    let removal = out.set_cookie("sid").unwrap();
    for attr in [
        "Path=/app",
        "Domain=example.test",
        "Secure",
        "HttpOnly",
        "Max-Age=0",
    ] {
        assert!(removal.contains(attr), "{removal} lacks {attr}");
    }
}

#[tokio::test]
async fn unknown_or_malformed_ids_are_never_adopted() {
    let (app, _node, _dir) = demo_app().await;
    let forged = format!("id={}", SessionId::random());
    assert_eq!(get_all(&app, Some(&forged)).await, serde_json::json!({}));
    let w = put(&app, Some(&forged), "k", "1").await;
    assert_eq!(w.status, StatusCode::NO_CONTENT);
    let fresh = w.cookie().unwrap();
    assert_ne!(fresh, forged, "the forged id must not be adopted");
    assert_eq!(get_all(&app, Some(&forged)).await, serde_json::json!({}));
    assert_eq!(
        get_all(&app, Some(&fresh)).await,
        serde_json::json!({"k": 1})
    );
    for junk in [
        "id=",
        "id=%%%",
        "id=short",
        "id=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert_eq!(
            get_all(&app, Some(junk)).await,
            serde_json::json!({}),
            "{junk}"
        );
    }
}

#[tokio::test]
async fn cycle_keeps_attributes_and_kills_the_old_id() {
    let (app, _node, _dir) = demo_app().await;
    let old = put(&app, None, "user", "\"ada\"").await.cookie().unwrap();
    let c = send(&app, Method::POST, "/session/cycle", Some(&old), "").await;
    assert_eq!(c.status, StatusCode::NO_CONTENT);
    let new = c.cookie().expect("new cookie");
    assert_ne!(new, old);
    assert_eq!(
        get_all(&app, Some(&new)).await,
        serde_json::json!({"user": "ada"})
    );
    assert_eq!(get_all(&app, Some(&old)).await, serde_json::json!({}));
    // A write with the old id starts a new session rather than reviving it.
    let w = put(&app, Some(&old), "x", "1").await;
    assert_ne!(w.cookie().unwrap(), old);
}

#[tokio::test]
async fn invalidate_kills_the_session_and_sends_a_removal_cookie() {
    let (app, node, _dir) = demo_app().await;
    let cookie = put(&app, None, "user", "\"ada\"").await.cookie().unwrap();
    let a = send(&app, Method::POST, "/session/invalidate", Some(&cookie), "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let removal = a.set_cookie("id").unwrap();
    assert!(
        removal.contains("Max-Age=0") && removal.contains("Path=/"),
        "{removal}"
    );
    assert_eq!(get_all(&app, Some(&cookie)).await, serde_json::json!({}));
    assert_eq!(node.sweep().await.unwrap().tombstoned, 1);
}

#[tokio::test]
async fn bad_json_is_400_oversized_is_413_and_the_node_keeps_serving() {
    let (app, _node, _dir) = demo_app().await;
    let cookie = put(&app, None, "a", "1").await.cookie().unwrap();
    let bad = put(&app, Some(&cookie), "b", "{not json").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let big = format!("\"{}\"", "x".repeat(1_100_000));
    let too_big = put(&app, Some(&cookie), "big", &big).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Many values that each fit but together do not.
    let chunk = format!("\"{}\"", "y".repeat(300_000));
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(
            put(&app, Some(&cookie), &format!("c{i}"), &chunk)
                .await
                .status,
        );
    }
    assert_eq!(statuses[..3], [StatusCode::NO_CONTENT; 3]);
    assert_eq!(statuses[3..], [StatusCode::PAYLOAD_TOO_LARGE; 2]);
    let all = get_all(&app, Some(&cookie)).await;
    assert_eq!(all.as_object().unwrap().len(), 4, "a, c0, c1, c2");
    assert_eq!(
        put(&app, Some(&cookie), "d", "2").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, Method::GET, "/healthz", None, "").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn incr_and_delete() {
    let (app, _node, _dir) = demo_app().await;
    let cookie = put(&app, None, "name", "\"x\"").await.cookie().unwrap();
    let a = send(&app, Method::POST, "/session/n/incr", Some(&cookie), "").await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, serde_json::json!(1)));
    let a = send(
        &app,
        Method::POST,
        "/session/n/incr",
        Some(&cookie),
        r#"{"by": 41}"#,
    )
    .await;
    assert_eq!(a.json(), serde_json::json!(42));
    let bad = send(
        &app,
        Method::POST,
        "/session/n/incr",
        Some(&cookie),
        r#"{"by": "x"}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let not_counter = send(&app, Method::POST, "/session/name/incr", Some(&cookie), "").await;
    assert_eq!(not_counter.status, StatusCode::BAD_REQUEST);
    let d = send(&app, Method::DELETE, "/session/name", Some(&cookie), "").await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_all(&app, Some(&cookie)).await,
        serde_json::json!({"n": 42})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_one_session_keep_every_write() {
    let (app, _node, _dir) = demo_app().await;
    let cookie = put(&app, None, "start", "0").await.cookie().unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (app, cookie) = (app.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            assert_eq!(
                put(&app, Some(&cookie), &key, &i.to_string()).await.status,
                StatusCode::NO_CONTENT
            );
            let a = send(&app, Method::POST, "/session/hits/incr", Some(&cookie), "").await;
            assert_eq!(a.status, StatusCode::OK);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = get_all(&app, Some(&cookie)).await;
    for i in 0..32 {
        assert_eq!(all[format!("k{i}")], i, "k{i} lost: {all}");
    }
    assert_eq!(all["hits"], 32);
}

#[tokio::test]
async fn signed_cookies_reject_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    let key = Key::generate();
    let layer = SessionLayer::new(node).with_signed(key);
    let app = Router::new()
        .route(
            "/in",
            get(|s: Session| async move { s.insert("k", 7).await.map_err(|e| e.to_string()) }),
        )
        .route(
            "/get",
            get(
                |s: Session| async move { format!("{:?}", s.get::<i64>("k").await.ok().flatten()) },
            ),
        )
        .layer(layer);
    let cookie = send(&app, Method::GET, "/in", None, "")
        .await
        .cookie()
        .unwrap();
    let ok = send(&app, Method::GET, "/get", Some(&cookie), "").await;
    assert_eq!(ok.body, "Some(7)");
    // Flip one character of the signature.
    let mut bytes = cookie.clone().into_bytes();
    let i = 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let no = send(&app, Method::GET, "/get", Some(&tampered), "").await;
    assert_eq!(no.body, "None");
    // An unsigned id is not accepted either.
    let id = cookie.rsplit_once('=').map(|(_, v)| v).unwrap_or_default();
    let bare = format!("id={}", &id[id.len() - 22..]);
    assert_eq!(
        send(&app, Method::GET, "/get", Some(&bare), "").await.body,
        "None"
    );
}

#[tokio::test]
async fn session_id_is_known_before_the_first_save() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    let app = Router::new()
        .route(
            "/",
            get(|s: Session| async move {
                assert!(s.id().is_none());
                s.insert("k", 1).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(s.id().map(|i| i.to_string()).unwrap_or_default())
            }),
        )
        .layer(SessionLayer::new(node));
    let a = send(&app, Method::GET, "/", None, "").await;
    assert_eq!(
        a.cookie().unwrap(),
        format!("id={}", String::from_utf8_lossy(&a.body))
    );
}

#[tokio::test]
async fn clear_and_set_expiry_through_the_session_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    let app = Router::new()
        .route(
            "/fill",
            get(|s: Session| async move {
                s.insert("a", 1).await?;
                s.insert("b", 2).await
            }),
        )
        .route("/clear", get(|s: Session| async move { s.clear().await }))
        .route(
            "/short",
            get(|s: Session| async move {
                s.set_expiry(Expiry::OnInactivity(time::Duration::seconds(90)))
                    .await
            }),
        )
        .route(
            "/all",
            get(|s: Session| async move {
                s.entries()
                    .await
                    .map(|e| serde_json::to_string(&e).unwrap_or_default())
            }),
        )
        .layer(SessionLayer::new(node.clone()));
    let cookie = send(&app, Method::GET, "/fill", None, "")
        .await
        .cookie()
        .unwrap();
    let short = send(&app, Method::GET, "/short", Some(&cookie), "").await;
    let c = short.set_cookie("id").unwrap();
    assert!(c.contains("Max-Age=90"), "{c}");
    // The sliding cookie is refreshed on later use.
    let again = send(&app, Method::GET, "/all", Some(&cookie), "").await;
    assert!(again
        .set_cookie("id")
        .is_some_and(|c| c.contains("Max-Age=90")));
    assert_eq!(again.body, r#"{"a":1,"b":2}"#);
    send(&app, Method::GET, "/clear", Some(&cookie), "").await;
    assert_eq!(
        send(&app, Method::GET, "/all", Some(&cookie), "")
            .await
            .body,
        "{}"
    );
    assert_eq!(node.session_count(), 1, "clear keeps the session");
}

/// A peer that holds nothing, counting the sync requests it gets.
#[derive(Debug, Default)]
struct EmptyPeer {
    peer: Option<sessionmesh::net::PeerId>,
    asked: std::sync::atomic::AtomicUsize,
}

impl sessionmesh::net::Transport for EmptyPeer {
    fn request(
        &self,
        peer: sessionmesh::net::PeerId,
        req: sessionmesh::net::Request,
    ) -> sessionmesh::net::BoxFuture<'_, Result<sessionmesh::net::Response, sessionmesh::net::Error>>
    {
        if matches!(req, sessionmesh::net::Request::Sync { .. }) {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Box::pin(async move {
            Err(sessionmesh::net::Error::Request {
                peer,
                reason: "holds nothing".into(),
            })
        })
    }

    fn peers(&self) -> sessionmesh::net::BoxFuture<'_, Vec<sessionmesh::net::PeerId>> {
        Box::pin(async move { self.peer.into_iter().collect() })
    }
}

#[tokio::test]
async fn a_client_sending_made_up_ids_is_limited_in_the_lookups_it_causes() {
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    let peer = std::sync::Arc::new(EmptyPeer {
        peer: Some(sessionmesh::net::PeerId::random()),
        ..EmptyPeer::default()
    });
    node.attach_transport(peer.clone(), sessionmesh::net::Config::new([1; 32]))
        .unwrap();
    let app = demo::app(node.clone());
    let from = |client: [u8; 4]| {
        let id = SessionId::random();
        let mut req = axum::http::Request::builder()
            .uri("/session")
            .header(axum::http::header::COOKIE, format!("id={id}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let addr = std::net::SocketAddr::from((client, 40_000));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        req
    };
    let asked = || peer.asked.load(std::sync::atomic::Ordering::SeqCst);
    // One client, 60 made-up ids in a burst: 20 lookups (the default 10 a
    // second, twice that at once), the rest answered as unknown at once.
    for _ in 0..60 {
        let res = app.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let flood = asked();
    assert!((20..=21).contains(&flood), "{flood} lookups");
    // Another client is not held back by the first.
    let res = app.clone().oneshot(from([10, 0, 0, 2])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(asked(), flood + 1);
    node.shutdown().await.unwrap();
}
