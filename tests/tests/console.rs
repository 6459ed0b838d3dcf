//! The console's side of the admin API against real nodes on loopback: the page and its files
//! with their safety headers, the pair view (`/peers`, fetched by the node), and actions passed
//! on to a peer only with the token. The page itself, in a browser: `console_browser.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use common::*;

/// The whole reply (head and body) to `GET path`.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let head = reply.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A node named `name` with the admin API on `admin`, the test token, and `peers`.
fn node(name: &str, backend: &Backend, admin: SocketAddr, peers: &[SocketAddr]) -> Node {
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let config = simple_config(listen, &backend_list(&[backend]), "")
        .replace("name = \"test\"", &format!("name = \"{name}\""))
        .replace(
            "admin = \"\"",
            &format!(
                "admin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\"\npeer_admin = [{}]",
                peers.join(", ")
            ),
        );
    let node = Node::start_listening(&config, listen);
    node.wait_listening(admin);
    node
}

#[test]
fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let backend = Backend::start("a");
    let admin = free_addr(IpAddr::V4(loopback_ip()));
    let _node = node("lb1", &backend, admin, &[]);
    let page = get(admin, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_eq!(
        header(&page, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.contains("<script src=\"/console.js\""), "{page}");
    for path in ["/", "/console.js", "/console.css", "/status", "/peers"] {
        let reply = get(admin, path);
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
        let csp = header(&reply, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&reply, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(header(&reply, "x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(
        header(&get(admin, "/console.js"), "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    // No peers configured: an empty pair view.
    let peers = get(admin, "/peers");
    assert_eq!(peers.split("\r\n\r\n").nth(1), Some("[]"), "{peers}");
    // The same limits as the rest of the API: a head too large is refused.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: admin\r\nX-Big: {}",
        "x".repeat(16 * 1024)
    );
    assert_eq!(http_raw(admin, &big, b"").map(|r| r.0), Some(431));
    assert_eq!(admin_status(admin, "POST", "/events", false), 405);
}

fn admin_status(addr: SocketAddr, method: &str, path: &str, auth: bool) -> u16 {
    admin(addr, method, path, auth).0
}

fn drained(admin: SocketAddr) -> bool {
    let (_, body) = common::admin(admin, "GET", "/status", false);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["pools"][0]["backends"][0]["drained"] == true
}

#[test]
fn the_pair_view_is_fetched_by_the_node_and_actions_reach_the_peer_only_with_the_token() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let ip = IpAddr::V4(loopback_ip());
    let (admin1, admin2) = (free_addr(ip), free_addr(ip));
    let lb1 = node("lb1", &a, admin1, &[admin2]);
    let mut lb2 = node("lb2", &b, admin2, &[admin1]);
    let peers = |at: SocketAddr| -> serde_json::Value {
        let (code, body) = common::admin(at, "GET", "/peers", false);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let view = peers(admin1);
    assert_eq!(view[0]["admin"], admin2.to_string());
    assert_eq!(view[0]["reachable"], true, "{view}");
    assert_eq!(view[0]["status"]["node"], "lb2");
    assert_eq!(
        view[0]["unreachable_since_unix_ms"],
        serde_json::Value::Null
    );

    // An action on the peer, through this node: refused without the token, on both.
    let drain = format!("/peers/{admin2}/pools/p/backends/{}/drain", b.addr);
    let (code, body) = common::admin(admin1, "POST", &drain, false);
    assert_eq!(code, 401, "{body}");
    assert!(!drained(admin2));
    let (code, body) = common::admin(admin1, "POST", &drain, true);
    assert_eq!((code, body.trim()), (200, "drained"));
    assert!(drained(admin2), "the peer's backend is drained");
    assert!(!drained(admin1), "not this node's");
    // Only the console's actions, only to the configured peers.
    let app = format!("/peers/{admin2}/apps/x/restart");
    assert_eq!(admin_status(admin1, "POST", &app, true), 404);
    let stranger = free_addr(ip);
    let swap = format!("/peers/{stranger}/swap");
    assert_eq!(admin_status(admin1, "POST", &swap, true), 404);
    assert_eq!(admin_status(admin1, "GET", &drain, true), 405);

    // A peer that stops answering is unreachable, with since when, and shows no status.
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    lb2.signal(rustix::process::Signal::KILL);
    lb2.wait_exit();
    let mut seen = serde_json::Value::Null;
    wait_until("lb2 unreachable in lb1's view", || {
        seen = peers(admin1);
        seen[0]["reachable"] == false
    });
    assert_eq!(seen[0]["status"], serde_json::Value::Null, "{seen}");
    let since = seen[0]["unreachable_since_unix_ms"].as_u64().unwrap();
    assert!(since >= before_ms, "{seen}");
    assert!(seen[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
    drop(lb1);
}
