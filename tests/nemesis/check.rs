//! After the last heal: wait until every node holds the same sessions, then
//! check the history against them, and write the report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use reqwest::header::COOKIE;
use serde::Serialize;
use serde_json::{json, Value};

use super::client::{Epoch, Kind, Op, Outcome, COUNTER};

/// One broken promise, with the operations that show it.
#[derive(Debug, Serialize)]
pub struct Violation {
    pub what: String,
    pub ops: Vec<Op>,
}

/// The check's findings.
#[derive(Debug, Serialize)]
pub struct Findings {
    pub violations: Vec<Violation>,
    /// From the last heal until every node's fingerprint was the same.
    pub converged_after_ms: Option<u64>,
    /// From the last heal until every node answered the same for every
    /// session, holding its acknowledged keys (one pass reads them all).
    pub values_agreed_after_ms: Option<u64>,
    pub sessions_checked: usize,
    pub dead_ids_checked: usize,
}

/// A session as node `base` serves it to the bare `cookie` (no token).
async fn read(http: &reqwest::Client, base: &str, cookie: &str) -> Option<Value> {
    let res = http
        .get(format!("{base}/session"))
        .header(COOKIE, cookie)
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json().await.ok()
}

/// Every session a client lived in that must still be live, as it left it:
/// its end state is known (no rotation or logout went unanswered) and it
/// was not logged out.
fn final_sessions(outcomes: &[Outcome]) -> Vec<(usize, &Epoch)> {
    outcomes
        .iter()
        .enumerate()
        .flat_map(|(c, o)| o.epochs.iter().map(move |e| (c, e)))
        .filter(|(_, e)| e.certain && !e.ended && e.cookie.is_some())
        .collect()
}

/// Every ended id, with its client.
fn dead_ids(outcomes: &[Outcome]) -> Vec<(usize, &String)> {
    outcomes
        .iter()
        .enumerate()
        .flat_map(|(c, o)| o.dead.iter().map(move |d| (c, d)))
        .collect()
}

/// A node's fingerprint of its live sessions, from `GET /cluster`.
async fn fingerprint(http: &reqwest::Client, base: &str) -> Option<Value> {
    let res = http.get(format!("{base}/cluster")).send().await.ok()?;
    let body: Value = res.json().await.ok()?;
    Some(body.get("fingerprint")?.clone()).filter(|f| !f.is_null())
}

/// Fails at once, saying why, when the peer binary predates the
/// fingerprint this check waits for: `cargo test --test nemesis` does not
/// rebuild `examples/peer`, so a stale one would only show as nodes that
/// never converge.
pub async fn peer_is_current(base: &str) {
    let http = reqwest::Client::new();
    let has = fingerprint(&http, base).await.is_some();
    assert!(
        has,
        "{base}/cluster has no fingerprint: examples/peer is older than this test; \
         run `cargo build --examples` (with the same --release, if any) first"
    );
}

/// Waits (up to `limit` after `start`) until every node reports the same
/// fingerprint: the same live sessions, change for change. Reads no
/// session, so it records no access and measures convergence finely.
pub async fn settle(
    http: &reqwest::Client,
    bases: &[String],
    start: Instant,
    limit: Duration,
) -> Option<Duration> {
    loop {
        let mut prints = Vec::new();
        for base in bases {
            prints.push(fingerprint(http, base).await);
        }
        if prints[0].is_some() && prints.windows(2).all(|w| w[0] == w[1]) {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `limit` after `start`) until every node answers the same
/// for every final session and holds its acknowledged keys; returns how
/// long it took.
pub async fn converge(
    http: &reqwest::Client,
    bases: &[String],
    outcomes: &[Outcome],
    start: Instant,
    limit: Duration,
) -> Option<Duration> {
    let sessions = final_sessions(outcomes);
    loop {
        let mut done = true;
        'all: for (_, epoch) in &sessions {
            let cookie = epoch.cookie.as_deref().unwrap_or_default();
            let mut first: Option<Value> = None;
            for base in bases {
                let Some(v) = read(http, base, cookie).await else {
                    done = false;
                    break 'all;
                };
                let holds = epoch.acked.keys().all(|k| v.get(k).is_some());
                if !holds || first.as_ref().is_some_and(|f| *f != v) {
                    done = false;
                    break 'all;
                }
                first = Some(v);
            }
        }
        if done {
            'dead: for (_, cookie) in dead_ids(outcomes) {
                for base in bases {
                    if read(http, base, cookie).await != Some(json!({})) {
                        done = false;
                        break 'dead;
                    }
                }
            }
        }
        if done {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks every node against the history.
pub async fn check(
    http: &reqwest::Client,
    bases: &[String],
    outcomes: &[Outcome],
    settled: Option<Duration>,
    converged: Option<Duration>,
) -> Findings {
    let mut violations = Vec::new();
    if settled.is_none() {
        violations.push(Violation {
            what: "the nodes' fingerprints did not agree within 60 s of the last heal".into(),
            ops: Vec::new(),
        });
    }
    if converged.is_none() {
        violations.push(Violation {
            what: "the nodes did not answer alike within 60 s of the last heal".into(),
            ops: Vec::new(),
        });
    }
    let ops_of = |c: usize, pred: &dyn Fn(&Op) -> bool| -> Vec<Op> {
        outcomes[c]
            .ops
            .iter()
            .filter(|o| pred(o))
            .cloned()
            .collect()
    };
    for o in outcomes {
        for f in &o.seen {
            violations.push(Violation {
                what: f.clone(),
                ops: Vec::new(),
            });
        }
    }
    let sessions = final_sessions(outcomes);
    // Each session's answer on each node, by (client, cookie).
    let mut values: BTreeMap<(usize, &str), Vec<Option<Value>>> = BTreeMap::new();
    for (c, epoch) in &sessions {
        let cookie = epoch.cookie.as_deref().unwrap_or_default();
        for (i, base) in bases.iter().enumerate() {
            let v = read(http, base, cookie).await;
            values.entry((*c, cookie)).or_default().push(v.clone());
            let Some(Value::Object(attrs)) = v else {
                violations.push(Violation {
                    what: format!("client {c}: node {i} does not serve its session"),
                    ops: Vec::new(),
                });
                continue;
            };
            let mut missing = Vec::new();
            for key in epoch.acked.keys() {
                if !attrs.contains_key(key) {
                    missing.push(key.clone());
                }
            }
            if !missing.is_empty() {
                let keys: BTreeSet<_> = missing.iter().cloned().collect();
                violations.push(Violation {
                    what: format!(
                        "client {c}: node {i} lacks {} acknowledged writes: {missing:?}",
                        missing.len()
                    ),
                    ops: ops_of(*c, &|op| op.key.as_ref().is_some_and(|k| keys.contains(k))),
                });
            }
            for key in attrs.keys() {
                if key != COUNTER && !epoch.acked.contains_key(key) && !epoch.maybe.contains(key) {
                    violations.push(Violation {
                        what: format!(
                            "client {c}: node {i} holds {key}, never written to this session"
                        ),
                        ops: Vec::new(),
                    });
                }
            }
            let n = attrs.get(COUNTER).and_then(Value::as_i64).unwrap_or(0);
            let (low, high) = (epoch.acked_incr, epoch.acked_incr + epoch.maybe_incr);
            if n < low || n > high {
                violations.push(Violation {
                    what: format!(
                        "client {c}: node {i} counts {n}, expected {low}..={high} \
                         ({} acknowledged increments, {} without answer)",
                        epoch.acked_incr, epoch.maybe_incr
                    ),
                    ops: ops_of(*c, &|op| {
                        op.kind == Kind::Incr && !(200..300).contains(&op.status)
                    }),
                });
            }
        }
    }
    for ((c, _), vs) in &values {
        if vs.windows(2).any(|w| w[0] != w[1]) {
            violations.push(Violation {
                what: format!("client {c}: nodes disagree: {}", json!(vs)),
                ops: Vec::new(),
            });
        }
    }
    let dead = dead_ids(outcomes);
    let dead_ids_checked = dead.len();
    for (c, cookie) in dead {
        {
            for (i, base) in bases.iter().enumerate() {
                let v = read(http, base, cookie).await;
                if v != Some(json!({})) {
                    violations.push(Violation {
                        what: format!("client {c}: node {i} serves an ended id: {}", json!(v)),
                        ops: Vec::new(),
                    });
                }
            }
        }
    }
    Findings {
        violations,
        converged_after_ms: settled.map(millis),
        values_agreed_after_ms: converged.map(millis),
        sessions_checked: sessions.len(),
        dead_ids_checked,
    }
}

/// Operations by kind and outcome, and the share answered 2xx; only those
/// started while one of `faults` was on, when any are given.
pub fn tally(
    outcomes: &[Outcome],
    faults: &[super::Fault],
) -> (BTreeMap<String, BTreeMap<String, usize>>, f64) {
    let mut by: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let (mut ok, mut all) = (0usize, 0usize);
    let during = |op: &Op| {
        faults
            .iter()
            .any(|f| op.start_ms >= f.at_ms && op.start_ms < f.until_ms)
    };
    for op in outcomes.iter().flat_map(|o| &o.ops) {
        if !faults.is_empty() && !during(op) {
            continue;
        }
        let outcome = match op.status {
            0 => "no answer".to_owned(),
            s => s.to_string(),
        };
        *by.entry(format!("{:?}", op.kind))
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        all += 1;
        ok += usize::from((200..300).contains(&op.status));
    }
    #[allow(clippy::cast_precision_loss)]
    let share = if all == 0 {
        0.0
    } else {
        ok as f64 / all as f64
    };
    (by, share)
}

/// The report as Markdown.
pub fn markdown(title: &str, report: &Value) -> String {
    let mut md = format!("# {title}\n\n");
    let f = &report["findings"];
    let _ = writeln!(
        md,
        "- seed {}, {} s of faults, {} nodes, {} clients, replication {}",
        report["seed"],
        report["seconds"],
        report["nodes"],
        report["clients"],
        report["replication"]
    );
    let _ = writeln!(md, "- operations: {}", report["operations"]);
    let _ = writeln!(
        md,
        "- answered 2xx: {:.1} % ({:.1} % of those started during a fault)",
        report["availability"].as_f64().unwrap_or(0.0) * 100.0,
        report["availability_during_faults"].as_f64().unwrap_or(0.0) * 100.0
    );
    let _ = writeln!(
        md,
        "- the last heal: every node up again after {} ms, converged (equal fingerprints) \
         after {} ms; every session read alike on every node after {} ms",
        report["all_up_after_heal_ms"], f["converged_after_ms"], f["values_agreed_after_ms"]
    );
    let _ = writeln!(
        md,
        "- sessions checked on every node: {}; ended ids checked: {}",
        f["sessions_checked"], f["dead_ids_checked"]
    );
    let violations = f["violations"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(md, "- **violations: {}**\n", violations.len());
    let _ = writeln!(md, "## Operations\n\n| kind | outcomes |\n|---|---|");
    if let Some(kinds) = report["by_kind"].as_object() {
        for (k, v) in kinds {
            let _ = writeln!(md, "| {k} | {v} |");
        }
    }
    let _ = writeln!(
        md,
        "\n## Faults\n\n| at (ms) | fault | nodes | until (ms) |\n|---|---|---|---|"
    );
    for fault in report["faults"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            fault["at_ms"], fault["kind"], fault["nodes"], fault["until_ms"]
        );
    }
    if !violations.is_empty() {
        let _ = writeln!(md, "\n## Violations\n");
        for v in &violations {
            let _ = writeln!(md, "- {}", v["what"].as_str().unwrap_or_default());
            for op in v["ops"].as_array().into_iter().flatten().take(10) {
                let _ = writeln!(md, "  - {op}");
            }
        }
    }
    md
}
