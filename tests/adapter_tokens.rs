//! The session token on the drop-in paths, in one process: a node that does
//! not hold a session its token proves exists answers 503 with
//! `Retry-After` through tower-sessions and actix-session too (never a fresh
//! session, never a 500), and one request waits for it once.

#![cfg(all(feature = "tower-sessions", feature = "actix"))]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{mesh, KEY};
use sessionmesh::net;
use sessionmesh::{Config, Node};

const BOUND: Duration = Duration::from_millis(400);

/// Two connected nodes, then cut apart: what A creates B cannot reach.
async fn cut_pair() -> (Node, Node, Vec<tempfile::TempDir>) {
    let (a, b, dirs) = pair(net::StaleReads::Refuse).await;
    cut(&a, &b).await;
    (a, b, dirs)
}

/// Two connected nodes with the stale-read policy `policy`.
async fn pair(policy: net::StaleReads) -> (Node, Node, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for d in &dirs {
        let net = net::Config::new(KEY)
            .with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .with_anti_entropy_interval(Duration::from_secs(3_600))
            .with_catch_up(BOUND)
            .with_stale_reads(policy);
        let config = Config::new(d.path()).with_network(net);
        nodes.push(Node::open(config).await.unwrap());
    }
    let (a, b) = (nodes.remove(0), nodes.remove(0));
    mesh(&[&a, &b]).await;
    (a, b, dirs)
}

async fn cut(a: &Node, b: &Node) {
    a.set_blocked(b.peer_id().unwrap(), true).await.unwrap();
    b.set_blocked(a.peer_id().unwrap(), true).await.unwrap();
    while !a.peers().await.is_empty() || !b.peers().await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Cookie headers `a` then `b` merged as a browser keeps them (a later value
/// of a name replaces the earlier one).
fn merged(a: &str, b: &str) -> String {
    let mut jar = std::collections::BTreeMap::new();
    for pair in a.split("; ").chain(b.split("; ")).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap();
        jar.insert(k.to_owned(), v.to_owned());
    }
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `Cookie` header a browser would send back after `headers`.
fn cookies<'a>(set_cookies: impl Iterator<Item = &'a str>) -> String {
    set_cookies
        .filter(|v| !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

mod tower_path {
    use super::*;
    use ::tower::ServiceExt;
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use sessionmesh::adapters::tower_sessions::{MeshStore, TokenLayer};
    use tower_sessions::{Session, SessionManagerLayer};

    fn app(node: Node) -> Router {
        Router::new()
            .route(
                "/put",
                get(|s: Session| async move { s.insert("k", 1).await.is_ok().to_string() }),
            )
            .route(
                "/twice",
                get(|s: Session| async move {
                    // Ignores the failures, asks again, then writes.
                    let _ = s.get::<i64>("k").await;
                    let _ = s.get::<i64>("k").await;
                    let _ = s.insert("other", 2).await;
                    "done"
                }),
            )
            .layer(SessionManagerLayer::new(MeshStore::new(node)).with_secure(false))
            .layer(TokenLayer::new().with_secure(false))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_session_is_a_503_once_per_request() {
        let (a, b, _dirs) = cut_pair().await;
        let put = app(a.clone())
            .oneshot(Request::get("/put").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let cookie = cookies(
            put.headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap()),
        );
        assert!(cookie.contains("id_seen="), "{cookie}");
        let started = Instant::now();
        let res = app(b.clone())
            .oneshot(
                Request::get("/twice")
                    .header(header::COOKIE, &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert!(
            res.headers().get(header::SET_COOKIE).is_none(),
            "no fresh session"
        );
        assert!(took < BOUND + BOUND / 2, "waited {took:?}");
        assert_eq!(b.session_count(), 0, "nothing created in its place");
    }
}

mod actix_path {
    use super::*;
    use actix_session::config::{PersistentSession, TtlExtensionPolicy};
    use actix_session::{Session, SessionMiddleware};
    use actix_web::cookie::Key;
    use actix_web::http::{header, StatusCode};
    use actix_web::{test, web, App, HttpResponse};
    use sessionmesh::adapters::actix::{MeshStore, TokenMiddleware};

    async fn put(s: Session) -> HttpResponse {
        s.insert("k", 1).unwrap();
        HttpResponse::Ok().finish()
    }

    async fn get(s: Session) -> HttpResponse {
        let _ = s.get::<i64>("k");
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn an_unreachable_session_is_a_503_not_a_500() {
        let (a, b, _dirs) = cut_pair().await;
        let key = Key::generate();
        let app = |node: Node| {
            App::new()
                .wrap(
                    SessionMiddleware::builder(MeshStore::new(node), key.clone())
                        .cookie_secure(false)
                        .build(),
                )
                .wrap(TokenMiddleware::new().with_secure(false))
                .route("/put", web::get().to(put))
                .route("/get", web::get().to(get))
        };
        let on_a = test::init_service(app(a.clone())).await;
        let res =
            test::call_service(&on_a, test::TestRequest::get().uri("/put").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = cookies(
            res.headers()
                .get_all(header::SET_COOKIE)
                .map(|v| v.to_str().unwrap()),
        );
        assert!(cookie.contains("id_seen="), "{cookie}");
        let on_b = test::init_service(app(b.clone())).await;
        let req = test::TestRequest::get()
            .uri("/get")
            .insert_header((header::COOKIE, cookie))
            .to_request();
        // What the server sends: a service error is answered by its response.
        let (status, headers) = match test::try_call_service(&on_b, req).await {
            Ok(res) => (res.status(), res.headers().clone()),
            Err(e) => {
                let res = e.error_response();
                (res.status(), res.headers().clone())
            }
        };
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
        assert!(
            headers.get(header::SET_COOKIE).is_none(),
            "no fresh session"
        );
    }

    async fn bump(s: Session) -> HttpResponse {
        let k = s.get::<i64>("k").ok().flatten().unwrap_or(0);
        s.insert("k", k + 1).unwrap();
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn a_stale_read_waits_once_though_actix_loads_twice() {
        let (a, b, _dirs) = pair(net::StaleReads::Serve).await;
        let key = Key::generate();
        let app = |node: Node| {
            App::new()
                .wrap(
                    SessionMiddleware::builder(MeshStore::new(node), key.clone())
                        .cookie_secure(false)
                        // A read refreshes the TTL: the store loads twice.
                        .session_lifecycle(
                            PersistentSession::default()
                                .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
                        )
                        .build(),
                )
                .wrap(TokenMiddleware::new().with_secure(false))
                .route("/bump", web::get().to(bump))
                .route("/get", web::get().to(get))
        };
        let on_a = test::init_service(app(a.clone())).await;
        let set = |res: &actix_web::dev::ServiceResponse<_>| {
            cookies(
                res.headers()
                    .get_all(header::SET_COOKIE)
                    .map(|v| v.to_str().unwrap()),
            )
        };
        let first =
            test::call_service(&on_a, test::TestRequest::get().uri("/bump").to_request()).await;
        let session = set(&first);
        while b.session_count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cut(&a, &b).await;
        // A second write B never gets; its token names it.
        let second = test::call_service(
            &on_a,
            test::TestRequest::get()
                .uri("/bump")
                .insert_header((header::COOKIE, session.clone()))
                .to_request(),
        )
        .await;
        let token = set(&second);
        assert!(token.contains("id_seen="), "{token}");
        let on_b = test::init_service(app(b.clone())).await;
        let started = Instant::now();
        let res = test::call_service(
            &on_b,
            test::TestRequest::get()
                .uri("/get")
                .insert_header((header::COOKIE, merged(&session, &token)))
                .to_request(),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers().get("x-session-stale").unwrap(), "true");
        assert!(took < BOUND + BOUND / 2, "waited {took:?}");
    }
}
