//! One sessionmesh node with the demo app of DESIGN.md §7.
//!
//! Run with:
//!
//! ```text
//! cargo run --release --example peer -- --http 127.0.0.1:8081 --data ./data/a \
//!     --listen /ip4/127.0.0.1/tcp/7001 --peer /ip4/127.0.0.1/tcp/7002 \
//!     --cluster-key 2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a \
//!     --replication sync
//! curl -c jar -b jar -X PUT localhost:8081/session/user -d '"ada"'
//! curl -c jar -b jar localhost:8081/session
//! ```
//!
//! Without `--listen`, `--peer` or `--mdns` the node runs alone.

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sessionmesh::net::{self, Multiaddr, Replication};
use sessionmesh::{Config, Node};

const USAGE: &str = "usage: peer --http <addr:port> --data <dir> [--listen <multiaddr>] \
                     [--peer <multiaddr>]... [--cluster-key <64 hex>] \
                     [--replication async|sync] [--mdns]";

struct Args {
    http: SocketAddr,
    data: PathBuf,
    listen: Vec<Multiaddr>,
    peers: Vec<Multiaddr>,
    key: Option<[u8; 32]>,
    replication: Replication,
    mdns: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut http, mut data, mut key) = (None, None, None);
    let (mut listen, mut peers) = (Vec::new(), Vec::new());
    let (mut replication, mut mdns) = (Replication::Async, false);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--http" => http = Some(value()?.parse().map_err(|e| format!("--http: {e}"))?),
            "--data" => data = Some(PathBuf::from(value()?)),
            "--listen" => listen.push(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--peer" => peers.push(value()?.parse().map_err(|e| format!("--peer: {e}"))?),
            "--cluster-key" => {
                let k =
                    net::Config::parse_key(&value()?).map_err(|e| format!("--cluster-key: {e}"))?;
                key = Some(k);
            }
            "--replication" => {
                replication = match value()?.as_str() {
                    "async" => Replication::Async,
                    "sync" => Replication::Sync { acks: 1 },
                    other => {
                        return Err(format!(
                            "--replication: expected async or sync, got {other}"
                        ))
                    }
                }
            }
            "--mdns" => mdns = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    let networked = !listen.is_empty() || !peers.is_empty() || mdns;
    if networked && key.is_none() {
        return Err(format!(
            "--cluster-key is required with --listen, --peer or --mdns\n{USAGE}"
        ));
    }
    Ok(Args {
        http: http.ok_or_else(|| format!("--http is required\n{USAGE}"))?,
        data: data.ok_or_else(|| format!("--data is required\n{USAGE}"))?,
        listen,
        peers,
        key,
        replication,
        mdns,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::new(&args.data);
    if let Some(key) = args.key {
        let mut net = net::Config::new(key)
            .with_replication(args.replication)
            .with_mdns(args.mdns);
        for addr in args.listen {
            net = net.with_listen(addr);
        }
        for addr in args.peers {
            net = net.with_peer(addr);
        }
        config = config.with_network(net);
    }
    let node = Node::open(config).await?;
    let listener = tokio::net::TcpListener::bind(args.http).await?;
    println!("sessionmesh peer serving http://{}", listener.local_addr()?);
    if let Some(peer_id) = node.peer_id() {
        println!("peer id {peer_id}");
        for addr in node.listen_addrs().await {
            println!("listening on {addr}");
        }
    }
    axum::serve(listener, demo::app(node.clone()))
        .with_graceful_shutdown(stop_signal())
        .await?;
    node.shutdown().await?;
    Ok(())
}

/// Ctrl-C or SIGTERM: stop taking requests, then shut the node down cleanly.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
