//! One sessionmesh node with the demo app of docs/ARCHITECTURE.md ("The demo
//! contract"), on the native `SessionLayer`.
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
mod support;

use std::process::ExitCode;

use sessionmesh::Node;
use support::Args;

#[tokio::main]
async fn main() -> ExitCode {
    support::init_tracing();
    match support::args() {
        Ok(args) => support::exit("peer", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::open(args.config()).await?;
    support::log_events(&node);
    let listener = tokio::net::TcpListener::bind(args.http).await?;
    support::announce(&node, listener.local_addr()?).await;
    axum::serve(listener, demo::app(node.clone()))
        .with_graceful_shutdown(support::stop_signal())
        .await?;
    node.shutdown().await?;
    Ok(())
}
