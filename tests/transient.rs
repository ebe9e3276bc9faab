//! Transient attributes: kept on the node that set them, across requests,
//! through a rotation; never on another node; gone with the session.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::http::Method;
use axum::routing::post;
use axum::Router;
use sessionmesh::http::{Session, SessionLayer};
use sessionmesh::net::Replication;
use sessionmesh::Node;

/// Not serializable: only a transient attribute can hold it.
struct Connection {
    opened_by: String,
}

fn app(node: Node) -> Router {
    Router::new()
        .route(
            "/open",
            post(|s: Session| async move {
                s.insert("user", "ada").await.unwrap();
                let conn = Arc::new(Connection {
                    opened_by: "ada".into(),
                });
                s.set_transient("conn", conn).await.unwrap();
                // Visible in the same request at once.
                let again = s.transient::<Arc<Connection>>("conn").await.unwrap();
                assert!(again.is_some());
                "opened"
            }),
        )
        .route(
            "/conn",
            post(|s: Session| async move {
                let conn = s.transient::<Arc<Connection>>("conn").await.unwrap();
                let user = s.get::<String>("user").await.unwrap().unwrap_or_default();
                format!(
                    "{user}:{}",
                    conn.map(|c| c.opened_by.clone()).unwrap_or_default()
                )
            }),
        )
        .route(
            "/cycle",
            post(|s: Session| async move { s.cycle_id().await.unwrap() }),
        )
        .route(
            "/close",
            post(|s: Session| async move { s.remove_transient("conn").await.unwrap() }),
        )
        .route(
            "/logout",
            post(|s: Session| async move { s.invalidate().await.unwrap() }),
        )
        .layer(SessionLayer::new(node).with_secure(false))
}

async fn conn(app: &Router, cookie: &str) -> String {
    let answer = common::send(app, Method::POST, "/conn", Some(cookie), "").await;
    String::from_utf8(answer.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_value_stays_on_its_node_follows_rotation_and_ends_with_the_session() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = common::net_node(da.path(), common::KEY, Replication::Sync { acks: 1 }).await;
    let b = common::net_node(db.path(), common::KEY, Replication::Sync { acks: 1 }).await;
    common::mesh(&[&a, &b]).await;
    let (on_a, on_b) = (app(a.clone()), app(b.clone()));

    let opened = common::send(&on_a, Method::POST, "/open", None, "").await;
    let cookie = opened.cookie().unwrap();
    assert_eq!(conn(&on_a, &cookie).await, "ada:ada");
    // The session is on B (sync replication); the transient value is not.
    assert_eq!(conn(&on_b, &cookie).await, "ada:");

    // A new id, the same value.
    let cycled = common::send(&on_a, Method::POST, "/cycle", Some(&cookie), "").await;
    let new_cookie = cycled.cookie().unwrap();
    assert_ne!(new_cookie, cookie);
    assert_eq!(conn(&on_a, &new_cookie).await, "ada:ada");

    common::send(&on_a, Method::POST, "/close", Some(&new_cookie), "").await;
    assert_eq!(conn(&on_a, &new_cookie).await, "ada:");

    // Set again, then the session ends: a new session under the same
    // browser sees nothing.
    let opened = common::send(&on_a, Method::POST, "/open", Some(&new_cookie), "").await;
    assert!(opened.status.is_success());
    assert_eq!(conn(&on_a, &new_cookie).await, "ada:ada");
    common::send(&on_a, Method::POST, "/logout", Some(&new_cookie), "").await;
    assert_eq!(conn(&on_a, &new_cookie).await, ":");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
