//! `GET /metrics` of three demo peer processes after a burst of writes: the
//! series an operator alerts on are there, with values that add up.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::cookie_of;
use reqwest::{header, Client, StatusCode};

/// One scrape: every sample by its name and labels, as written.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn of(http: &Client, base: &str) -> Self {
        let res = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let kind = res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        let text = res.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse::<f64>().unwrap())
            })
            .collect();
        Self(samples)
    }

    /// The sample `name` exactly (with its labels), or 0.
    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// The sum of every sample of series `name`, whatever its labels.
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.keys().any(|k| k.starts_with(name))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_report_what_a_burst_of_writes_did() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(tempfile::TempDir::path).collect();
    let peers = common::peer_mesh(&paths, &[]).await;
    let http = Client::new();
    let a = &peers[0].base;

    // A burst of increments on A, one session.
    let first = http
        .post(format!("{a}/session/n/incr"))
        .send()
        .await
        .unwrap();
    let cookie = cookie_of(&first).unwrap();
    const BURST: usize = 100;
    for _ in 1..BURST {
        let res = http
            .post(format!("{a}/session/n/incr"))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // A write over the size limit, and an id nobody holds.
    let res = http
        .put(format!("{a}/session/big"))
        .header(header::COOKIE, &cookie)
        .body(format!("\"{}\"", "x".repeat(3 << 19)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let unknown = format!("id={}", sessionmesh::SessionId::random());
    let body = common::session_json(&http, &peers[1].base, Some(&unknown)).await;
    assert_eq!(body, serde_json::json!({}));

    // Every push acknowledged by both other peers.
    common::eventually("every push acknowledged", || async {
        let m = Scrape::of(&http, a).await;
        m.sum("sessionmesh_pushes_acked_total") >= 2.0 * m.sum("sessionmesh_commits_total")
    })
    .await;
    let m = Scrape::of(&http, a).await;
    let commits = m.sum("sessionmesh_commits_total");
    assert!(commits >= BURST as f64, "{commits} commits");
    assert_eq!(m.get("sessionmesh_commits_total{kind=\"create\"}"), 1.0);
    assert_eq!(m.get("sessionmesh_commit_seconds_count"), commits);
    assert!(m.get("sessionmesh_commit_seconds_sum") > 0.0);
    assert!(m.sum("sessionmesh_pushes_sent_total") >= 2.0 * commits);
    assert_eq!(m.sum("sessionmesh_pushes_failed_total"), 0.0);
    assert!(m.get("sessionmesh_replication_lag_seconds_count") >= 2.0 * commits);
    // Refused by the session layer before any commit.
    assert_eq!(m.sum("sessionmesh_commit_errors_total"), 0.0);
    assert!(m.get("sessionmesh_http_responses_total{code=\"200\"}") >= BURST as f64);
    assert_eq!(m.get("sessionmesh_http_responses_total{code=\"413\"}"), 1.0);
    assert_eq!(m.get("sessionmesh_peers_connected"), 2.0);
    assert_eq!(m.get("sessionmesh_sessions"), 1.0);
    assert!(m.get("sessionmesh_sessions_cached") >= 1.0);
    assert!(m.get("sessionmesh_cache_bytes") > 0.0);
    for series in [
        "sessionmesh_outbox_chunks",
        "sessionmesh_outbox_bytes",
        "sessionmesh_sweeps_total",
        "sessionmesh_tombstones_total",
        "sessionmesh_generation_switches_total",
        "sessionmesh_anti_entropy_documents_total",
    ] {
        assert!(m.has(series), "{series} missing");
    }
    // 100 increments at 64 changes per generation.
    assert!(m.get("sessionmesh_generation_switches_total") >= 1.0);

    let b = Scrape::of(&http, &peers[1].base).await;
    assert!(
        b.get("sessionmesh_pushes_received_total{outcome=\"applied\"}")
            + b.get("sessionmesh_pushes_received_total{outcome=\"deferred\"}")
            >= commits,
        "B received fewer chunks than A committed"
    );
    assert_eq!(b.get("sessionmesh_fetches_total{outcome=\"miss\"}"), 1.0);
    assert_eq!(b.get("sessionmesh_sessions"), 1.0);
    // One end of each new connection starts anti-entropy at once.
    let rounds: f64 = {
        let mut n = 0.0;
        for p in &peers {
            n += Scrape::of(&http, &p.base)
                .await
                .sum("sessionmesh_anti_entropy_rounds_total");
        }
        n
    };
    assert!(rounds >= 3.0, "{rounds} anti-entropy rounds");
}
