//! Browser-like clients through the load balancer: each keeps its cookies
//! like a browser, writes keys only it writes, increments its session's
//! counter, reads, rotates its id, logs out and starts over. Every
//! operation is recorded with its times and answer; what each session must
//! hold at the end is tracked as acknowledged (2xx) or maybe (no answer,
//! or an error that does not say whether the write applied).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Client, Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::rng::Rng;

/// The counter every session increments.
pub const COUNTER: &str = "n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Put,
    Incr,
    Read,
    Cycle,
    Invalidate,
    NewSession,
}

/// One operation as the client saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub client: usize,
    pub kind: Kind,
    pub key: Option<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    /// 0: no answer (timeout, connection reset).
    pub status: u16,
    /// The node haproxy sent it to (`n0`…).
    pub served_by: Option<String>,
}

/// One session's life at one client, from its first write to its end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Epoch {
    /// False once an operation left the session's id unknown (a rotation or
    /// logout without an answer): its end state is not checked.
    pub certain: bool,
    /// Ended by an acknowledged logout: its id is checked as dead instead.
    pub ended: bool,
    /// `id=…` of the session, once a response set it.
    pub cookie: Option<String>,
    /// Keys answered 204, with the node that answered and when.
    pub acked: BTreeMap<String, (Option<String>, u64)>,
    /// Keys whose write got no clear answer.
    pub maybe: BTreeSet<String>,
    pub acked_incr: i64,
    pub maybe_incr: i64,
    /// Increments answered 200, with the node and time (async-mode losses).
    pub incr_log: Vec<(Option<String>, u64)>,
}

/// What one client did and saw.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub ops: Vec<Op>,
    /// Every session the client lived in; the last is current.
    pub epochs: Vec<Epoch>,
    /// Cookies of sessions that ended with an acknowledged rotation or
    /// logout: no node may serve them data again.
    pub dead: Vec<String>,
    /// What the client saw go wrong as it happened: data of another session,
    /// a read older than its own acknowledged writes, its session replaced
    /// by a fresh one (all violations).
    pub seen: Vec<String>,
}

/// The client's cookie jar: name → value.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let pair = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let removed = v.contains("Max-Age=0") || value.is_empty();
            if removed {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn id(&self) -> Option<String> {
        self.0.get("id").map(|v| format!("id={v}"))
    }
}

/// Runs client `c` until `deadline` or `max_ops`.
pub async fn run(
    c: usize,
    seed: u64,
    front: String,
    epoch0: Instant,
    deadline: Instant,
    max_ops: usize,
) -> Outcome {
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut rng = Rng::new(seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut jar = Jar::default();
    let mut out = Outcome {
        epochs: vec![Epoch {
            certain: true,
            ..Epoch::default()
        }],
        ..Outcome::default()
    };
    let ms = |t: Instant| u64::try_from(t.duration_since(epoch0).as_millis()).unwrap_or(u64::MAX);
    for n in 0..max_ops {
        if Instant::now() >= deadline {
            break;
        }
        let roll = rng.below(100);
        let (kind, method, path, body, key) = match roll {
            0..=44 => {
                let key = format!("c{c}-e{}-{n}", out.epochs.len() - 1);
                (
                    Kind::Put,
                    Method::PUT,
                    format!("/session/{key}"),
                    n.to_string(),
                    Some(key),
                )
            }
            45..=69 => (
                Kind::Incr,
                Method::POST,
                format!("/session/{COUNTER}/incr"),
                String::new(),
                None,
            ),
            70..=89 => (
                Kind::Read,
                Method::GET,
                "/session".to_owned(),
                String::new(),
                None,
            ),
            90..=94 => (
                Kind::Cycle,
                Method::POST,
                "/session/cycle".to_owned(),
                String::new(),
                None,
            ),
            95..=97 => (
                Kind::Invalidate,
                Method::POST,
                "/session/invalidate".to_owned(),
                String::new(),
                None,
            ),
            _ => (
                Kind::NewSession,
                Method::GET,
                String::new(),
                String::new(),
                None,
            ),
        };
        if kind == Kind::NewSession {
            jar = Jar::default();
            out.epochs.push(Epoch {
                certain: true,
                ..Epoch::default()
            });
            continue;
        }
        let before = jar.id();
        let start = Instant::now();
        let mut req = http.request(method, format!("{front}{path}")).body(body);
        if !jar.0.is_empty() {
            req = req.header(COOKIE, jar.header());
        }
        let res = req.send().await;
        let end = Instant::now();
        let (status, served_by, json) = match res {
            Ok(r) => {
                let status = r.status();
                let by = r
                    .headers()
                    .get("x-served-by")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                jar.take(&r);
                let json = if status == StatusCode::OK {
                    r.json::<Value>().await.ok()
                } else {
                    None
                };
                (status.as_u16(), by, json)
            }
            Err(_) => (0, None, None),
        };
        out.ops.push(Op {
            client: c,
            kind,
            key: key.clone(),
            start_ms: ms(start),
            end_ms: ms(end),
            status,
            served_by: served_by.clone(),
        });
        let ok = (200..300).contains(&status);
        let at = ms(start);
        let epoch_no = out.epochs.len() - 1;
        let epoch = out.epochs.last_mut().expect("an epoch");
        if ok && epoch.cookie.is_none() {
            epoch.cookie = jar.id();
        }
        if ok
            && matches!(kind, Kind::Put | Kind::Incr | Kind::Read)
            && epoch.cookie.is_some()
            && jar.id() != epoch.cookie
        {
            out.seen.push(format!(
                "client {c}: session {:?} replaced by {:?} on a {kind:?} served by {served_by:?} at {} ms",
                epoch.cookie,
                jar.id(),
                ms(end)
            ));
            epoch.certain = false;
            // The write went to the new session: it starts there.
            let mut next = Epoch {
                certain: true,
                cookie: jar.id(),
                ..Epoch::default()
            };
            match (kind, key) {
                (Kind::Put, Some(key)) => {
                    next.acked.insert(key, (served_by, ms(end)));
                }
                (Kind::Incr, _) => {
                    next.acked_incr = 1;
                    next.incr_log.push((served_by, ms(end)));
                }
                _ => {}
            }
            out.epochs.push(next);
            continue;
        }
        match kind {
            Kind::Put => {
                let key = key.expect("a key");
                if ok {
                    epoch.acked.insert(key, (served_by, ms(end)));
                } else {
                    epoch.maybe.insert(key);
                }
            }
            Kind::Incr => {
                if ok {
                    epoch.acked_incr += 1;
                    epoch.incr_log.push((served_by, ms(end)));
                } else {
                    epoch.maybe_incr += 1;
                }
            }
            Kind::Read => {
                if let Some(Value::Object(attrs)) = json {
                    let mine = format!("c{c}-e{epoch_no}-");
                    for k in attrs.keys() {
                        if k != COUNTER && !k.starts_with(&mine) {
                            out.seen.push(format!(
                                "client {c} read key {k} (not of its session) from {served_by:?} at {} ms",
                                ms(end)
                            ));
                        }
                    }
                    // Read your writes: everything acknowledged before this
                    // read started is in it.
                    let missing: Vec<&String> = epoch
                        .acked
                        .iter()
                        .filter(|(k, (_, done))| *done < at && !attrs.contains_key(*k))
                        .map(|(k, _)| k)
                        .collect();
                    if !missing.is_empty() {
                        out.seen.push(format!(
                            "client {c}: read from {served_by:?} at {at} ms lacks its acknowledged writes {missing:?}"
                        ));
                    }
                    let earlier = epoch.incr_log.iter().filter(|(_, done)| *done < at).count();
                    let n = attrs.get(COUNTER).and_then(Value::as_i64).unwrap_or(0);
                    if n < i64::try_from(earlier).unwrap_or(i64::MAX) {
                        out.seen.push(format!(
                            "client {c}: read from {served_by:?} at {at} ms counts {n}, below its {earlier} acknowledged increments"
                        ));
                    }
                }
            }
            Kind::Cycle | Kind::Invalidate => {
                if ok {
                    if let Some(old) = before.filter(|_| epoch.cookie.is_some()) {
                        if jar.id().as_ref() != Some(&old) {
                            out.dead.push(old);
                        }
                    }
                    epoch.cookie = jar.id();
                }
                if kind == Kind::Invalidate || !ok {
                    // Ended, or its id is unknown now: a fresh session.
                    if ok {
                        epoch.ended = true;
                    } else {
                        epoch.certain = false;
                    }
                    jar = Jar::default();
                    out.epochs.push(Epoch {
                        certain: true,
                        ..Epoch::default()
                    });
                }
            }
            Kind::NewSession => {}
        }
    }
    out
}
