//! The demo peer's status page in a real browser: headless Chromium driven
//! through chromedriver (the W3C WebDriver protocol, spoken here over
//! HTTP). A value set on node A's page shows on node B's page (the browser
//! sends the same cookie to both: cookies do not depend on the port), and
//! invalidating it on B empties both.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, PeerProcess};
use reqwest::Client;
use serde_json::{json, Value};

/// The key WebDriver names an element by in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver as a child process, killed on drop.
struct Driver {
    child: Child,
    base: String,
    http: Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    /// Ends the browser session first (chromedriver then closes Chromium;
    /// killed alone, it would leave the browser running), in plain blocking
    /// HTTP, as drop cannot wait for async work.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        if !self.session.is_empty() {
            let addr = self.base.trim_start_matches("http://");
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/deps.sh installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let http = Client::new();
        let start = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if ready.is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut driver = Self {
            child,
            base,
            http,
            session: String::new(),
            _profile: profile,
        };
        let answer = driver.call("POST", "/session", caps).await;
        driver.session = answer["sessionId"].as_str().unwrap().to_owned();
        driver
    }

    /// One WebDriver command; its `value`.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let res = req.send().await.unwrap();
        let status = res.status();
        let answer: Value = res.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_owned()
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        let text = self
            .call("GET", &format!("/element/{id}/text"), Value::Null)
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    async fn fill(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Waits (up to 15 s) until the text of `css` satisfies `check`.
    async fn until(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.text(css).await;
            if check(&text) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{what}: {css} reads {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_written_on_one_nodes_page_shows_on_the_others_and_ends_on_both() {
    let key = "2a".repeat(32);
    let p2p = [free_port(), free_port()];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut peers = Vec::new();
    for i in 0..2 {
        let args = vec![
            "--listen".to_owned(),
            format!("/ip4/127.0.0.1/tcp/{}", p2p[i]),
            "--peer".to_owned(),
            format!("/ip4/127.0.0.1/tcp/{}", p2p[1 - i]),
            "--cluster-key".to_owned(),
            key.clone(),
            "--replication".to_owned(),
            "sync".to_owned(),
        ];
        peers.push(PeerProcess::start_with(dirs[i].path(), &args).await);
    }
    for p in &peers {
        common::wait_for_peers(&p.base, 1).await;
    }
    let (a, b) = (&peers[0].base, &peers[1].base);
    let browser = Driver::start().await;

    browser.open(&format!("{a}/")).await;
    let a_id = browser
        .until("#peer-id", "A's page shows its peer id", |t| {
            t.starts_with("12D3")
        })
        .await;
    browser
        .until("#peers", "A's page lists B as connected", |t| {
            t.contains("connected")
        })
        .await;
    browser
        .until("#session-state", "no session yet", |t| t == "no session")
        .await;
    browser.fill("#key", "user").await;
    browser.fill("#value", "ada").await;
    browser.click("#set").await;
    browser
        .until("#session", "the write on A's page", |t| {
            t.contains("\"ada\"")
        })
        .await;

    browser.open(&format!("{b}/")).await;
    let b_id = browser
        .until("#served-by", "B's page", |t| t.starts_with("12D3"))
        .await;
    assert_ne!(a_id, b_id, "two different nodes");
    browser
        .until("#session", "A's write on B's page", |t| {
            t.contains("user") && t.contains("\"ada\"")
        })
        .await;
    browser.click("#invalidate").await;
    browser
        .until("#session-state", "ended on B", |t| t == "no session")
        .await;

    browser.open(&format!("{a}/")).await;
    browser
        .until("#session-state", "ended on A too", |t| t == "no session")
        .await;
}
