//! Replication figures over real TCP on 127.0.0.1, nodes in this process:
//!
//! - lag: three nodes, `Replication::Async`; one write on A at a time, timed
//!   from the moment A's commit returns until B serves the new value
//!   (p50, p99, max over the samples);
//! - convergence: two nodes share N sessions, are partitioned, each writes
//!   its own key into every session, and the partition heals; timed from
//!   the heal until both nodes serve both keys in every session.
//!
//! Run with: `cargo bench --bench replication` (`-- --quick` for a short run).
//! Writes `target/bench/replication.json`.

#![allow(clippy::unwrap_used)]

#[path = "compare/repl.rs"]
mod repl;

use std::time::Duration;

/// The allocator `compare` runs every system with (see BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (samples, sessions) = if quick { (300, 1_000) } else { (2_000, 1_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut lags = rt.block_on(repl::lag(samples));
    lags.sort();
    let (p50, p99, max) = (
        repl::percentile(&lags, 500),
        repl::percentile(&lags, 990),
        lags[lags.len() - 1],
    );
    let conv = rt.block_on(repl::convergence(sessions));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "replication lag, 3 nodes, {} writes: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        lags.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "convergence after heal, 2 nodes, {sessions} diverged sessions: {:.3} s",
        conv.as_secs_f64()
    );
    let json = serde_json::json!({
        "replication_lag_ms": {"p50": ms(p50), "p99": ms(p99), "max": ms(max), "samples": lags.len()},
        "convergence_s": {"sessions": sessions, "seconds": conv.as_secs_f64()},
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("replication.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
