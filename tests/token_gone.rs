//! When a node catching up to a session token finds the session dead at
//! its peers: ended (invalidated, rotated) is final; expired at one peer is
//! not, while another peer holds it alive. Nodes talk over a simulated,
//! in-process transport, so the order of the answers is fixed.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sessionmesh::doc::Op;
use sessionmesh::net::{self, BoxFuture, PeerId, Request, Response, Transport};
use sessionmesh::{Config, ManualClock, Node, SessionId};

#[derive(Debug)]
struct World {
    nodes: Vec<(PeerId, Node)>,
    links: Mutex<HashSet<(usize, usize)>>,
}

impl World {
    fn link(&self, a: usize, b: usize) {
        self.links.lock().unwrap().extend([(a, b), (b, a)]);
    }
}

#[derive(Debug)]
struct SimNet {
    me: usize,
    world: Mutex<Weak<World>>,
}

impl Transport for SimNet {
    fn request(&self, peer: PeerId, req: Request) -> BoxFuture<'_, Result<Response, net::Error>> {
        Box::pin(async move {
            let world = self
                .world
                .lock()
                .unwrap()
                .upgrade()
                .ok_or(net::Error::Closed)?;
            let to = world.nodes.iter().position(|(p, _)| *p == peer).unwrap();
            if !world.links.lock().unwrap().contains(&(self.me, to)) {
                return Err(net::Error::Closed);
            }
            let from = world.nodes[self.me].0;
            Ok(world.nodes[to].1.handle(from, req))
        })
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerId>> {
        Box::pin(async move {
            let Some(world) = self.world.lock().unwrap().upgrade() else {
                return Vec::new();
            };
            let links = world.links.lock().unwrap();
            (0..world.nodes.len())
                .filter(|i| links.contains(&(self.me, *i)))
                .map(|i| world.nodes[i].0)
                .collect()
        })
    }
}

const MIN: Duration = Duration::from_secs(60);

/// Nodes 0.. with their own clocks, no links yet.
async fn world(clocks: &[ManualClock]) -> (Arc<World>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = clocks
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut nodes = Vec::new();
    for (dir, clock) in dirs.iter().zip(clocks) {
        let config = Config::new(dir.path())
            .with_clock(clock.clone())
            .with_max_idle(30 * MIN)
            .with_tombstone_grace(Duration::ZERO);
        nodes.push((PeerId::random(), Node::open(config).await.unwrap()));
    }
    let world = Arc::new(World {
        nodes,
        links: Mutex::new(HashSet::new()),
    });
    let net_config = net::Config::new([0; 32])
        .with_anti_entropy_interval(Duration::from_secs(3_600))
        .with_catch_up(Duration::from_secs(2));
    for (me, (_, node)) in world.nodes.iter().enumerate() {
        let net = SimNet {
            me,
            world: Mutex::new(Arc::downgrade(&world)),
        };
        node.attach_transport(Arc::new(net), net_config.clone())
            .unwrap();
    }
    (world, dirs)
}

#[tokio::test]
async fn a_peer_that_holds_the_session_expired_does_not_hide_one_that_holds_it_alive() {
    let clocks: Vec<_> = (0..3).map(|_| ManualClock::new(10_000_000)).collect();
    let (w, _dirs) = world(&clocks).await;
    let (b, p1, p2) = (&w.nodes[0].1, &w.nodes[1].1, &w.nodes[2].1);
    w.link(1, 2);
    let id = SessionId::random();
    let ops = [Op::Insert {
        key: "k".into(),
        json: "1".into(),
    }];
    let view = p2.create(&id, &ops).await.unwrap();
    for _ in 0..500 {
        if p1.session_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p1.session_count(), 1, "pushed to P1");
    // P1's clock runs an hour ahead: there the session expired and was
    // collected; P2 holds it alive.
    clocks[1].advance(60 * MIN);
    assert_eq!(p1.sweep().await.unwrap().tombstoned, 1);
    let seen = b.read_token(&id, &p2.token(&id, &view.version).unwrap());
    assert!(seen.is_some());
    w.link(0, 1);
    w.link(0, 2);
    let got = b.load_seen(&id, seen.as_ref()).await.unwrap();
    assert_eq!(got.map(|v| v.attributes["k"].clone()), Some(1.into()));
}

#[tokio::test]
async fn a_session_that_arrives_ended_is_gone_at_once() {
    let clocks: Vec<_> = (0..2).map(|_| ManualClock::new(10_000_000)).collect();
    let (w, _dirs) = world(&clocks).await;
    let (b, p) = (&w.nodes[0].1, &w.nodes[1].1);
    let id = SessionId::random();
    let view = p.create(&id, &[]).await.unwrap();
    let seen = b.read_token(&id, &p.token(&id, &view.version).unwrap());
    // Logged out on P, not collected yet (within its grace there).
    p.commit(&id, &[Op::Invalidate]).await.unwrap();
    w.link(0, 1);
    let started = std::time::Instant::now();
    assert!(b.load_seen(&id, seen.as_ref()).await.unwrap().is_none());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a dead session is not unreachable: no wait for the bound"
    );
}
