//! The WebSocket both protocols share: a command is `{"id", "method", "params"}` (and, in the
//! DevTools protocol, the session it is for); its answer carries the same id and a `result`
//! or an `error`; an event carries a `method` and no id.

use std::net::TcpStream;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tungstenite::{Message, WebSocket};

use super::super::PATIENCE;
use super::super::netns::in_netns;

pub struct Wire {
    socket: WebSocket<TcpStream>,
    next_id: u64,
    /// The events kept (those named in `kept`), in arrival order, until taken.
    events: Vec<Value>,
    kept: &'static [&'static str],
}

impl Wire {
    /// Opens `ws://127.0.0.1:{port}{path}` from inside namespace `ns`, keeping the events
    /// named in `kept`.
    pub fn connect(ns: &str, port: u16, path: &str, kept: &'static [&'static str]) -> Self {
        let stream = in_netns(ns, move || {
            TcpStream::connect(("127.0.0.1", port)).expect("connect to the browser")
        });
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (socket, _) = tungstenite::client(url, stream).expect("WebSocket handshake");
        Self {
            socket,
            next_id: 1,
            events: Vec::new(),
            kept,
        }
    }

    /// Sends command `method` with `params` (and the fields of `extra` beside them); its
    /// result. Fails the test on an error answer or none within [`PATIENCE`].
    pub fn call(&mut self, method: &str, params: Value, extra: Map<String, Value>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        message.as_object_mut().unwrap().extend(extra);
        self.socket
            .send(Message::text(message.to_string()))
            .expect("send a command to the browser");
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < PATIENCE,
                "no answer to {method} within {PATIENCE:?}"
            );
            let frame = self.socket.read().expect("read from the browser");
            let Message::Text(text) = frame else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).expect("the browser's JSON");
            if reply.get("id").is_none() {
                if reply["method"]
                    .as_str()
                    .is_some_and(|m| self.kept.contains(&m))
                {
                    self.events.push(reply);
                }
                continue;
            }
            if reply["id"] != json!(id) {
                continue;
            }
            if reply.get("error").is_some() {
                panic!("{method}: {reply}");
            }
            return reply["result"].clone();
        }
    }

    /// The events kept since the last call.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }
}
