//! The workload matrix: every system under every workload, each cell on a
//! freshly started system. First closed-loop throughput with the CPU time
//! per request; then, per workload, latency at one offered rate for every
//! system: half the slowest system's throughput on that workload, so every
//! system can keep up and the figures compare like with like.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::open_loop::{self, Latency};
use crate::systems::System;
use crate::throughput::{self, Measured, Workload};
use crate::Plan;

/// Clients of the renewing workloads start a new session after this many
/// requests.
pub(crate) const RENEW_EVERY: u64 = 100;

/// One workload of the matrix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    /// Its key in `compare.json`.
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) workload: Workload,
    /// A client starts a new session after this many requests.
    pub(crate) renew: Option<u64>,
}

pub(crate) const CASES: [Case; 4] = [
    Case {
        key: "read_only",
        label: "read 2 attributes",
        workload: Workload::ReadOnly,
        renew: None,
    },
    Case {
        key: "mix_90_10",
        label: "90 % reads, 10 % read + increment",
        workload: Workload::Mix90,
        renew: None,
    },
    Case {
        key: "write_every",
        label: "every request increments",
        workload: Workload::Increment,
        renew: Some(RENEW_EVERY),
    },
    Case {
        key: "write_every_long",
        label: "every request increments, one session per client for the whole run",
        workload: Workload::Increment,
        renew: None,
    },
];

/// One system under one workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    pub(crate) rps: f64,
    pub(crate) cpu_us: f64,
    pub(crate) latency: Option<Latency>,
}

/// Every cell (`None`: the system could not run here, i.e. no Redis), and
/// the rate each workload's latency was measured at.
pub(crate) struct Matrix {
    cells: Vec<Vec<Option<Cell>>>,
    offered: Vec<f64>,
}

/// Serves `system` freshly started and runs `f` against it.
async fn on<T, F, Fut>(system: System, f: F) -> Option<T>
where
    F: FnOnce(std::net::SocketAddr, Vec<u32>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let running = system.start().await?;
    let (addr, server) = throughput::serve(running.app.clone()).await;
    let out = f(addr, running.pids()).await;
    server.abort();
    running.stop().await;
    Some(out)
}

/// The closed-loop throughput of `system` under `case` (no latency run).
///
/// # Panics
///
/// When the system cannot run here (Redis missing).
pub(crate) async fn cell(p: &Plan, system: System, case: &Case) -> Measured {
    throughput_of(p, system, case)
        .await
        .expect("the system runs here")
}

async fn throughput_of(p: &Plan, system: System, case: &Case) -> Option<Measured> {
    on(system, |addr, pids| async move {
        throughput::measure(
            addr,
            p.clients,
            (p.warmup, p.run),
            case.renew,
            case.workload,
            &pids,
        )
        .await
    })
    .await
}

/// The open-loop latency of `system` under `case` at `rate` requests per
/// second; `None` when the system cannot run here.
pub(crate) async fn latency_of(
    p: &Plan,
    system: System,
    case: &Case,
    rate: f64,
) -> Option<Latency> {
    on(system, |addr, _| async move {
        open_loop::latency(
            addr,
            p.clients,
            rate,
            (p.warmup, p.run),
            case.renew,
            case.workload,
        )
        .await
    })
    .await
}

impl Matrix {
    pub(crate) async fn measure(p: &Plan) -> Self {
        let mut cells = Vec::new();
        for case in &CASES {
            let mut row = Vec::new();
            for system in System::ALL {
                eprintln!("  {}: {}", case.key, system.label());
                let measured = throughput_of(p, system, case).await;
                row.push(measured.map(|Measured { rps, cpu_us }| Cell {
                    rps,
                    cpu_us,
                    latency: None,
                }));
            }
            cells.push(row);
        }
        let mut offered = Vec::new();
        for (case, row) in CASES.iter().zip(&mut cells) {
            let slowest = row.iter().flatten().map(|c| c.rps).fold(f64::MAX, f64::min);
            let rate = (slowest / 2.0).max(1.0);
            offered.push(rate);
            for (system, cell) in System::ALL.into_iter().zip(row.iter_mut()) {
                let Some(cell) = cell else { continue };
                eprintln!("  {} at {rate:.0} req/s: {}", case.key, system.label());
                cell.latency = latency_of(p, system, case, rate).await;
                if let Some(l) = cell.latency.filter(|l| l.errors > 0) {
                    eprintln!("    {} requests failed", l.errors);
                }
            }
        }
        Self { cells, offered }
    }

    /// The cell of `system` under the workload `key`.
    pub(crate) fn cell(&self, key: &str, system: System) -> Option<Cell> {
        let c = CASES.iter().position(|c| c.key == key)?;
        let s = System::ALL.iter().position(|s| *s == system)?;
        self.cells[c][s]
    }

    /// `{workload: {system: f(cell)}}`, `null` where a system did not run.
    fn by_case(&self, f: impl Fn(&Cell) -> Value) -> Value {
        let mut out = Map::new();
        for (case, row) in CASES.iter().zip(&self.cells) {
            let mut systems = Map::new();
            for (system, cell) in System::ALL.into_iter().zip(row) {
                systems.insert(system.key().into(), cell.as_ref().map_or(Value::Null, &f));
            }
            out.insert(case.key.into(), Value::Object(systems));
        }
        Value::Object(out)
    }

    /// `workloads` (req/s), `cpu_us_per_request` and `latency_ms`.
    pub(crate) fn json(&self) -> (Value, Value, Value) {
        (
            self.by_case(|c| json!(c.rps)),
            self.by_case(|c| json!(c.cpu_us)),
            self.by_case(|c| c.latency.map_or(Value::Null, |l| l.json())),
        )
    }

    /// The rate each workload's latency was measured at.
    pub(crate) fn offered_json(&self) -> Value {
        CASES
            .iter()
            .zip(&self.offered)
            .map(|(c, r)| (c.key.to_owned(), json!(r)))
            .collect::<Map<_, _>>()
            .into()
    }

    /// The plot: every cell's req/s as a bar (SVG).
    pub(crate) fn plot(&self) -> String {
        crate::svg::bars("Requests per second, by workload", "req/s", &self.rows())
    }

    /// Bars for the plot: every cell's req/s.
    fn rows(&self) -> Vec<(String, f64)> {
        let mut rows = Vec::new();
        for (case, row) in CASES.iter().zip(&self.cells) {
            for (system, cell) in System::ALL.into_iter().zip(row) {
                if let Some(c) = cell {
                    rows.push((format!("{}: {}", case.key, system.label()), c.rps));
                }
            }
        }
        rows
    }

    /// One Markdown table per workload.
    pub(crate) fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for ((case, row), rate) in CASES.iter().zip(&self.cells).zip(&self.offered) {
            let redis = self.cell(case.key, System::Redis).map(|c| c.rps);
            let equal = self.cell(case.key, System::RedisReplicated).map(|c| c.rps);
            let renew = case.renew.map_or_else(
                || "no renewal".into(),
                |n| format!("new session every {n} requests"),
            );
            println!(
                "{} ({renew}); latency at {rate:.0} req/s offered",
                case.label
            );
            println!();
            println!("| system | req/s | vs Redis | vs Redis AOF + 2 replicas | CPU µs/req | p50 ms | p99 ms | p99.9 ms |");
            println!("|---|---|---|---|---|---|---|---|");
            for (system, cell) in System::ALL.into_iter().zip(row) {
                let Some(c) = cell else {
                    println!("| {} | n/a | | | | | | |", system.label());
                    continue;
                };
                let vs = |r: Option<f64>| {
                    r.map_or_else(|| "n/a".into(), |r| format!("{:.2}x", c.rps / r))
                };
                let (p50, p99, p999) = c.latency.map_or((f64::NAN, f64::NAN, f64::NAN), |l| {
                    (ms(l.p50), ms(l.p99), ms(l.p999))
                });
                println!(
                    "| {} | {:.0} | {} | {} | {:.0} | {p50:.2} | {p99:.2} | {p999:.2} |",
                    system.label(),
                    c.rps,
                    vs(redis),
                    vs(equal),
                    c.cpu_us
                );
            }
            println!();
        }
    }
}
