//! Headless Chromium over the Chrome DevTools Protocol: the browser's connection, attached
//! to its one page with a flat session.

use serde_json::{Map, Value, json};

use super::wire::Wire;
use super::{Driver, HEIGHT, Process, WIDTH};
use crate::common::TempDir;
use crate::common::netns::exec;

/// The events that carry the page's errors.
const ERROR_EVENTS: &[&str] = &[
    "Runtime.exceptionThrown",
    "Runtime.consoleAPICalled",
    "Log.entryAdded",
];

pub struct Chromium {
    wire: Wire,
    /// The page's session on the browser's connection.
    session: String,
}

impl Chromium {
    /// Starts `program` in namespace `ns` on a blank page, attached to it.
    pub(super) fn start(ns: &str, program: &str) -> (Self, Process) {
        let profile = TempDir::create();
        let mut command = exec(ns, program);
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
            .arg("about:blank");
        let mut process = Process::spawn(command, profile);
        // Chromium writes the port it listens on, and the browser's path, to this file.
        let (port, path) = process.wait_for_file("DevToolsActivePort", |text| {
            let mut lines = text.lines();
            Some((lines.next()?.parse::<u16>().ok()?, lines.next()?.to_owned()))
        });
        let wire = Wire::connect(ns, port, &path, ERROR_EVENTS);
        let mut browser = Self {
            wire,
            session: String::new(),
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
        browser.call("Log.enable", json!({}));
        (browser, process)
    }

    /// One command to the browser itself; its result.
    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.wire.call(method, params, Map::new())
    }

    /// One command to the page; its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let mut session = Map::new();
        session.insert("sessionId".into(), json!(self.session));
        self.wire.call(method, params, session)
    }
}

impl Driver for Chromium {
    fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({ "url": url }));
        assert!(
            result.get("errorText").is_none(),
            "navigate {url}: {result}"
        );
        // Page.navigate answers once the response is in; wait for the document to be parsed,
        // as Firefox's driver does, so a scenario runs the same way in both.
        let parsed = format!(
            "document.URL === {} && document.readyState !== 'loading'",
            json!(url)
        );
        let started = std::time::Instant::now();
        while self.eval(&parsed) != json!(true) {
            assert!(
                started.elapsed() < crate::common::PATIENCE,
                "{url} did not load"
            );
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }

    fn eval(&mut self, script: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": script, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("chromium: {script}: {exception}");
        }
        result["result"]["value"].clone()
    }

    fn screenshot(&mut self) -> Vec<u8> {
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
        data_encoding::BASE64
            .decode(data.as_bytes())
            .expect("base64 PNG")
    }

    fn errors(&mut self) -> Vec<String> {
        // A round trip, so what the page logged before now has been read.
        self.eval("true");
        self.wire
            .take_events()
            .into_iter()
            .filter_map(|event| {
                let params = &event["params"];
                match event["method"].as_str()? {
                    "Runtime.exceptionThrown" => Some(format!(
                        "uncaught: {}",
                        params["exceptionDetails"]["exception"]["description"]
                            .as_str()
                            .unwrap_or(&params["exceptionDetails"].to_string())
                    )),
                    "Runtime.consoleAPICalled"
                        if matches!(params["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console.error: {}", params["args"]))
                    }
                    "Log.entryAdded"
                        if params["entry"]["level"] == "error"
                            && params["entry"]["source"] != "network" =>
                    {
                        Some(format!(
                            "{}: {}",
                            params["entry"]["source"].as_str().unwrap_or("log"),
                            params["entry"]["text"].as_str().unwrap_or_default()
                        ))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}
