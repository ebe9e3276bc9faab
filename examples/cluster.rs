//! Three sessionmesh nodes on localhost in one process, each serving the demo
//! app of docs/ARCHITECTURE.md ("The demo contract"), replicating to each
//! other over libp2p.
//!
//! Run with:
//!
//! ```text
//! cargo run --release --example cluster            # http://127.0.0.1:8081 ... 8083
//! curl -c jar -b jar -X PUT localhost:8081/session/user -d '"ada"'
//! curl -c jar -b jar localhost:8082/session          # the same session, another node
//! ```
//!
//! Flags (see `--help`): `--http-base <port>` (default 8081; the nodes take
//! three ports from there) and `--data <dir>` (default `./data`; one
//! subdirectory per node). Ctrl-C or SIGTERM stops it cleanly.

mod demo;
#[allow(dead_code)]
mod support;

use std::path::PathBuf;

use clap::Parser;
use sessionmesh::net::{self, Replication};
use sessionmesh::{Config, Node};

const NODES: u16 = 3;

/// Three sessionmesh nodes with the demo app, in one process.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The first node's HTTP port on 127.0.0.1; the others take the next two.
    #[arg(long, env = "SESSIONMESH_HTTP_BASE", default_value_t = 8081)]
    http_base: u16,
    /// Directory holding one data directory per node.
    #[arg(long, env = "SESSIONMESH_DATA", default_value = "./data")]
    data: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
    let Cli {
        http_base: base,
        data,
    } = Cli::parse();
    // One key for this run; the nodes live in this process.
    let key: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap_or(0) ^ 0x5a);
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let net = net::Config::new(key)
            .with_listen("/ip4/127.0.0.1/tcp/0".parse()?)
            .with_replication(Replication::Async);
        let name = char::from(b'a' + u8::try_from(i)?);
        let node = Node::open(Config::new(data.join(name.to_string())).with_network(net)).await?;
        nodes.push(node);
    }
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            for addr in b.listen_addrs().await {
                a.add_peer(addr).await?;
            }
        }
    }
    let mut servers = Vec::new();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    for (i, node) in nodes.iter().enumerate() {
        let port = base + u16::try_from(i)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!(
            "node {i}: http://127.0.0.1:{port}  peer {}",
            node.peer_id().map(|p| p.to_string()).unwrap_or_default()
        );
        let app = demo::app(node.clone());
        let mut stop = stop.clone();
        servers.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await
        }));
    }
    println!("three nodes up; Ctrl-C to stop");
    support::stop_signal().await;
    // Drain every server's requests before the nodes close.
    stop_tx.send_replace(true);
    for s in servers {
        s.await??;
    }
    for node in &nodes {
        node.shutdown().await?;
    }
    Ok(())
}
