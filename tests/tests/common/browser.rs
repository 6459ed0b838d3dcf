//! A real headless browser for the console tests: Debian's `chromium`, driven over the Chrome
//! DevTools Protocol (a WebSocket of JSON commands) with `tungstenite`.
//!
//! Chromium runs inside a namespace the test built (the rack's client host), in a process
//! group of its own with a fresh profile directory; it is stopped by its group when the
//! handle drops. Every wait is bounded.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use super::netns::{exec, in_netns};
use super::{PATIENCE, TempDir, skipped};

/// The browser's viewport, wide enough for the pair side by side.
pub const WIDTH: u32 = 1440;
pub const HEIGHT: u32 = 1000;

/// Whether a browser can run here; says why not (or fails under CI).
pub fn available(test: &str) -> bool {
    if std::process::Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    skipped(&format!(
        "{test}: needs Debian's chromium (apt-get install chromium)"
    ))
}

/// A headless Chromium and one page of it.
pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    /// The page's session on the browser's connection.
    session: String,
    next_id: u64,
    _profile: TempDir,
}

impl Browser {
    /// Starts Chromium in namespace `ns`, on a blank page.
    pub fn start_in_netns(ns: &str) -> Self {
        let profile = TempDir::create();
        let mut command = exec(ns, "chromium");
        command
            .args([
                "--headless",
                // As root, and inside a namespace of the test's: no sandbox to be had.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={WIDTH},{HEIGHT}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(profile.path().join("chromium.log")).expect("browser log"),
            )
            .process_group(0);
        let child = command.spawn().expect("start chromium");
        // Chromium writes the port it listens on, and the browser's path, to this file.
        let port_file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.to_owned(), path.to_owned());
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "chromium did not open its DevTools port:\n{}",
                std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let addr = format!("127.0.0.1:{port}");
        let stream = in_netns(ns, move || {
            TcpStream::connect(addr).expect("connect to chromium")
        });
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (socket, _) = tungstenite::client(url, stream).expect("DevTools handshake");
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 1,
            _profile: profile,
        };
        let targets = browser.browser_call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].as_str().unwrap_or_default().to_owned())
            .expect("a page target");
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({ "targetId": page, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    /// One command to the browser itself; its result.
    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// One command to the page; its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .expect("send a DevTools command");
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < PATIENCE,
                "no answer to {method} within {PATIENCE:?}"
            );
            let frame = self.socket.read().expect("read from DevTools");
            let Message::Text(text) = frame else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            // Events (no id) and other answers are not ours.
            if reply["id"] != json!(id) {
                continue;
            }
            if let Some(error) = reply.get("error") {
                panic!("{method}: {error}");
            }
            return reply["result"].clone();
        }
    }

    /// Opens `url` in the page (without waiting for it to load: see [`Browser::wait_for`]).
    pub fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({ "url": url }));
        assert!(
            result.get("errorText").is_none(),
            "navigate {url}: {result}"
        );
    }

    /// The value of JavaScript `expression` in the page (awaited if a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`; returns how long that took. Fails the test
    /// after `limit`, with what `context` (another expression) says then.
    pub fn wait_for(&mut self, what: &str, expression: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.eval(expression) == json!(true) {
                return started.elapsed();
            }
            if started.elapsed() > limit {
                let page = self.eval("document.body ? document.body.innerText : ''");
                panic!("gave up waiting {limit:?} for {what}; the page reads:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Saves a PNG of the whole page to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .as_u64()
            .unwrap_or(u64::from(HEIGHT))
            .clamp(u64::from(HEIGHT), 4000);
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        self.call("Emulation.clearDeviceMetricsOverride", json!({}));
        let data = shot["data"].as_str().expect("screenshot data");
        let png = data_encoding::BASE64
            .decode(data.as_bytes())
            .expect("base64 PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium's helpers (renderer, GPU, zygote) share its process group.
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}
