//! Headless Firefox over WebDriver BiDi, spoken to Firefox's own remote agent (no
//! geckodriver): one session, the browser's first tab.

use serde_json::{Map, Value, json};

use super::wire::Wire;
use super::{Driver, HEIGHT, Process, WIDTH};
use crate::common::TempDir;
use crate::common::netns::exec;

/// The event that carries the page's errors.
const LOG_EVENT: &str = "log.entryAdded";

pub struct Firefox {
    wire: Wire,
    /// The tab (BiDi's top-level browsing context).
    context: String,
}

impl Firefox {
    /// Starts `program` in namespace `ns` on a blank page, with a session on its first tab.
    pub(super) fn start(ns: &str, program: &str) -> (Self, Process) {
        let profile = TempDir::create();
        let mut command = exec(ns, program);
        command
            .args([
                "--headless",
                "--no-remote",
                // Firefox's remote agent, on the namespace's loopback (its default host), on a
                // port of its choosing that it writes to WebDriverBiDiServer.json.
                "--remote-debugging-port=0",
                &format!("--window-size={WIDTH},{HEIGHT}"),
                "--profile",
            ])
            .arg(profile.path())
            .arg("about:blank")
            .env("MOZ_CRASHREPORTER_DISABLE", "1");
        let mut process = Process::spawn(command, profile);
        let port = process.wait_for_file("WebDriverBiDiServer.json", |text| {
            let server: Value = serde_json::from_str(text).ok()?;
            assert_eq!(
                server["ws_host"], "127.0.0.1",
                "the remote agent listens on loopback"
            );
            u16::try_from(server["ws_port"].as_u64()?).ok()
        });
        let wire = Wire::connect(ns, port, "/session", &[LOG_EVENT]);
        let mut browser = Self {
            wire,
            context: String::new(),
        };
        browser.call("session.new", json!({ "capabilities": {} }));
        let tree = browser.call("browsingContext.getTree", json!({ "maxDepth": 0 }));
        browser.context = tree["contexts"][0]["context"]
            .as_str()
            .expect("a tab")
            .to_owned();
        browser.call(
            "browsingContext.setViewport",
            json!({
                "context": browser.context,
                "viewport": { "width": WIDTH, "height": HEIGHT },
            }),
        );
        browser.call("session.subscribe", json!({ "events": [LOG_EVENT] }));
        (browser, process)
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.wire.call(method, params, Map::new())
    }
}

/// A BiDi remote value (`{"type": "number", "value": 401}`, an array of those, ...) as plain
/// JSON; `undefined`, NaN and the infinities are null, as `JSON.stringify` would have them.
fn plain(remote: &Value) -> Value {
    let value = &remote["value"];
    match remote["type"].as_str() {
        Some("string" | "boolean") => value.clone(),
        Some("number") if value.is_number() => value.clone(),
        Some("number") if value == "-0" => json!(0),
        Some("bigint") => value.clone(),
        Some("array") => Value::Array(value.as_array().into_iter().flatten().map(plain).collect()),
        Some("object") => Value::Object(
            value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pair| {
                    let key = match &pair[0] {
                        Value::String(key) => key.clone(),
                        other => plain(other).to_string(),
                    };
                    Some((key, plain(pair.get(1)?)))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

impl Driver for Firefox {
    fn navigate(&mut self, url: &str) {
        self.call(
            "browsingContext.navigate",
            json!({ "context": self.context, "url": url, "wait": "interactive" }),
        );
    }

    fn eval(&mut self, script: &str) -> Value {
        let answer = self.call(
            "script.evaluate",
            json!({
                "expression": script,
                "target": { "context": self.context },
                "awaitPromise": true,
                "resultOwnership": "none",
            }),
        );
        if answer["type"] != "success" {
            panic!("firefox: {script}: {}", answer["exceptionDetails"]);
        }
        plain(&answer["result"])
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call(
            "browsingContext.captureScreenshot",
            json!({ "context": self.context, "origin": "document" }),
        );
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
            .filter(|event| event["params"]["level"] == "error")
            .map(|event| {
                let entry = &event["params"];
                format!(
                    "{}: {}",
                    entry["type"].as_str().unwrap_or("log"),
                    entry["text"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}
