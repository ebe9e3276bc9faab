//! sessionmesh side by side with tower-sessions (`MemoryStore`, and a Redis
//! store against a real `redis-server` started on a loopback port), in one
//! run on one machine:
//!
//! - throughput of one request (read two attributes, increment a counter)
//!   through axum over HTTP with keep-alive clients, each with its own
//!   session: sessionmesh replicating to 2 peers (async, and sync with one
//!   ack), tower-sessions + `MemoryStore`, tower-sessions + Redis; then
//!   again with each client starting a new session every 100 requests
//!   (sessionmesh's cost per write grows with the session's history); then
//!   read-only requests, and nine reads to one read-and-increment;
//! - the latency of a read on B right after the same user wrote on A (the
//!   session token makes B catch up first);
//! - replication lag write-on-A → visible-on-B with 3 nodes;
//! - convergence after a partition heals with diverged sessions;
//! - RSS and bytes on disk with many stored sessions of 10 attributes, and
//!   the per-request cost as the store grows.
//!
//! Run with: `cargo bench --bench compare` (`-- --quick` for a few minutes;
//! `-- --only memory`, `-- --only throughput [--renew N]`,
//! `-- --only workloads [--reps N]`, `-- --only read_after_write` or
//! `-- --only convergence` to profile one phase, which prints its figures
//! and writes no JSON).
//! Writes `target/bench/compare.json`, `compare_extra.json` and two SVG
//! plots. Without `redis-server` on the PATH it says how to install it and
//! reports Redis as `null`; it installs nothing.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

mod raw;
mod repl;
mod svg;
mod throughput;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sessionmesh::http::SessionLayer;
use sessionmesh::net::Replication;
use sessionmesh::{Config, Node, SessionId};
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

/// A `redis-server` on a free loopback port, or why there is none.
fn start_redis() -> Result<(Child, u16), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "redis-server not runnable ({e}); install it with: apt-get install -y redis-server"
            )
        })?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((child, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("redis-server did not start".into())
}

async fn cluster(replication: Replication) -> (Vec<Node>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(repl::node(d.path(), replication).await);
    }
    repl::connect(&nodes.iter().collect::<Vec<_>>()).await;
    (nodes, dirs)
}

/// Clients of the second throughput table start a new session after this
/// many requests.
const RENEW_EVERY: u64 = 100;

async fn throughput_of(app: axum::Router, p: &Plan, renew: Option<u64>, workload: Workload) -> f64 {
    let (addr, server) = throughput::serve(app).await;
    let rps = throughput::measure(addr, p.clients, p.warmup, p.run, renew, workload).await;
    server.abort();
    rps
}

/// Requests per second of the four systems, one after the other.
struct Rates {
    mesh: f64,
    mesh_sync: f64,
    memory: f64,
    redis: Option<f64>,
}

impl Rates {
    async fn measure(p: &Plan, renew: Option<u64>, workload: Workload) -> Self {
        let mesh = mesh_rps(p, Replication::Async, renew, workload).await;
        let mesh_sync = mesh_rps(p, Replication::Sync { acks: 1 }, renew, workload).await;
        let memory = throughput_of(
            throughput::tower_sessions_app(tower_sessions_014::MemoryStore::default()),
            p,
            renew,
            workload,
        )
        .await;
        let redis = redis_rps(p, renew, workload).await;
        Self {
            mesh,
            mesh_sync,
            memory,
            redis,
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "sessionmesh": self.mesh,
            "sessionmesh_sync": self.mesh_sync,
            "tower_sessions_memory": self.memory,
            "tower_sessions_redis": self.redis,
        })
    }

    fn rows(&self, suffix: &str) -> Vec<(String, f64)> {
        let mut rows = vec![
            (format!("sessionmesh (async, 2 peers){suffix}"), self.mesh),
            (format!("sessionmesh (sync, 1 ack){suffix}"), self.mesh_sync),
            (format!("tower-sessions + MemoryStore{suffix}"), self.memory),
        ];
        if let Some(r) = self.redis {
            rows.push((format!("tower-sessions + Redis{suffix}"), r));
        }
        rows
    }

    fn print(&self, title: &str) {
        println!("{title}");
        println!();
        println!(
            "| system | req/s | vs tower-sessions + Redis | vs tower-sessions + MemoryStore |"
        );
        println!("|---|---|---|---|");
        for (name, rps) in self.rows("") {
            let vs_redis = self
                .redis
                .map_or_else(|| "n/a".to_owned(), |r| format!("{:.2}x", rps / r));
            println!(
                "| {name} | {rps:.0} | {vs_redis} | {:.2}x |",
                rps / self.memory
            );
        }
        println!();
    }
}

/// sessionmesh's requests per second: 3 nodes, the clients on the first.
async fn mesh_rps(
    p: &Plan,
    replication: Replication,
    renew: Option<u64>,
    workload: Workload,
) -> f64 {
    let (nodes, _dirs) = cluster(replication).await;
    let rps = throughput_of(
        throughput::sessionmesh_app(nodes[0].clone()),
        p,
        renew,
        workload,
    )
    .await;
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
    rps
}

async fn redis_rps(p: &Plan, renew: Option<u64>, workload: Workload) -> Option<f64> {
    use tower_sessions_redis_store::fred::prelude::*;
    let (mut child, port) = match start_redis() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("tower-sessions + Redis skipped: {why}");
            return None;
        }
    };
    let config = Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap();
    let pool = Pool::new(config, None, None, None, 4).unwrap();
    let _conn = pool.connect();
    pool.wait_for_connect().await.unwrap();
    let store = tower_sessions_redis_store::RedisStore::new(pool);
    let rps = throughput_of(throughput::tower_sessions_app(store), p, renew, workload).await;
    let _ = child.kill();
    let _ = child.wait();
    Some(rps)
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

    // Memory first, in a fresh process, so RSS is this phase's.
    if only.as_deref() == Some("throughput") {
        let rps = rt.block_on(mesh_rps(&p, Replication::Async, renew, Workload::Increment));
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
                let rps = rt.block_on(mesh_rps(&p, Replication::Async, None, w));
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

    eprintln!("throughput: {} clients, {:?} per system", p.clients, p.run);
    let rates = rt.block_on(Rates::measure(&p, None, Workload::Increment));
    eprintln!("throughput again, clients renewing their session every {RENEW_EVERY} requests");
    let renewed = rt.block_on(Rates::measure(&p, Some(RENEW_EVERY), Workload::Increment));
    eprintln!("throughput, read-only and 90 % read workloads");
    let read_only = rt.block_on(Rates::measure(&p, None, Workload::ReadOnly));
    let mix = rt.block_on(Rates::measure(&p, None, Workload::Mix90));
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

    let report = json!({
        "throughput_rps": {
            "sessionmesh": rates.mesh,
            "sessionmesh_sync": rates.mesh_sync,
            "tower_sessions_memory": rates.memory,
            "tower_sessions_redis": rates.redis,
        },
        "replication_lag_ms": {"p50": p50, "p99": p99, "max": max},
        "convergence_s": {"sessions": p.converge, "seconds": conv},
        "memory": {"sessions": p.sessions, "rss_bytes": rss, "disk_bytes": disk},
    });
    let extra = json!({
        "quick": quick,
        "clients": p.clients,
        "throughput_rps_renewed": {
            "renew_every": RENEW_EVERY,
            "sessionmesh": renewed.mesh,
            "sessionmesh_sync": renewed.mesh_sync,
            "tower_sessions_memory": renewed.memory,
            "tower_sessions_redis": renewed.redis,
        },
        "per_request_us_by_sessions": costs.iter().map(|(n, us)| json!({"sessions": n, "median_us": us})).collect::<Vec<_>>(),
        "workloads_rps": {
            "read_only": read_only.json(),
            "mix_90_10": mix.json(),
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

    let mut rows = rates.rows("");
    rows.extend(renewed.rows(&format!(", new session every {RENEW_EVERY} req")));
    std::fs::write(
        dir.join("throughput.svg"),
        svg::bars("Requests per second (read 2, increment 1)", "req/s", &rows),
    )
    .unwrap();
    let lag_ms: Vec<f64> = lags.iter().map(|d| ms(*d)).collect();
    std::fs::write(
        dir.join("lag.svg"),
        svg::cdf(
            "Replication lag, write on A to visible on B (3 nodes)",
            &lag_ms,
        ),
    )
    .unwrap();

    rates.print("throughput, each client keeping one session");
    renewed.print(&format!(
        "throughput, each client starting a new session every {RENEW_EVERY} requests"
    ));
    read_only.print("throughput, every request reads two attributes");
    mix.print("throughput, nine reads to one read-and-increment");
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
