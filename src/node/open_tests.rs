//! Opening a node: what is refused and why (each error a caller can act
//! on), the data-directory lock, identities and transports.

use std::time::Duration;

use super::*;
use crate::{Config, Error};

#[tokio::test]
async fn a_second_node_cannot_open_the_same_directory_until_the_first_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    let second = Node::open(Config::new(dir.path())).await;
    assert!(
        matches!(&second, Err(Error::AlreadyOpen { path }) if path == dir.path()),
        "{second:?}"
    );
    node.shutdown().await.unwrap();
    // Released at shutdown, though `node` (a handle) is still alive.
    let again = Node::open(Config::new(dir.path())).await.unwrap();
    again.shutdown().await.unwrap();
    drop(node);
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let zero = Duration::ZERO;
    let net = || crate::net::Config::new([1; 32]);
    let cases = [
        (
            Config::new(dir.path()).with_compact_every(0),
            "compact_every",
        ),
        (
            Config::new(dir.path()).with_sweep_interval(zero),
            "sweep_interval",
        ),
        (
            Config::new(dir.path()).with_network(net().with_anti_entropy_interval(zero)),
            "anti_entropy_interval",
        ),
        (
            Config::new(dir.path()).with_network(net().with_request_timeout(zero)),
            "request_timeout",
        ),
        (
            Config::new(dir.path()).with_network(net().with_catch_up(Duration::from_secs(3_600))),
            "catch_up",
        ),
        (
            Config::new(dir.path())
                .with_network(net().with_replication(crate::net::Replication::Sync { acks: 0 })),
            "replication",
        ),
    ];
    for (config, setting) in cases {
        match Node::open(config).await {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, setting),
            other => panic!("{setting}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unusable_data_directory_is_a_data_dir_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let result = Node::open(Config::new(file.join("data"))).await;
    assert!(matches!(result, Err(Error::DataDir { .. })), "{result:?}");
}

#[tokio::test]
async fn network_calls_on_a_node_without_a_network_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    let addr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    assert!(matches!(node.add_peer(addr).await, Err(Error::NoNetwork)));
    let peer = crate::net::PeerId::random();
    assert!(matches!(
        node.set_blocked(peer, true).await,
        Err(Error::NoNetwork)
    ));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_upgraded_from_an_identity_in_the_database_keeps_its_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let key = libp2p::identity::Keypair::generate_ed25519();
    {
        // What earlier versions left: the keypair in RocksDB.
        let db = crate::store::Db::open(dir.path(), crate::Durability::Process).unwrap();
        db.put_legacy_identity(&key.to_protobuf_encoding().unwrap());
    }
    let net =
        || crate::net::Config::new([5; 32]).with_listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
    let node = Node::open(Config::new(dir.path()).with_network(net()))
        .await
        .unwrap();
    assert_eq!(node.peer_id(), Some(key.public().to_peer_id()));
    node.shutdown().await.unwrap();
    // Moved, not copied: the next start reads the file.
    let node = Node::open(Config::new(dir.path()).with_network(net()))
        .await
        .unwrap();
    assert_eq!(node.peer_id(), Some(key.public().to_peer_id()));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_replicates_through_one_transport_only() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    #[derive(Debug)]
    struct Alone;
    impl crate::net::Transport for Alone {
        fn request(
            &self,
            _: crate::net::PeerId,
            _: crate::net::Request,
        ) -> crate::net::BoxFuture<'_, Result<crate::net::Response, crate::net::Error>> {
            Box::pin(async move { Err(crate::net::Error::Closed) })
        }
        fn peers(&self) -> crate::net::BoxFuture<'_, Vec<crate::net::PeerId>> {
            Box::pin(async { Vec::new() })
        }
    }
    let attach =
        || node.attach_transport(std::sync::Arc::new(Alone), crate::net::Config::new([0; 32]));
    attach().unwrap();
    assert!(matches!(attach(), Err(Error::AlreadyReplicating)));
    node.shutdown().await.unwrap();
}
