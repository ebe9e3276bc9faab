//! Fetch on miss under a flood of unknown ids: a real lookup waits for a
//! slot instead of being skipped, and an id no peer held is not asked for
//! again at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::net::{self, BoxFuture, PeerId, Request, Response, Transport};
use crate::{Config, SessionId};

/// A peer that holds nothing: each sync request is answered, after
/// `delay`, with a failure. Counts the requests per session key.
#[derive(Debug)]
struct Empty {
    peer: PeerId,
    delay: Duration,
    asked: Mutex<HashMap<[u8; 16], usize>>,
}

impl Empty {
    fn asked(&self, id: &SessionId) -> usize {
        let key = *id.doc_key().as_bytes();
        self.asked.lock().unwrap().get(&key).copied().unwrap_or(0)
    }
}

impl Transport for Empty {
    fn request(&self, peer: PeerId, req: Request) -> BoxFuture<'_, Result<Response, net::Error>> {
        if let Request::Sync { items } = &req {
            let mut asked = self.asked.lock().unwrap();
            for i in items {
                *asked.entry(i.key.into_array()).or_default() += 1;
            }
        }
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            Err(net::Error::Request {
                peer,
                reason: "holds nothing".into(),
            })
        })
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
        Box::pin(async move { vec![self.peer] })
    }
}

async fn node_with(dir: &std::path::Path, delay: Duration) -> (Node, Arc<Empty>) {
    let node = Node::open(Config::new(dir)).await.unwrap();
    let peer = Arc::new(Empty {
        peer: PeerId::random(),
        delay,
        asked: Mutex::default(),
    });
    let net = net::Config::new([0; 32]).with_fetch_timeout(Duration::from_secs(2));
    node.attach_transport(peer.clone(), net).unwrap();
    (node, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_behind_a_flood_of_unknown_ids_still_asks_the_peers() {
    let dir = tempfile::tempdir().unwrap();
    let (node, peer) = node_with(dir.path(), Duration::from_millis(200)).await;
    // More unknown ids at once than there are fetch slots.
    let flood: Vec<SessionId> = (0..80).map(|_| SessionId::random()).collect();
    let loads = flood.iter().map(|id| node.load(id));
    for found in futures::future::join_all(loads).await {
        assert!(found.unwrap().is_none());
    }
    for id in &flood {
        assert!(peer.asked(id) > 0, "a lookup was skipped");
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_no_peer_held_is_not_asked_for_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (node, peer) = node_with(dir.path(), Duration::ZERO).await;
    let id = SessionId::random();
    assert!(node.load(&id).await.unwrap().is_none());
    let once = peer.asked(&id);
    assert!(once > 0);
    assert!(node.load(&id).await.unwrap().is_none());
    assert_eq!(peer.asked(&id), once, "answered from memory");
    // A little later it is asked for again.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(node.load(&id).await.unwrap().is_none());
    assert!(peer.asked(&id) > once);
    node.shutdown().await.unwrap();
}
