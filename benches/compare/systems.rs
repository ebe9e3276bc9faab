//! The systems compared, each started fresh for one measurement and
//! stopped after it: sessionmesh (3 nodes async, 3 nodes sync with one
//! ack, a single node), tower-sessions with `MemoryStore`, with Redis
//! (no persistence), and with Redis under guarantees like sessionmesh's
//! (append-only file written without fsync, and two replicas that persist
//! too).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use sessionmesh::net::Replication;
use sessionmesh::{Config, Node};

use crate::{repl, throughput};

/// One system of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum System {
    Mesh,
    MeshSync,
    MeshSingle,
    Memory,
    Redis,
    RedisReplicated,
}

impl System {
    pub(crate) const ALL: [System; 6] = [
        System::Mesh,
        System::MeshSync,
        System::MeshSingle,
        System::Memory,
        System::Redis,
        System::RedisReplicated,
    ];

    /// The system's key in `compare.json`.
    pub(crate) fn key(self) -> &'static str {
        match self {
            System::Mesh => "sessionmesh",
            System::MeshSync => "sessionmesh_sync",
            System::MeshSingle => "sessionmesh_single",
            System::Memory => "tower_sessions_memory",
            System::Redis => "tower_sessions_redis",
            System::RedisReplicated => "tower_sessions_redis_replicated",
        }
    }

    /// The system's name in tables and plots.
    pub(crate) fn label(self) -> &'static str {
        match self {
            System::Mesh => "sessionmesh, 3 nodes, async",
            System::MeshSync => "sessionmesh, 3 nodes, sync (1 ack)",
            System::MeshSingle => "sessionmesh, 1 node",
            System::Memory => "tower-sessions + MemoryStore",
            System::Redis => "tower-sessions + Redis",
            System::RedisReplicated => "tower-sessions + Redis, AOF + 2 replicas",
        }
    }

    /// Starts the system: the app to serve and what to stop afterwards;
    /// `None` (and why, on stderr) when Redis is not installed.
    pub(crate) async fn start(self) -> Option<Running> {
        match self {
            System::Mesh => Some(mesh(3, Replication::Async).await),
            System::MeshSync => Some(mesh(3, Replication::Sync { acks: 1 }).await),
            System::MeshSingle => Some(mesh(1, Replication::Async).await),
            System::Memory => Some(Running {
                app: throughput::tower_sessions_app(tower_sessions_014::MemoryStore::default()),
                nodes: Vec::new(),
                redis: Vec::new(),
                dirs: Vec::new(),
            }),
            System::Redis => redis(false).await,
            System::RedisReplicated => redis(true).await,
        }
    }
}

/// A started system.
pub(crate) struct Running {
    pub(crate) app: Router,
    nodes: Vec<Node>,
    redis: Vec<Child>,
    dirs: Vec<tempfile::TempDir>,
}

impl Running {
    /// The Redis servers' process ids: their CPU time counts as the
    /// system's too.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.redis.iter().map(Child::id).collect()
    }

    pub(crate) async fn stop(mut self) {
        for n in &self.nodes {
            n.shutdown().await.unwrap();
        }
        for c in &mut self.redis {
            let _ = c.kill();
            let _ = c.wait();
        }
        drop(self.dirs);
    }
}

/// `n` sessionmesh nodes, connected; the app serves through the first.
async fn mesh(n: usize, replication: Replication) -> Running {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    if n == 1 {
        nodes.push(Node::open(Config::new(dirs[0].path())).await.unwrap());
    } else {
        for d in &dirs {
            nodes.push(repl::node(d.path(), replication).await);
        }
        repl::connect(&nodes.iter().collect::<Vec<_>>()).await;
    }
    Running {
        app: throughput::sessionmesh_app(nodes[0].clone()),
        nodes,
        redis: Vec::new(),
        dirs,
    }
}

/// tower-sessions on Redis: one server without persistence, or a primary
/// with an append-only file (`appendfsync no`: written at once, synced by
/// the OS, as sessionmesh's default durability) and two replicas doing
/// the same.
async fn redis(replicated: bool) -> Option<Running> {
    use tower_sessions_redis_store::fred::prelude::*;
    let mut children = Vec::new();
    let mut dirs = Vec::new();
    let persist: &[&str] = if replicated {
        &["--appendonly", "yes", "--appendfsync", "no"]
    } else {
        &["--appendonly", "no"]
    };
    let dir = tempfile::tempdir().unwrap();
    let (primary, port) = match start_redis(dir.path(), persist) {
        Ok(r) => r,
        Err(why) => {
            eprintln!("tower-sessions + Redis skipped: {why}");
            return None;
        }
    };
    children.push(primary);
    dirs.push(dir);
    if replicated {
        for _ in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            let mut args = persist.to_vec();
            let of = format!("127.0.0.1 {port}");
            args.extend(["--replicaof", &of]);
            let (replica, replica_port) = start_redis(dir.path(), &args).unwrap();
            wait_replicating(replica_port);
            children.push(replica);
            dirs.push(dir);
        }
    }
    let config = Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap();
    let pool = Pool::new(config, None, None, None, 4).unwrap();
    let _conn = pool.connect();
    pool.wait_for_connect().await.unwrap();
    Some(Running {
        app: throughput::tower_sessions_app(tower_sessions_redis_store::RedisStore::new(pool)),
        nodes: Vec::new(),
        redis: children,
        dirs,
    })
}

/// A `redis-server` on a free loopback port with its files in `dir`, or
/// why there is none.
fn start_redis(dir: &Path, extra: &[&str]) -> Result<(Child, u16), String> {
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
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
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

/// Waits until the replica on `port` has its link to the primary up.
fn wait_replicating(port: u16) {
    use std::io::{Read as _, Write as _};
    for _ in 0..200 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"INFO replication\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        if String::from_utf8_lossy(&buf[..n]).contains("master_link_status:up") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the Redis replica on port {port} never linked to its primary");
}
