//! The nemesis's network: one Linux network namespace per node, each joined
//! by a veth pair to a bridge in the host namespace, on a private /24 that
//! exists only on this machine. Partitions are blackhole routes inside the
//! namespaces. Everything is removed on drop, and leftovers of a run that
//! was killed are removed before a new one starts.

use std::net::Ipv4Addr;
use std::process::Command;

/// Prefix of every namespace, bridge and interface the harness creates.
const PREFIX: &str = "smn";

/// Runs `ip` with `args`; panics with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip` with `args`, ignoring failure (cleanup).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

/// The namespaces and the bridge of one run.
#[derive(Debug)]
pub struct Net {
    tag: String,
    pub nodes: usize,
    subnet: u8,
}

impl Net {
    /// Whether this process may create namespaces (it must be root).
    pub fn root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    /// Removes what earlier runs left behind (namespaces and bridges with the
    /// harness's prefix whose process is gone).
    pub fn sweep_leftovers() {
        Self::sweep_where(|pid| !alive(pid));
    }

    fn sweep_where(gone: impl Fn(u32) -> bool) {
        let out = Command::new("ip").args(["netns", "list"]).output();
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if owner(name).is_some_and(&gone) {
                    // Processes of a run that was killed still live there.
                    if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
                        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                            let _ = Command::new("kill").args(["-9", pid]).output();
                        }
                    }
                    ip_quiet(&["netns", "del", name]);
                }
            }
        }
        let out = Command::new("ip").args(["-o", "link", "show"]).output();
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line
                    .split(':')
                    .nth(1)
                    .unwrap_or_default()
                    .trim()
                    .split('@')
                    .next()
                    .unwrap_or_default();
                if owner(name).is_some_and(&gone) {
                    ip_quiet(&["link", "del", name]);
                }
            }
        }
    }

    /// Removes every namespace and link of this process (on interrupt).
    pub fn remove_own() {
        let own = std::process::id();
        Self::sweep_where(|pid| pid == own);
    }

    /// `nodes` namespaces on a bridge.
    pub fn create(nodes: usize) -> Self {
        let pid = std::process::id();
        let tag = format!("{PREFIX}{pid}");
        // 10.77.x.0/24, x from the pid: two runs at once do not collide.
        let subnet = u8::try_from(pid % 200).unwrap_or(0) + 20;
        let net = Self { tag, nodes, subnet };
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{}/24", net.host()), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..nodes {
            let ns = net.ns(i);
            let (outer, inner) = (format!("{}h{i}", net.tag), format!("{}n{i}", net.tag));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge]);
            ip(&["link", "set", &outer, "up"]);
            let addr = format!("{}/24", net.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    /// The host's address on the bridge.
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 10 + u8::try_from(i).unwrap_or(0))
    }

    /// Makes the network exactly this: node `i` reaches node `j` iff
    /// `reach(i, j)` (symmetric by construction of the callers). Every node
    /// always reaches the host (the load balancer and the checker).
    pub fn set_reach(&self, reach: impl Fn(usize, usize) -> bool) {
        for i in 0..self.nodes {
            for j in 0..self.nodes {
                if i == j {
                    continue;
                }
                let route = format!("{}/32", self.addr(j));
                ip_quiet(&["-n", &self.ns(i), "route", "del", "blackhole", &route]);
                if !reach(i, j) {
                    ip(&["-n", &self.ns(i), "route", "add", "blackhole", &route]);
                }
            }
        }
    }

    /// Every node reaches every other.
    pub fn heal(&self) {
        self.set_reach(|_, _| true);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            ip_quiet(&["netns", "del", &self.ns(i)]);
            ip_quiet(&["link", "del", &format!("{}h{i}", self.tag)]);
        }
        ip_quiet(&["link", "del", &self.bridge()]);
    }
}

/// The pid in a name the harness made (`smn<pid>...`).
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
