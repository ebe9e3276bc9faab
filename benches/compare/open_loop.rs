//! Latency at a fixed offered rate: an open-loop load generator. Requests
//! are scheduled on a clock (one every `1 / rate` seconds, spread over
//! `users` browser-like cookie jars in turn) and each is timed from the
//! moment it was scheduled, not from when it was sent: a slow answer that
//! delays the requests behind it shows in their latency too, where a
//! closed loop would simply send fewer of them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::repl::percentile;
use crate::throughput::{seed, Jar, Workload};

/// The latency figures of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) p999: Duration,
    /// Requests that failed, timed out (10 s) or were not answered 2xx:
    /// left out of the percentiles, reported beside them.
    pub(crate) errors: usize,
}

impl Latency {
    pub(crate) fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        serde_json::json!({
            "p50": ms(self.p50),
            "p99": ms(self.p99),
            "p999": ms(self.p999),
            "errors": self.errors,
        })
    }
}

/// Offers `rate` requests per second to `addr` for `warmup` + `run`
/// (`workload`'s routes; each user starts a new session every `renew`
/// requests, its sessions seeded before the clock starts) and returns the
/// latencies of those scheduled during `run`.
pub(crate) async fn latency(
    addr: SocketAddr,
    users: usize,
    rate: f64,
    (warmup, run): (Duration, Duration),
    renew: Option<u64>,
    workload: Workload,
) -> Latency {
    let total = (rate * (warmup + run).as_secs_f64()) as usize;
    let per_user = total.div_ceil(users) as u64;
    let sessions = renew.map_or(1, |r| per_user.div_ceil(r)) as usize;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Every user's sessions, seeded up front (users in parallel).
    let mut seeding = Vec::new();
    for _ in 0..users {
        let http = http.clone();
        seeding.push(tokio::spawn(async move {
            let mut jars = Vec::with_capacity(sessions);
            for _ in 0..sessions {
                let mut jar = Jar::default();
                seed(&http, addr, &mut jar).await;
                jars.push(Arc::new(Mutex::new(jar)));
            }
            jars
        }));
    }
    let mut jars: Vec<Vec<Arc<Mutex<Jar>>>> = Vec::new();
    for s in seeding {
        jars.push(s.await.unwrap());
    }

    let handle = tokio::runtime::Handle::current();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let measured_from = start + warmup;
    // The dispatcher sleeps on a thread of its own: the runtime's timer
    // ticks in whole milliseconds, coarser than the gaps between requests.
    let dispatcher = tokio::task::spawn_blocking(move || {
        let mut requests = Vec::with_capacity(total);
        for i in 0..total {
            let at = start + interval * u32::try_from(i).unwrap();
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            let user = i % users;
            let n = (i / users) as u64;
            let (session, made) = renew.map_or((0, n), |r| ((n / r) as usize, n % r));
            let jar = Arc::clone(&jars[user][session]);
            let url = format!("http://{addr}{}", workload.route(made));
            let http = http.clone();
            requests.push((
                at,
                handle.spawn(async move {
                    let cookie = jar.lock().unwrap().header();
                    let res = http
                        .get(url)
                        .header(reqwest::header::COOKIE, cookie)
                        .send()
                        .await;
                    let ok = match res {
                        Ok(r) => {
                            jar.lock().unwrap().keep(&r);
                            let ok = r.status().is_success();
                            ok && r.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    (at.elapsed(), ok)
                }),
            ));
        }
        requests
    });
    let mut times = Vec::with_capacity(total);
    let mut errors = 0;
    for (at, request) in dispatcher.await.unwrap() {
        let (took, ok) = request.await.unwrap();
        if at < measured_from {
            continue;
        }
        if ok {
            times.push(took);
        } else {
            errors += 1;
        }
    }
    times.sort();
    if times.is_empty() {
        times.push(Duration::MAX);
    }
    Latency {
        p50: percentile(&times, 500),
        p99: percentile(&times, 990),
        p999: percentile(&times, 999),
        errors,
    }
}
