//! Shutdown and drop: every task the node started has ended when
//! `shutdown()` returns, and the data directory is free at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::net::{self, BoxFuture, PeerId, Request, Response, Transport};
use crate::{Config, SessionId};

/// Counts a request future that was dropped (finished or cancelled).
#[derive(Debug)]
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A peer that takes every request and never answers.
#[derive(Debug, Default)]
struct Stalled {
    peer: Option<PeerId>,
    started: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Transport for Stalled {
    fn request(&self, _peer: PeerId, _req: Request) -> BoxFuture<'_, Result<Response, net::Error>> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let guard = Dropped(Arc::clone(&self.dropped));
        Box::pin(async move {
            let _guard = guard;
            std::future::pending().await
        })
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
        Box::pin(async move { self.peer.into_iter().collect() })
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_push_stuck_on_a_stalled_peer_and_frees_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    let stalled = Arc::new(Stalled {
        peer: Some(PeerId::random()),
        ..Stalled::default()
    });
    let (started, dropped) = (Arc::clone(&stalled.started), Arc::clone(&stalled.dropped));
    node.attach_transport(stalled, net::Config::new([0; 32]))
        .unwrap();
    node.create(&SessionId::random(), &[]).await.unwrap();
    until("the push", || started.load(Ordering::SeqCst) == 1).await;
    // More commits queue behind the push in flight.
    node.create(&SessionId::random(), &[]).await.unwrap();

    tokio::time::timeout(Duration::from_secs(5), node.shutdown())
        .await
        .expect("shutdown does not wait for a stalled peer")
        .unwrap();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        started.load(Ordering::SeqCst),
        "a push task of the old node still runs"
    );
    // The directory is free at once, though `node` is still held.
    let again = Node::open(Config::new(dir.path())).await.unwrap();
    assert_eq!(again.session_count(), 2);
    again.shutdown().await.unwrap();
    drop(node);
}

#[tokio::test]
async fn a_node_dropped_without_shutdown_frees_its_directory_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let id = SessionId::random();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    node.create(&id, &[]).await.unwrap();
    let clone = node.clone();
    drop(node);
    // One handle left: still open.
    assert!(clone.load(&id).await.unwrap().is_some());
    drop(clone);
    let again = Node::open(Config::new(dir.path())).await.unwrap();
    assert!(again.load(&id).await.unwrap().is_some());
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_networked_node_shuts_down_and_its_directory_and_port_are_free_again() {
    let dir = tempfile::tempdir().unwrap();
    let net = || net::Config::new([3; 32]).with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
    let node = Node::open(Config::new(dir.path()).with_network(net()))
        .await
        .unwrap();
    let addr = node.listen_addrs().await.remove(0);
    let peer_id = node.peer_id();
    node.shutdown().await.unwrap();
    let config =
        Config::new(dir.path()).with_network(net::Config::new([3; 32]).with_listen(addr.clone()));
    let again = Node::open(config).await.unwrap();
    assert_eq!(again.listen_addrs().await, vec![addr]);
    assert_eq!(again.peer_id(), peer_id, "the identity is kept");
    again.shutdown().await.unwrap();
}
