//! sessionmesh side by side with tower-sessions (`MemoryStore`, and Redis
//! stores against real `redis-server`s started on loopback ports), in one
//! run on one machine:
//!
//! - the workload matrix (`matrix.rs`): read-only, 90 % reads, every
//!   request incrementing (clients renewing their session every 100
//!   requests, and keeping one for the whole run) × sessionmesh 3 nodes
//!   async, 3 nodes sync (1 ack) and 1 node, tower-sessions with
//!   `MemoryStore`, with Redis without persistence, and with Redis with an
//!   append-only file and two replicas: requests per second and CPU µs per
//!   request with keep-alive clients, then latency p50 / p99 / p99.9 at one
//!   offered rate per workload (open loop, `open_loop.rs`);
//! - the latency of a read on B right after the same user wrote on A (the
//!   session token makes B catch up first);
//! - replication lag write-on-A → visible-on-B with 3 nodes;
//! - convergence after a partition heals with diverged sessions;
//! - RSS and bytes on disk with many stored sessions of 10 attributes, and
//!   the per-request cost as the store grows.
//!
//! Run with: `cargo bench --bench compare` (`-- --quick` for a few minutes;
//! `-- --only matrix`, `-- --only cell --system S --workload W [--rate R]`,
//! `-- --only memory`, `-- --only throughput [--renew N]`, `-- --only
//! workloads [--reps N]`, `-- --only read_after_write` or
//! `-- --only convergence` to profile one phase, which prints its figures
//! and writes no JSON; `--only matrix` writes `matrix.json` and the
//! throughput plot).
//! Writes `target/bench/compare.json`, `compare_extra.json` and two SVG
//! plots. Without `redis-server` on the PATH it says how to install it and
//! reports Redis as `null`; it installs nothing.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod matrix;
mod open_loop;
mod raw;
mod repl;
mod svg;
mod systems;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use matrix::{Matrix, RENEW_EVERY};
use serde_json::json;
use sessionmesh::http::SessionLayer;
use sessionmesh::{Config, Node, SessionId};
use systems::System;
use throughput::Workload;

/// One allocator for every system in the run: mimalloc. sessionmesh
/// (automerge) allocates and frees many small blocks per request, and
/// glibc's malloc spent a fifth of the convergence phase in its own
/// bookkeeping; a server embedding sessionmesh should pick it or jemalloc
/// too (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Plan {
    clients: usize,
    warmup: Duration,
    run: Duration,
    lag_samples: usize,
    converge: usize,
    sessions: usize,
    checkpoints: Vec<usize>,
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            clients: 16,
            warmup: Duration::from_millis(500),
            run: Duration::from_secs(3),
            lag_samples: 300,
            converge: 1_000,
            sessions: 100_000,
            checkpoints: vec![1_000, 100_000],
        }
    } else {
        Plan {
            clients: 16,
            warmup: Duration::from_secs(1),
            run: Duration::from_secs(10),
            lag_samples: 2_000,
            converge: 10_000,
            sessions: 1_000_000,
            checkpoints: vec![1_000, 100_000, 1_000_000],
        }
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => disk_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Median microseconds of one request (two reads, one increment) through
/// the tower stack on random stored sessions.
async fn per_request_us(node: &Node, ids: &[SessionId], rng: &mut u64) -> f64 {
    use axum::body::Body;
    use tower::ServiceExt;
    let app = throughput::sessionmesh_app(node.clone());
    let mut times = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        *rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let id = ids[usize::try_from(*rng >> 33).unwrap_or(0) % ids.len()];
        let req = axum::http::Request::get("/hit")
            .header("cookie", format!("id={id}"))
            .body(Body::empty())
            .unwrap();
        let t = Instant::now();
        let res = app.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success());
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Stores `n` sessions of 10 attributes; measures the per-request cost at
/// each checkpoint, then RSS and disk.
async fn memory(n: usize, checkpoints: &[usize]) -> (u64, u64, Vec<(usize, f64)>) {
    let dir = tempfile::tempdir().unwrap();
    let cache = std::env::var("SM_CACHE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 << 20);
    let node = Node::open(Config::new(dir.path()).with_cache_bytes(cache))
        .await
        .unwrap();
    let ops: Vec<sessionmesh::doc::Op> = (0..10)
        .map(|i| sessionmesh::doc::Op::Insert {
            key: format!("attr{i}"),
            json: format!("\"value number {i}\""),
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    let mut costs = Vec::new();
    let mut rng = 7u64;
    let _ = SessionLayer::new(node.clone()); // the same layer type the cost is measured through
    for i in 0..n {
        let id = SessionId::random();
        node.create(&id, &ops).await.unwrap();
        ids.push(id);
        if checkpoints.contains(&(i + 1)) {
            costs.push((i + 1, per_request_us(&node, &ids, &mut rng).await));
            eprintln!(
                "  {} sessions stored: {:.1} us per request",
                i + 1,
                costs.last().unwrap().1
            );
        }
    }
    node.shutdown().await.unwrap();
    let rss = rss_bytes();
    let disk = disk_bytes(dir.path());
    (rss, disk, costs)
}

/// sessionmesh's requests per second: 3 nodes, async, the clients on the
/// first (one cell of the matrix, with any renewal).
async fn mesh_rps(p: &Plan, renew: Option<u64>, workload: Workload) -> f64 {
    let case = matrix::Case {
        key: "",
        label: "",
        workload,
        renew,
    };
    matrix::cell(p, System::Mesh, &case).await.rps
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let p = plan(quick);
    let renew = args
        .iter()
        .position(|a| a == "--renew")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    if only.as_deref() == Some("matrix") {
        // The matrix alone: printed, and its own JSON and plot.
        let matrix = rt.block_on(Matrix::measure(&p));
        let (workloads, cpu, latency) = matrix.json();
        let dir = out_dir();
        let json = json!({
            "quick": quick,
            "clients": p.clients,
            "workloads": workloads,
            "cpu_us_per_request": cpu,
            "latency_ms": latency,
            "latency_offered_rps": matrix.offered_json(),
        });
        std::fs::write(
            dir.join("matrix.json"),
            serde_json::to_string_pretty(&json).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("throughput.svg"), matrix.plot()).unwrap();
        matrix.print();
        return;
    }
    if only.as_deref() == Some("cell") {
        // One cell of the matrix, for profiling: `--system` and `--workload`
        // take the keys of compare.json.
        let arg = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
                .unwrap_or_default()
        };
        let system = System::ALL
            .into_iter()
            .find(|s| s.key() == arg("--system"))
            .expect("--system: one of the systems of compare.json");
        let case = matrix::CASES
            .into_iter()
            .find(|c| c.key == arg("--workload"))
            .expect("--workload: one of the workloads of compare.json");
        if let Ok(rate) = arg("--rate").parse::<f64>() {
            // Latency only, at `--rate` requests per second offered.
            let l = rt
                .block_on(matrix::latency_of(&p, system, &case, rate))
                .expect("the system runs here");
            println!(
                "{} / {} at {rate:.0} req/s: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} failed",
                case.key,
                system.key(),
                l.p50.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3,
                l.p999.as_secs_f64() * 1e3,
                l.errors
            );
            return;
        }
        let m = rt.block_on(matrix::cell(&p, system, &case));
        println!(
            "{} / {}: {:.0} req/s, {:.0} CPU us per request",
            case.key,
            system.key(),
            m.rps,
            m.cpu_us
        );
        return;
    }
    // Memory first, in a fresh process, so RSS is this phase's.
    if only.as_deref() == Some("throughput") {
        let rps = rt.block_on(mesh_rps(&p, renew, Workload::Increment));
        println!("sessionmesh (async, 2 peers): {rps:.0} req/s");
        return;
    }
    if only.as_deref() == Some("workloads") {
        // sessionmesh alone on the read-heavy workloads, `--reps` times
        // each, alternating: what a session token costs ordinary requests.
        let reps = args
            .iter()
            .position(|a| a == "--reps")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        for rep in 0..reps {
            for (name, w) in [
                ("read_only", Workload::ReadOnly),
                ("mix_90_10", Workload::Mix90),
            ] {
                let rps = rt.block_on(mesh_rps(&p, None, w));
                println!("rep {rep}: sessionmesh (async, 2 peers) {name}: {rps:.0} req/s");
            }
        }
        return;
    }
    if only.as_deref() == Some("read_after_write") {
        let (mut times, misses) = rt.block_on(raw::read_after_write(p.lag_samples));
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "read on B right after a write on A ({} pairs): p50 {:.3} ms, p99 {:.3} ms, {misses} missed the write",
            times.len(),
            ms(repl::percentile(&times, 500)),
            ms(repl::percentile(&times, 990)),
        );
        return;
    }
    if only.as_deref() == Some("convergence") {
        let conv = rt.block_on(repl::convergence(p.converge)).as_secs_f64();
        println!(
            "convergence after heal ({} diverged sessions): {conv:.3} s",
            p.converge
        );
        return;
    }
    eprintln!("memory: storing {} sessions of 10 attributes", p.sessions);
    let (rss, disk, costs) = rt.block_on(memory(p.sessions, &p.checkpoints));
    if only.as_deref() == Some("memory") {
        println!(
            "{} stored sessions: RSS {:.1} MiB, disk {:.1} MiB",
            p.sessions,
            rss as f64 / 1_048_576.0,
            disk as f64 / 1_048_576.0
        );
        return;
    }

    eprintln!(
        "workload matrix: {} clients, {:?} per system and workload, then latency",
        p.clients, p.run
    );
    let matrix = rt.block_on(Matrix::measure(&p));
    eprintln!(
        "read right after a write on another node: {} pairs",
        p.lag_samples
    );
    let (mut raw, raw_misses) = rt.block_on(raw::read_after_write(p.lag_samples));
    raw.sort();

    eprintln!("replication lag: {} writes", p.lag_samples);
    let mut lags = rt.block_on(repl::lag(p.lag_samples));
    lags.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, max) = (
        ms(repl::percentile(&lags, 500)),
        ms(repl::percentile(&lags, 990)),
        ms(lags[lags.len() - 1]),
    );
    eprintln!("convergence: {} diverged sessions", p.converge);
    let conv = rt.block_on(repl::convergence(p.converge)).as_secs_f64();

    let (workloads, cpu, latency) = matrix.json();
    let rps = |case: &str, system: System| matrix.cell(case, system).map(|c| c.rps);
    let four = |case: &str| {
        json!({
            "sessionmesh": rps(case, System::Mesh),
            "sessionmesh_sync": rps(case, System::MeshSync),
            "tower_sessions_memory": rps(case, System::Memory),
            "tower_sessions_redis": rps(case, System::Redis),
        })
    };
    let report = json!({
        "throughput_rps": four("write_every_long"),
        "workloads": workloads,
        "cpu_us_per_request": cpu,
        "latency_ms": latency,
        "replication_lag_ms": {"p50": p50, "p99": p99, "max": max},
        "convergence_s": {"sessions": p.converge, "seconds": conv},
        "memory": {"sessions": p.sessions, "rss_bytes": rss, "disk_bytes": disk},
    });
    let extra = json!({
        "quick": quick,
        "clients": p.clients,
        "throughput_rps_renewed": {
            "renew_every": RENEW_EVERY,
            "sessionmesh": rps("write_every", System::Mesh),
            "sessionmesh_sync": rps("write_every", System::MeshSync),
            "tower_sessions_memory": rps("write_every", System::Memory),
            "tower_sessions_redis": rps("write_every", System::Redis),
        },
        "latency_offered_rps": matrix.offered_json(),
        "per_request_us_by_sessions": costs.iter().map(|(n, us)| json!({"sessions": n, "median_us": us})).collect::<Vec<_>>(),
        "workloads_rps": {
            "read_only": four("read_only"),
            "mix_90_10": four("mix_90_10"),
        },
        "read_after_write_ms": {
            "pairs": raw.len(),
            "p50": ms(repl::percentile(&raw, 500)),
            "p99": ms(repl::percentile(&raw, 990)),
            "missed": raw_misses,
        },
    });
    let dir = out_dir();
    std::fs::write(
        dir.join("compare.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("compare_extra.json"),
        serde_json::to_string_pretty(&extra).unwrap(),
    )
    .unwrap();

    std::fs::write(dir.join("throughput.svg"), matrix.plot()).unwrap();
    let lag_ms: Vec<f64> = lags.iter().map(|d| ms(*d)).collect();
    std::fs::write(
        dir.join("lag.svg"),
        svg::cdf(
            "Replication lag, write on A to visible on B (3 nodes)",
            &lag_ms,
        ),
    )
    .unwrap();

    matrix.print();
    println!(
        "read on B right after a write on A ({} pairs): p50 {:.3} ms, p99 {:.3} ms, {raw_misses} missed the write",
        raw.len(),
        ms(repl::percentile(&raw, 500)),
        ms(repl::percentile(&raw, 990)),
    );
    println!(
        "replication lag (3 nodes, {} writes): p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms",
        lags.len()
    );
    println!(
        "convergence after heal ({} diverged sessions): {conv:.3} s",
        p.converge
    );
    println!(
        "{} stored sessions: RSS {:.1} MiB, disk {:.1} MiB",
        p.sessions,
        rss as f64 / 1048576.0,
        disk as f64 / 1048576.0
    );
    for (n, us) in &costs {
        println!("per-request cost at {n} sessions: {us:.1} us (median)");
    }
}
