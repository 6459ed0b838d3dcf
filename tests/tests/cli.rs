//! The command line as a newcomer and an operator meet it: `tandem demo`, log formats.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use common::*;

/// One HTTP/1.1 GET with `Connection: close`; returns the body.
fn http_get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()
}

#[test]
fn demo_serves_the_web_and_app_tiers_on_loopback() {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (web, app, admin) = (
        free_addr(localhost),
        free_addr(localhost),
        free_addr(localhost),
    );
    let node = Node::start_args(&[
        "demo",
        "--web-port",
        &web.port().to_string(),
        "--app-port",
        &app.port().to_string(),
        "--admin-port",
        &admin.port().to_string(),
    ]);
    node.wait_listening(web);
    node.wait_listening(app);
    // Round robin over the two web backends.
    let bodies: Vec<String> = (0..4).map(|_| http_get(web)).collect();
    assert!(bodies[0].starts_with("hello from web-"), "{bodies:?}");
    assert_ne!(
        bodies[0], bodies[1],
        "consecutive requests alternate: {bodies:?}"
    );
    assert_eq!(bodies[0], bodies[2]);
    // Maglev: this client always reaches the same app backend.
    let first = http_get(app);
    assert!(first.starts_with("hello from app-"), "{first}");
    for _ in 0..3 {
        assert_eq!(http_get(app), first);
    }
    // It tells the newcomer what to do.
    let printed = node.stdout_text();
    assert!(
        printed.contains(&format!("curl http://127.0.0.1:{}/", web.port())),
        "{printed}"
    );
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let dir = TempDir::create();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, simple_config(listen, &backend_list(&[&a]), "")).unwrap();
    let node = Node::start_args(&["--log-format", "json", "run", "-c", path.to_str().unwrap()]);
    node.wait_listening(listen);
    node.wait_log("listening on", 1);
    for line in node.log_text().lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with('{')
                && line.ends_with('}')
                && line.contains("\"level\":")
                && line.contains("\"timestamp\":"),
            "not a JSON log line: {line}"
        );
    }
}
