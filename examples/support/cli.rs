//! The demo peers' command line: the flags of docs/ARCHITECTURE.md ("The demo
//! contract"), each also read from a `SESSIONMESH_*` environment variable or
//! from a TOML file given with `--config`. A flag wins over its variable, and
//! both win over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use sessionmesh::net::{self, Multiaddr, Replication};
use sessionmesh::Config;

/// One sessionmesh node serving the demo app.
///
/// Every flag can also be set through the environment variable shown with
/// it, or as a key of the `--config` file (the flag's name with `_` for `-`;
/// `peer` and `listen` take lists).
#[derive(Debug, Parser)]
#[command(version)]
pub(crate) struct Cli {
    /// Address to serve HTTP on, e.g. 127.0.0.1:8081. Required, here or in
    /// the config file.
    #[arg(long, env = "SESSIONMESH_HTTP", value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,

    /// Directory of this node's RocksDB database (created if missing).
    /// Required, here or in the config file.
    #[arg(long, env = "SESSIONMESH_DATA", value_name = "DIR")]
    data: Option<PathBuf>,

    /// libp2p address to listen on for peers (repeatable, or
    /// comma-separated in the variable), e.g. /ip4/0.0.0.0/tcp/7001.
    #[arg(
        long,
        env = "SESSIONMESH_LISTEN",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    listen: Vec<Multiaddr>,

    /// libp2p address of a peer to dial (repeatable, or comma-separated in
    /// the variable).
    #[arg(
        long = "peer",
        env = "SESSIONMESH_PEER",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    peers: Vec<Multiaddr>,

    /// The cluster's shared secret, 64 hex characters. Visible in `ps`:
    /// prefer --cluster-key-file. Required with --listen, --peer or --mdns.
    #[arg(
        long,
        env = "SESSIONMESH_CLUSTER_KEY",
        value_name = "HEX",
        hide_env_values = true,
        conflicts_with = "cluster_key_file"
    )]
    cluster_key: Option<String>,

    /// File holding the cluster key (64 hex characters; surrounding
    /// whitespace ignored).
    #[arg(long, env = "SESSIONMESH_CLUSTER_KEY_FILE", value_name = "PATH")]
    cluster_key_file: Option<PathBuf>,

    /// When a write is answered: `async` after the local write, `sync` after
    /// one peer also acknowledged it. Default async.
    #[arg(long, env = "SESSIONMESH_REPLICATION", value_enum)]
    replication: Option<Mode>,

    /// Find peers on the local network with mDNS.
    #[arg(long, env = "SESSIONMESH_MDNS")]
    mdns: bool,

    /// A TOML file with any of the settings above.
    #[arg(long, env = "SESSIONMESH_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
}

/// `--replication`.
#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Answer after the local write.
    Async,
    /// Answer after one peer acknowledged the write too.
    Sync,
}

/// The `--config` file: the same settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    http: Option<SocketAddr>,
    data: Option<PathBuf>,
    #[serde(default)]
    listen: Vec<String>,
    #[serde(default)]
    peer: Vec<String>,
    cluster_key: Option<String>,
    cluster_key_file: Option<PathBuf>,
    replication: Option<Mode>,
    #[serde(default)]
    mdns: bool,
}

impl File {
    fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
    }
}

/// The settings of one demo peer, from flags, environment and config file.
#[derive(Debug)]
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
    /// The process's settings; `--help`, `--version` and bad flags exit here
    /// (code 0 or 2, with clap's message). A bad config file is an error.
    pub(crate) fn from_env() -> Result<Self, String> {
        Self::resolve(Cli::parse())
    }

    fn resolve(cli: Cli) -> Result<Self, String> {
        let file = match &cli.config {
            Some(path) => File::read(path)?,
            None => File::default(),
        };
        let addrs = |flag: Vec<Multiaddr>, from_file: Vec<String>, name: &str| {
            if !flag.is_empty() {
                return Ok(flag);
            }
            from_file
                .iter()
                .map(|a| a.parse().map_err(|e| format!("{name} {a}: {e}")))
                .collect::<Result<Vec<Multiaddr>, String>>()
        };
        let listen = addrs(cli.listen, file.listen, "listen")?;
        let peers = addrs(cli.peers, file.peer, "peer")?;
        let key = if cli.cluster_key.is_some() || cli.cluster_key_file.is_some() {
            cluster_key(cli.cluster_key, cli.cluster_key_file)?
        } else {
            cluster_key(file.cluster_key, file.cluster_key_file)?
        };
        let mdns = cli.mdns || file.mdns;
        if (!listen.is_empty() || !peers.is_empty() || mdns) && key.is_none() {
            return Err(
                "a cluster key (--cluster-key or --cluster-key-file) is required with \
                 --listen, --peer or --mdns"
                    .into(),
            );
        }
        let replication = match cli.replication.or(file.replication) {
            None | Some(Mode::Async) => Replication::Async,
            Some(Mode::Sync) => Replication::Sync { acks: 1 },
        };
        Ok(Args {
            http: cli
                .http
                .or(file.http)
                .ok_or("--http is required (or `http` in the config file)")?,
            data: cli
                .data
                .or(file.data)
                .ok_or("--data is required (or `data` in the config file)")?,
            listen,
            peers,
            key,
            replication,
            mdns,
        })
    }

    /// The cluster key, if one was given.
    #[allow(dead_code)] // only the actix peer derives its cookie key from it
    pub(crate) fn cluster_key(&self) -> Option<[u8; 32]> {
        self.key
    }

    /// The node configuration these settings ask for.
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

/// The key given inline or in a file (not both).
fn cluster_key(inline: Option<String>, file: Option<PathBuf>) -> Result<Option<[u8; 32]>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("give the cluster key inline or in a file, not both".into()),
        (Some(hex), None) => net::Config::parse_key(&hex)
            .map(Some)
            .map_err(|e| format!("cluster key: {e}")),
        (None, Some(path)) => {
            let hex = std::fs::read_to_string(&path)
                .map_err(|e| format!("cluster key file {}: {e}", path.display()))?;
            net::Config::parse_key(&hex)
                .map(Some)
                .map_err(|e| format!("cluster key file {}: {e}", path.display()))
        }
        (None, None) => Ok(None),
    }
}
