//! What every demo peer shares: the flags of docs/ARCHITECTURE.md ("The demo
//! contract"), the node they open, and a clean stop on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use sessionmesh::net::{self, Multiaddr, Replication};
use sessionmesh::Config;

pub(crate) const USAGE: &str =
    "usage: <peer> --http <addr:port> --data <dir> [--listen <multiaddr>] \
                                [--peer <multiaddr>]... [--cluster-key <64 hex>] \
                                [--replication async|sync] [--mdns]";

/// The demo contract's flags.
pub(crate) struct Args {
    pub(crate) http: SocketAddr,
    pub(crate) data: PathBuf,
    listen: Vec<Multiaddr>,
    peers: Vec<Multiaddr>,
    key: Option<[u8; 32]>,
    replication: Replication,
    mdns: bool,
}

impl Args {
    /// Parses the process arguments, or says what is wrong.
    pub(crate) fn from_env() -> Result<Self, String> {
        parse(std::env::args().skip(1))
    }

    /// The cluster key, if one was given.
    #[allow(dead_code)] // only the actix peer derives its cookie key from it
    pub(crate) fn cluster_key(&self) -> Option<[u8; 32]> {
        self.key
    }

    /// The node configuration these flags ask for.
    pub(crate) fn config(&self) -> Config {
        let mut config = Config::new(&self.data);
        if let Some(key) = self.key {
            let mut net = net::Config::new(key)
                .with_replication(self.replication)
                .with_mdns(self.mdns);
            for addr in &self.listen {
                net = net.with_listen(addr.clone());
            }
            for addr in &self.peers {
                net = net.with_peer(addr.clone());
            }
            config = config.with_network(net);
        }
        config
    }
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

/// The flags, or exit code 2 after printing what is wrong with them.
pub(crate) fn args() -> Result<Args, std::process::ExitCode> {
    Args::from_env().map_err(|e| {
        eprintln!("{e}");
        std::process::ExitCode::from(2)
    })
}

/// The exit code for a peer's run: success, or failure after printing why.
pub(crate) fn exit(
    name: &str,
    result: Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Prints where the node serves, as the contract's tests expect.
pub(crate) async fn announce(node: &sessionmesh::Node, http: SocketAddr) {
    println!("sessionmesh peer serving http://{http}");
    if let Some(peer_id) = node.peer_id() {
        println!("peer id {peer_id}");
        for addr in node.listen_addrs().await {
            println!("listening on {addr}");
        }
    }
}

/// Ctrl-C or SIGTERM.
#[allow(dead_code)] // the actix peer has its own signal handling
pub(crate) async fn stop_signal() {
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
