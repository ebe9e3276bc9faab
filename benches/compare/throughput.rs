//! Requests per second through axum over HTTP on loopback, with keep-alive
//! clients that each hold their own session and keep every cookie a server
//! sets, as a browser does (sessionmesh's session token included). The
//! same client and handler logic for every system. Workloads: every request
//! reads two attributes and increments a counter (`/hit`); every request
//! only reads (`/read`); nine reads to one read-and-increment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

/// What each client's requests do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// Read two attributes and increment a counter, every request.
    Increment,
    /// Read two attributes, every request.
    ReadOnly,
    /// Nine reads, then one read-and-increment.
    Mix90,
}

impl Workload {
    /// The route of a client's `n`-th request.
    pub(crate) fn route(self, n: u64) -> &'static str {
        match self {
            Self::Increment => "/hit",
            Self::Mix90 if n % 10 == 9 => "/hit",
            Self::ReadOnly | Self::Mix90 => "/read",
        }
    }
}

/// The seed route (`/seed`) and the measured routes (`/hit`, `/read`) for
/// sessionmesh.
pub(crate) fn sessionmesh_app(node: sessionmesh::Node) -> Router {
    use sessionmesh::http::{Session, SessionLayer};
    Router::new()
        .route(
            "/read",
            get(|s: Session| async move {
                let a = s.get::<String>("a").await?.unwrap_or_default();
                let b = s.get::<i64>("b").await?.unwrap_or_default();
                Ok::<_, sessionmesh::Error>(format!("{a}{b}"))
            }),
        )
        .route(
            "/seed",
            get(|s: Session| async move {
                s.insert("a", "alpha").await?;
                s.insert("b", 2).await?;
                Ok::<_, sessionmesh::Error>("seeded")
            }),
        )
        .route(
            "/hit",
            get(|s: Session| async move {
                let a = s.get::<String>("a").await?.unwrap_or_default();
                let b = s.get::<i64>("b").await?.unwrap_or_default();
                let n = s.increment("n", 1).await?;
                Ok::<_, sessionmesh::Error>(format!("{a}{b}{n}"))
            }),
        )
        .layer(SessionLayer::new(node).with_secure(false))
}

/// The same routes for tower-sessions with any store.
pub(crate) fn tower_sessions_app<S: tower_sessions_014::SessionStore + Clone>(store: S) -> Router {
    use tower_sessions_014::{Session, SessionManagerLayer};
    let fail = |e: tower_sessions_014::session::Error| {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    };
    Router::new()
        .route(
            "/read",
            get(move |s: Session| async move {
                let a = s
                    .get::<String>("a")
                    .await
                    .map_err(fail)?
                    .unwrap_or_default();
                let b = s.get::<i64>("b").await.map_err(fail)?.unwrap_or_default();
                Ok::<_, (axum::http::StatusCode, String)>(format!("{a}{b}"))
            }),
        )
        .route(
            "/seed",
            get(move |s: Session| async move {
                s.insert("a", "alpha").await.map_err(fail)?;
                s.insert("b", 2).await.map_err(fail)?;
                Ok::<_, (axum::http::StatusCode, String)>("seeded")
            }),
        )
        .route(
            "/hit",
            get(move |s: Session| async move {
                let a = s
                    .get::<String>("a")
                    .await
                    .map_err(fail)?
                    .unwrap_or_default();
                let b = s.get::<i64>("b").await.map_err(fail)?.unwrap_or_default();
                let n = s.get::<i64>("n").await.map_err(fail)?.unwrap_or_default() + 1;
                s.insert("n", n).await.map_err(fail)?;
                Ok::<_, (axum::http::StatusCode, String)>(format!("{a}{b}{n}"))
            }),
        )
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

/// Serves `app` on a free loopback port until the returned handle is dropped.
pub(crate) async fn serve(app: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// What one closed-loop run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    /// Answered (2xx) requests per second.
    pub(crate) rps: f64,
    /// CPU time (user + system) of this process and of `pids` during the
    /// counted run, per answered request, in µs: clients included, which
    /// cost the same for every system.
    pub(crate) cpu_us: f64,
}

/// CPU seconds (user + system) used so far by this process and `pids`,
/// from `/proc/<pid>/stat` (what `getrusage` reports, for other processes
/// too).
pub(crate) fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks = |path: String| -> u64 {
        let stat = std::fs::read_to_string(path).unwrap_or_default();
        // Fields after the command name (which may hold spaces): state is
        // the first, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(11) + field(12)
    };
    let mut total = ticks("/proc/self/stat".into());
    for pid in pids {
        total += ticks(format!("/proc/{pid}/stat"));
    }
    total as f64 / clock_ticks_per_second()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Runs `clients` keep-alive clients against `addr` for `warmup` + `run`;
/// returns the requests per second over `run` and the CPU they took (this
/// process's and `pids`').
/// With `renew_every`, a client starts a new session (one `/seed`
/// request, not counted) after that many requests.
pub(crate) async fn measure(
    addr: SocketAddr,
    clients: usize,
    (warmup, run): (Duration, Duration),
    renew_every: Option<u64>,
    workload: Workload,
    pids: &[u32],
) -> Measured {
    let count = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (count, counting, stop) =
            (Arc::clone(&count), Arc::clone(&counting), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut jar = Jar::default();
            seed(&http, addr, &mut jar).await;
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if renew_every.is_some_and(|n| made >= n) {
                    jar = Jar::default();
                    seed(&http, addr, &mut jar).await;
                    made = 0;
                }
                let route = workload.route(made);
                made += 1;
                let res = http
                    .get(format!("http://{addr}{route}"))
                    .header(reqwest::header::COOKIE, jar.header())
                    .send()
                    .await;
                if let Ok(r) = res {
                    jar.keep(&r);
                    let ok = r.status().is_success();
                    let _ = r.bytes().await;
                    if ok && counting.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let cpu_before = cpu_seconds(pids);
    tokio::time::sleep(run).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = cpu_seconds(pids) - cpu_before;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let answered = count.load(Ordering::Relaxed) as f64;
    Measured {
        rps: answered / elapsed.as_secs_f64(),
        cpu_us: cpu * 1e6 / answered.max(1.0),
    }
}

/// A client's cookies, kept as a browser keeps them.
#[derive(Debug, Default)]
pub(crate) struct Jar {
    cookies: BTreeMap<String, String>,
}

impl Jar {
    /// The `Cookie` header to send.
    pub(crate) fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps (or drops) what a response's `Set-Cookie` headers say.
    pub(crate) fn keep(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }
}

/// A new session in `jar`.
pub(crate) async fn seed(http: &reqwest::Client, addr: SocketAddr, jar: &mut Jar) {
    let seed = http
        .get(format!("http://{addr}/seed"))
        .send()
        .await
        .unwrap();
    jar.keep(&seed);
    assert!(jar.cookies.contains_key("id"), "seed sets a session cookie");
}
