//! Requests per second of one handler — read two attributes, increment a
//! counter — through axum over HTTP on loopback, with keep-alive clients
//! that each hold their own session. The same client and handler logic for
//! every system.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

/// The seed route (`/seed`) and the measured route (`/hit`) for sessionmesh.
pub(crate) fn sessionmesh_app(node: sessionmesh::Node) -> Router {
    use sessionmesh::http::{Session, SessionLayer};
    Router::new()
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

/// Runs `clients` keep-alive clients against `addr` for `warmup` + `run`
/// and returns the requests per second over `run`.
/// With `renew_every`, a client starts a new session (one `/seed`
/// request, not counted) after that many requests.
pub(crate) async fn measure(
    addr: SocketAddr,
    clients: usize,
    warmup: Duration,
    run: Duration,
    renew_every: Option<u64>,
) -> f64 {
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
            let mut cookie = seed(&http, addr).await;
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if renew_every.is_some_and(|n| made >= n) {
                    cookie = seed(&http, addr).await;
                    made = 0;
                }
                made += 1;
                let res = http
                    .get(format!("http://{addr}/hit"))
                    .header(reqwest::header::COOKIE, &cookie)
                    .send()
                    .await;
                if let Ok(r) = res {
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
    tokio::time::sleep(run).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// A new session: its cookie.
async fn seed(http: &reqwest::Client, addr: SocketAddr) -> String {
    let seed = http
        .get(format!("http://{addr}/seed"))
        .send()
        .await
        .unwrap();
    seed.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("id="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .expect("seed sets a session cookie")
}
