//! Per-request cost of the session middleware through the whole tower stack
//! (no socket), and what one commit costs as a session's history grows.
//!
//! - `request/no_session`: the same router without a session: the floor.
//! - `request/read_2_attrs`: a session read (load from the cache, touch check).
//! - `request/read_2_attrs_incr`: two reads and a counter increment: one
//!   automerge commit persisted to RocksDB. Each session serves 50 such
//!   requests and is then replaced by a new one (its creation is measured
//!   too), so histories stay short, as in a real session.
//! - `store/commit_process`, `store/commit_fsync`: one attribute written
//!   through `Node::commit` — automerge commit plus the RocksDB write batch,
//!   with `Durability::Process` and with `Durability::Fsync`.
//! - `commit/history_N`: one increment, commit and change extraction on a
//!   bare automerge document that already holds N changes. automerge keeps
//!   all history and both steps walk it, so this grows with N.
//! - `age/commit_replicate_N`: one increment through `Node::commit` on a
//!   session already written N times, answered once a second node (over
//!   TCP on 127.0.0.1, `Replication::Sync { acks: 1 }`) persisted it.
//!   Generations keep a session's documents small whatever its age, so
//!   N = 10,000 costs what N = 10 does.
//!
//! Run with: `cargo bench --bench middleware`

#![allow(clippy::unwrap_used)]

#[path = "compare/repl.rs"]
#[allow(dead_code)]
mod repl;

use std::cell::RefCell;

use automerge::ActorId;
use axum::body::Body;
use axum::http::{header, Request};
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sessionmesh::doc::SessionDoc;
use sessionmesh::http::{Session, SessionLayer};
use sessionmesh::{Config, Node, NodeId};
use tower::ServiceExt;

/// The allocator every bench here runs with (see BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUESTS_PER_SESSION: usize = 50;

async fn read(session: Session) -> String {
    let a = session
        .get::<String>("a")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let b = session
        .get::<i64>("b")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    format!("{a}{b}")
}

async fn read_write(session: Session) -> Result<String, sessionmesh::Error> {
    let a = session.get::<String>("a").await?.unwrap_or_default();
    let b = session.get::<i64>("b").await?.unwrap_or_default();
    let n = session.increment("n", 1).await?;
    Ok(format!("{a}{b}{n}"))
}

async fn seed(node: &Node) -> String {
    let app = Router::new()
        .route(
            "/",
            get(|s: Session| async move {
                s.insert("a", "alpha").await?;
                s.insert("b", 2).await
            }),
        )
        .layer(SessionLayer::new(node.clone()));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn request(app: &Router, cookie: &str) {
    let req = Request::get("/")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert!(res.status().is_success());
}

fn requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = rt.block_on(Node::open(Config::new(dir.path()))).unwrap();
    let cookie = rt.block_on(seed(&node));
    let bare = Router::new().route("/", get(|| async { "alpha2" }));
    let layer = SessionLayer::new(node.clone());
    let reads = Router::new().route("/", get(read)).layer(layer.clone());
    let writes = Router::new().route("/", get(read_write)).layer(layer);

    let mut group = c.benchmark_group("request");
    group.bench_function("no_session", |b| {
        b.iter(|| rt.block_on(request(&bare, &cookie)));
    });
    group.bench_function("read_2_attrs", |b| {
        b.iter(|| rt.block_on(request(&reads, &cookie)));
    });
    let current = RefCell::new((cookie.clone(), 0usize));
    group.bench_function("read_2_attrs_incr", |b| {
        b.iter(|| {
            rt.block_on(async {
                if current.borrow().1 == REQUESTS_PER_SESSION {
                    let fresh = seed(&node).await;
                    *current.borrow_mut() = (fresh, 0);
                }
                let cookie = {
                    let mut cur = current.borrow_mut();
                    cur.1 += 1;
                    cur.0.clone()
                };
                request(&writes, &cookie).await;
            });
        });
    });
    group.finish();
    rt.block_on(node.shutdown()).unwrap();
}

fn commits(c: &mut Criterion) {
    let node = NodeId::random();
    let mut group = c.benchmark_group("commit");
    group.sample_size(20);
    for history in [10usize, 100, 1_000, 10_000] {
        let mut doc = SessionDoc::new(ActorId::random(), node, 0, 0, 0);
        doc.insert("a", &"alpha").unwrap();
        for _ in 0..history {
            doc.increment("n", 1, node).unwrap();
            doc.commit();
        }
        group.bench_function(format!("incr_only_{history}"), |b| {
            b.iter_batched(
                || doc.clone(),
                |mut d| {
                    d.increment("n", 1, node).unwrap();
                    d.commit()
                },
                BatchSize::LargeInput,
            );
        });
        group.bench_function(format!("save_after_only_{history}"), |b| {
            b.iter_batched(
                || {
                    let mut d = doc.clone();
                    let heads = d.heads();
                    d.increment("n", 1, node).unwrap();
                    d.commit();
                    (d, heads)
                },
                |(mut d, heads)| d.save_after(&heads),
                BatchSize::LargeInput,
            );
        });
        group.bench_function(format!("apply_{history}"), |b| {
            let mut src = doc.clone();
            let heads = src.heads();
            src.increment("n", 1, node).unwrap();
            src.commit();
            let chunk = src.save_after(&heads);
            b.iter_batched(
                || doc.fork_as(ActorId::random()),
                |mut d| d.apply_change_chunk(&chunk).unwrap(),
                BatchSize::LargeInput,
            );
        });
        group.bench_function(format!("history_{history}"), |b| {
            b.iter_batched(
                || doc.clone(),
                |mut d| {
                    let heads = d.heads();
                    d.increment("n", 1, node).unwrap();
                    d.commit();
                    d.save_after(&heads)
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn store_writes(c: &mut Criterion) {
    use sessionmesh::doc::Op;
    use sessionmesh::{Durability, SessionId};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("store");
    for (name, durability) in [
        ("commit_process", Durability::Process),
        ("commit_fsync", Durability::Fsync),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let node = rt
            .block_on(Node::open(
                Config::new(dir.path()).with_durability(durability),
            ))
            .unwrap();
        let mut id = SessionId::random();
        let mut writes = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    // A fresh session every 50 writes keeps histories session-sized.
                    if writes.is_multiple_of(REQUESTS_PER_SESSION) {
                        id = SessionId::random();
                        node.create(&id, &[]).await.unwrap();
                    }
                    writes += 1;
                    let op = Op::Insert {
                        key: "k".into(),
                        json: writes.to_string(),
                    };
                    node.commit(&id, &[op]).await.unwrap().unwrap();
                });
            });
        });
        rt.block_on(node.shutdown()).unwrap();
    }
    group.finish();
}

/// Loading a small session from disk: as change chunks (what the log
/// holds) and as one `save()` snapshot (what compaction writes).
fn loads(c: &mut Criterion) {
    let node = NodeId::random();
    let mut group = c.benchmark_group("load");
    for changes in [1usize, 3] {
        let mut doc = SessionDoc::new(ActorId::random(), node, 0, 0, 0);
        let mut chunks = Vec::new();
        // The first change as a snapshot, the rest as chunks.
        let mut mixed = Vec::new();
        let mut heads = Vec::new();
        for c in 0..changes {
            for k in 0..10 / changes {
                doc.insert(&format!("k{c}_{k}"), &"some value of a session")
                    .unwrap();
            }
            doc.commit();
            let chunk = doc.save_after(&heads);
            if c == 0 {
                mixed = doc.save();
            } else {
                mixed.extend_from_slice(&chunk);
            }
            chunks.extend(chunk);
            heads = doc.heads();
        }
        let snapshot = doc.save();
        group.bench_function(format!("chunks_{changes}"), |b| {
            b.iter(|| SessionDoc::load(&chunks, ActorId::random()).unwrap());
        });
        group.bench_function(format!("snapshot_{changes}"), |b| {
            b.iter(|| SessionDoc::load(&snapshot, ActorId::random()).unwrap());
        });
        if changes > 1 {
            group.bench_function(format!("snapshot_then_chunks_{changes}"), |b| {
                b.iter(|| SessionDoc::load(&mixed, ActorId::random()).unwrap());
            });
        }
    }
    group.finish();
}

/// A sync exchange (fresh states, to quiet) where one side lacks half of
/// the other's `n` changes: automerge's default, which sends the whole
/// document once the peer lacks a third of the changes, against changes
/// only (what `SessionDoc::generate_sync_message` does for a peer that has
/// something).
fn syncs(c: &mut Criterion) {
    use automerge::sync::{Capability, State, SyncDoc};
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};
    fn exchange(a: &mut AutoCommit, b: &mut AutoCommit, changes_only: bool) {
        let (mut sa, mut sb) = (State::new(), State::new());
        let strip = |st: &mut State| {
            if changes_only && st.their_heads.as_ref().is_some_and(|h| !h.is_empty()) {
                if let Some(caps) = &mut st.their_capabilities {
                    caps.retain(|c| *c != Capability::MessageV2);
                }
            }
        };
        for _ in 0..10 {
            strip(&mut sa);
            let m1 = a.sync().generate_sync_message(&mut sa);
            if let Some(m) = m1.clone() {
                b.sync().receive_sync_message(&mut sb, m).unwrap();
            }
            strip(&mut sb);
            let m2 = b.sync().generate_sync_message(&mut sb);
            if let Some(m) = m2.clone() {
                a.sync().receive_sync_message(&mut sa, m).unwrap();
            }
            if m1.is_none() && m2.is_none() {
                break;
            }
        }
    }
    let mut group = c.benchmark_group("sync");
    group.sample_size(20);
    for n in [4usize, 16, 64, 256, 1_024] {
        let mut a = AutoCommit::new();
        for i in 0..n / 2 {
            a.put(ROOT, format!("k{}", i % 10), i as i64).unwrap();
            a.commit();
        }
        let b = a.fork();
        for i in n / 2..n {
            a.put(ROOT, format!("k{}", i % 10), i as i64).unwrap();
            a.commit();
        }
        for (name, changes_only) in [("document", false), ("changes", true)] {
            group.bench_function(format!("{name}_{n}"), |bench| {
                bench.iter_batched(
                    || (a.clone(), b.clone()),
                    |(mut a, mut b)| exchange(&mut a, &mut b, changes_only),
                    BatchSize::LargeInput,
                );
            });
        }
    }
    group.finish();
}

/// One increment on `node`'s session `id`, replicated before it returns.
async fn replicated_incr(node: &Node, id: &sessionmesh::SessionId) {
    let op = sessionmesh::doc::Op::Increment {
        key: "n".into(),
        by: 1,
    };
    node.commit(id, &[op]).await.unwrap().unwrap();
}

fn ages(c: &mut Criterion) {
    use sessionmesh::net::Replication;
    use sessionmesh::SessionId;
    use std::time::{Duration, Instant};
    const YOUNG: usize = 10;
    const OLD: usize = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let sync = Replication::Sync { acks: 1 };
    let (a, b) = rt.block_on(async {
        let a = repl::node(dirs[0].path(), sync).await;
        let b = repl::node(dirs[1].path(), sync).await;
        repl::connect(&[&a, &b]).await;
        (a, b)
    });
    let old = SessionId::random();
    rt.block_on(async {
        a.create(&old, &[]).await.unwrap();
        for _ in 1..OLD {
            replicated_incr(&a, &old).await;
        }
    });
    let mut group = c.benchmark_group("age");
    group.sample_size(20);
    group.bench_function(format!("commit_replicate_{YOUNG}"), |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // A session written YOUNG times; timed for YOUNG more.
                    let id = SessionId::random();
                    a.create(&id, &[]).await.unwrap();
                    for _ in 1..YOUNG {
                        replicated_incr(&a, &id).await;
                    }
                    for _ in 0..(iters - done).min(YOUNG as u64) {
                        let t = Instant::now();
                        replicated_incr(&a, &id).await;
                        spent += t.elapsed();
                        done += 1;
                    }
                }
                spent
            })
        });
    });
    group.bench_function(format!("commit_replicate_{OLD}"), |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    replicated_incr(&a, &old).await;
                }
                t.elapsed()
            })
        });
    });
    group.finish();
    rt.block_on(async {
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    });
}

criterion_group!(benches, requests, store_writes, commits, loads, syncs, ages);
criterion_main!(benches);
