//! One sessionmesh node with the demo app of DESIGN.md §7.
//!
//! Run with:
//!
//! ```text
//! cargo run --release --example peer -- --http 127.0.0.1:8081 --data ./data/a
//! curl -c jar -b jar -X PUT localhost:8081/session/user -d '"ada"'
//! curl -c jar -b jar localhost:8081/session
//! ```

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use sessionmesh::{Config, Node};

const USAGE: &str = "usage: peer --http <addr:port> --data <dir>";

struct Args {
    http: SocketAddr,
    data: PathBuf,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut http, mut data) = (None, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--http" => http = Some(value()?.parse().map_err(|e| format!("--http: {e}"))?),
            "--data" => data = Some(PathBuf::from(value()?)),
            "--listen" | "--peer" | "--cluster-key" | "--replication" => {
                return Err(format!(
                    "{flag}: replication is not built yet; this node runs alone"
                ));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(Args {
        http: http.ok_or_else(|| format!("--http is required\n{USAGE}"))?,
        data: data.ok_or_else(|| format!("--data is required\n{USAGE}"))?,
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
    let node = Node::open(Config::new(&args.data)).await?;
    let listener = tokio::net::TcpListener::bind(args.http).await?;
    println!(
        "sessionmesh peer {} serving http://{}",
        node.node_id(),
        listener.local_addr()?
    );
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
