//! `GET /events`, the node's event stream (Server-Sent Events), against a real node on
//! loopback: events arrive in the order they happened, a reconnecting client resumes after
//! its last id, and a client that stops reading is dropped rather than buffered for.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A node with the admin API (and the test token) over two backends; `a` is health checked
/// every 100 ms.
fn start(a: &Backend, b: &Backend) -> (Node, SocketAddr) {
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    let backends = format!(
        "[{{ addr = \"{}\", health = {{ kind = \"tcp\", interval = \"100ms\", timeout = \"80ms\", \
         rise = 1, fall = 1 }} }}, {{ addr = \"{}\" }}]",
        a.addr, b.addr
    );
    let config = simple_config(listen, &backends, "").replace(
        "admin = \"\"",
        &format!("admin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\""),
    );
    let node = Node::start_listening(&config, listen);
    node.wait_listening(admin);
    (node, admin)
}

/// One SSE message as read off the wire.
#[derive(Debug)]
struct Message {
    id: u64,
    event: String,
    data: serde_json::Value,
}

/// A client of `/events` that reads as it goes.
struct Stream {
    reader: BufReader<TcpStream>,
}

impl Stream {
    fn open(admin: SocketAddr, last_event_id: Option<u64>) -> Self {
        let mut socket = TcpStream::connect(admin).expect("connect to the admin API");
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        write!(
            socket,
            "GET /events HTTP/1.1\r\nHost: admin\r\nAccept: text/event-stream\r\n{resume}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("the response head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        Self { reader }
    }

    /// The next message (comments skipped), reading through hyper's chunked encoding.
    fn next(&mut self) -> Message {
        let (mut id, mut event, mut data) = (None, None, None);
        loop {
            let line = self.line();
            if line.is_empty() {
                if let (Some(id), Some(event), Some(data)) = (id, event.take(), data.take()) {
                    return Message { id, event, data };
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).expect("JSON data"));
            }
        }
    }

    /// The next line of the event stream, with the chunk framing taken off.
    fn line(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read the stream");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            // Chunk sizes are hex on a line of their own; SSE lines are never pure hex here
            // (an empty line is the message end, kept).
            if !line.is_empty() && line.chars().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            return line;
        }
    }

    /// Messages until one satisfies `last`; all of them.
    fn until(&mut self, last: impl Fn(&Message) -> bool) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let m = self.next();
            let done = last(&m);
            seen.push(m);
            if done {
                return seen;
            }
        }
    }
}

fn is_reload(m: &Message) -> bool {
    m.event == "reload"
}

#[test]
fn events_arrive_in_order_and_a_reconnecting_client_resumes_after_its_last_id() {
    let (mut a, b) = (Backend::start("a"), Backend::start("b"));
    let (node, admin) = start(&a, &b);
    let mut stream = Stream::open(admin, None);
    let path = |action: &str| format!("/pools/p/backends/{}/{action}", b.addr);
    assert_eq!(admin_post(admin, &path("drain")), 200);
    assert_eq!(admin_post(admin, &path("enable")), 200);
    a.stop();
    // The health event comes from the checker; the reload must follow it.
    let seen = stream.until(|m| m.event == "health" && m.data["up"] == false);
    assert_eq!(admin_post(admin, "/reload"), 200);
    let mut seen: Vec<Message> = seen.into_iter().chain(stream.until(is_reload)).collect();
    // A new client first gets the kept events: from the node's start on (a's first check).
    let first_drain = seen.iter().position(|m| m.event == "drain").unwrap();
    seen.drain(..first_drain);

    let ids: Vec<u64> = seen.iter().map(|m| m.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    let summary: Vec<String> = seen
        .iter()
        .map(|m| match m.event.as_str() {
            "drain" => format!("drain {}", m.data["drained"]),
            "health" => format!("health {} {}", m.data["backend"], m.data["up"]),
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "drain true".to_owned(),
            "drain false".to_owned(),
            format!("health \"{}\" false", a.addr),
            "reload".to_owned(),
        ],
        "{seen:#?}"
    );
    let health = &seen[2].data;
    assert_eq!(health["pool"], "p");
    assert_eq!(health["kind"], "health");
    assert!(
        health["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{health}"
    );
    assert_eq!(seen[3].data["ok"], true);
    assert_eq!(seen[0].data["node"], "test");

    // A client that comes back after the first drain gets the rest, and only the rest.
    let mut again = Stream::open(admin, Some(seen[0].id));
    let replayed = again.until(is_reload);
    let replayed: Vec<u64> = replayed.iter().map(|m| m.id).collect();
    assert_eq!(replayed, ids[1..], "resumed after id {}", seen[0].id);
    drop(node);
}

/// `POST path` with the token: the status code.
fn admin_post(addr: SocketAddr, path: &str) -> u16 {
    admin(addr, "POST", path, true).0
}

/// The value of the sample `name` (with its labels) in `/metrics`.
fn metric(admin: SocketAddr, sample: &str) -> Option<f64> {
    let (_, body) = common::admin(admin, "GET", "/metrics", false);
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn a_client_that_stops_reading_is_dropped_while_the_others_get_every_event() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (node, admin) = start(&a, &b);
    // A client with a small receive buffer that asks for the stream and never reads.
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    slow.set_recv_buffer_size(4096).unwrap();
    slow.connect(&admin.into()).unwrap();
    let mut slow: TcpStream = slow.into();
    write!(slow, "GET /events HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    // A client that reads everything, on a thread of its own.
    let mut fast = Stream::open(admin, None);
    const EVENTS: usize = 2000;
    let reader = std::thread::spawn(move || {
        let mut ids = Vec::new();
        while ids.len() < EVENTS {
            let m = fast.next();
            if m.event == "drain" {
                ids.push(m.id);
            }
        }
        (ids, fast)
    });
    wait_until("both streams open", || {
        metric(admin, "tandem_admin_event_streams") == Some(2.0)
    });
    let started = Instant::now();
    let path = |n: usize| {
        let action = if n.is_multiple_of(2) {
            "drain"
        } else {
            "enable"
        };
        format!("/pools/p/backends/{}/{action}", b.addr)
    };
    for n in 0..EVENTS {
        assert_eq!(admin_post(admin, &path(n)), 200);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{n} actions took a minute"
        );
    }
    let (ids, _fast) = reader.join().expect("the reading client got every event");
    assert_eq!(ids.len(), EVENTS);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");

    // The slow one was dropped: once it reads what was already on its way, the stream ends.
    assert_eq!(
        metric(
            admin,
            "tandem_admin_event_streams_closed_total{reason=\"dropped\"}"
        ),
        Some(1.0),
        "{}",
        node.log_text()
    );
    assert_eq!(
        metric(admin, "tandem_admin_event_streams"),
        Some(1.0),
        "the reading client's stream stays open"
    );
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut held = Vec::new();
    let ended = Instant::now();
    let result = slow.read_to_end(&mut held);
    assert!(
        result.is_ok()
            || result
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{result:?}"
    );
    assert!(ended.elapsed() < PATIENCE, "closed, not held open");
    // Not every event: the node stopped keeping them for the slow client.
    let drains = String::from_utf8_lossy(&held)
        .matches("event: drain")
        .count();
    assert!(
        drains < EVENTS * 3 / 4,
        "{drains} of {EVENTS} events were buffered for it"
    );
    drop(node);
}
