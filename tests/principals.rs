//! "Log out everywhere" across two nodes: the principal set on one node is
//! found on the other, and ending every session of a user on one node ends
//! them on both, leaving everyone else logged in.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::Method;
use axum::routing::post;
use axum::Router;
use sessionmesh::doc::Op;
use sessionmesh::http::{Session, SessionLayer};
use sessionmesh::net::Replication;
use sessionmesh::{Node, SessionId, PRINCIPAL_ATTRIBUTE};

fn owned_by(principal: &str) -> Vec<Op> {
    vec![Op::Insert {
        key: PRINCIPAL_ATTRIBUTE.into(),
        json: serde_json::to_string(principal).unwrap(),
    }]
}

async fn ids_of(node: &Node, principal: &str) -> Vec<sessionmesh::DocKey> {
    let mut keys: Vec<_> = node
        .sessions_of(principal)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

async fn login(session: Session) -> Result<&'static str, sessionmesh::Error> {
    session.cycle_id().await?;
    session.set_principal("user-42").await?;
    Ok("welcome")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_ends_a_users_sessions_on_every_node_and_no_others() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = common::net_node(da.path(), common::KEY, Replication::Async).await;
    let b = common::net_node(db.path(), common::KEY, Replication::Async).await;
    common::mesh(&[&a, &b]).await;

    // One session logged in through HTTP on A (with a rotation on the way),
    // one created on B, one of another user, one of nobody, one that
    // changed hands.
    let app = Router::new()
        .route("/login", post(login))
        .layer(SessionLayer::new(a.clone()));
    let answer = common::send(&app, Method::POST, "/login", None, "").await;
    assert!(answer.status.is_success(), "{answer:?}");
    let web: SessionId = answer
        .cookie()
        .unwrap()
        .trim_start_matches("id=")
        .parse()
        .unwrap();
    let on_b = SessionId::random();
    b.create(&on_b, &owned_by("user-42")).await.unwrap();
    let other = SessionId::random();
    b.create(&other, &owned_by("user-7")).await.unwrap();
    let anonymous = SessionId::random();
    a.create(&anonymous, &[]).await.unwrap();
    let moved = SessionId::random();
    a.create(&moved, &owned_by("user-42")).await.unwrap();
    a.commit(&moved, &owned_by("user-9")).await.unwrap();

    let mut expected = vec![web.doc_key(), on_b.doc_key()];
    expected.sort();
    for node in [&a, &b] {
        common::eventually("both of user-42's sessions on each node", || async {
            ids_of(node, "user-42").await == expected
        })
        .await;
    }
    let (_, view) = &a.sessions_of("user-42").await.unwrap()[0];
    assert_eq!(view.attributes[PRINCIPAL_ATTRIBUTE], "user-42");

    // Ended from B: both of user-42's sessions die on A too.
    assert_eq!(b.invalidate_all_of("user-42").await.unwrap(), 2);
    for node in [&a, &b] {
        common::eventually("user-42 logged out on each node", || async {
            node.load(&web).await.unwrap().is_none() && node.load(&on_b).await.unwrap().is_none()
        })
        .await;
        assert!(ids_of(node, "user-42").await.is_empty());
        for alive in [&other, &anonymous, &moved] {
            assert!(node.load(alive).await.unwrap().is_some());
        }
    }
    // On B the change of hands arrived as a push after the session itself:
    // a change B may keep unapplied for a while, found all the same.
    for node in [&a, &b] {
        assert_eq!(ids_of(node, "user-9").await, vec![moved.doc_key()]);
    }

    // The index outlives a restart.
    a.shutdown().await.unwrap();
    let a = Node::open(sessionmesh::Config::new(da.path()))
        .await
        .unwrap();
    assert_eq!(ids_of(&a, "user-7").await, vec![other.doc_key()]);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Through the tower-sessions adapter: the application sets the principal
/// with tower-sessions' own `insert`, and ends the user's sessions through
/// the store's node.
#[cfg(feature = "tower-sessions")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_sessions_adapter_logs_a_user_out_everywhere() {
    use sessionmesh::adapters::tower_sessions::MeshStore;
    use tower_sessions::{Session, SessionManagerLayer};

    let dir = tempfile::tempdir().unwrap();
    let node = common::node(dir.path()).await;
    let store = MeshStore::new(node.clone());
    let app = Router::new()
        .route(
            "/login",
            post(|s: Session| async move {
                s.insert(PRINCIPAL_ATTRIBUTE, "user-42").await.unwrap();
                "welcome"
            }),
        )
        .route(
            "/me",
            post(|s: Session| async move {
                s.get::<String>(PRINCIPAL_ATTRIBUTE)
                    .await
                    .unwrap()
                    .unwrap_or_default()
            }),
        )
        .layer(SessionManagerLayer::new(store.clone()).with_secure(false));
    let mut cookies = Vec::new();
    for _ in 0..2 {
        let answer = common::send(&app, Method::POST, "/login", None, "").await;
        cookies.push(answer.cookie().unwrap());
    }
    let me = common::send(&app, Method::POST, "/me", Some(&cookies[0]), "").await;
    assert_eq!(&me.body[..], b"user-42");
    assert_eq!(store.node().sessions_of("user-42").await.unwrap().len(), 2);
    assert_eq!(store.node().invalidate_all_of("user-42").await.unwrap(), 2);
    for cookie in &cookies {
        let me = common::send(&app, Method::POST, "/me", Some(cookie), "").await;
        assert_eq!(&me.body[..], b"", "still logged in");
    }
    node.shutdown().await.unwrap();
}
