//! What every demo peer shares: the command line (`cli.rs`), the node it
//! opens, and a clean stop on Ctrl-C or SIGTERM.

use std::net::SocketAddr;

mod cli;

pub(crate) use cli::Args;

/// The settings, or exit code 2 after printing what is wrong with them
/// (`--help` and `--version` print and exit 0 from inside).
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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, automerge's
/// own spans from `warn`). Spans the
/// filter lets through are printed when they close, with their duration:
/// `RUST_LOG=sessionmesh=debug` shows every request's `session.*` span and
/// every `replication.*` exchange.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            // automerge opens info-level spans deep inside every save.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,automerge=warn".into()),
        )
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
}

/// Logs every session lifecycle event the node reports (at `info`, target
/// `events`), until the node shuts down.
pub(crate) fn log_events(node: &sessionmesh::Node) {
    let mut events = node.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => tracing::info!(
                    target: "events",
                    session = %e.session.short(),
                    kind = ?e.kind,
                    origin = ?e.origin,
                    "session event"
                ),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(target: "events", missed = n, "event log fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
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
