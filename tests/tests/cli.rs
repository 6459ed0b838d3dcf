//! The command line as a newcomer and an operator meet it: `tandem demo`, log formats.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

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

/// Starts `tandem demo` on free ports of 127.0.0.1, and waits until it listens. A port found
/// free can be taken by another test's ephemeral bind before the demo binds it (the demo then
/// exits, saying so): then it tries other ports, a few times.
fn start_demo() -> (Node, SocketAddr, SocketAddr) {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..3 {
        let (web, app, admin) = (
            free_addr(localhost),
            free_addr(localhost),
            free_addr(localhost),
        );
        let mut node = Node::start_args(&[
            "demo",
            "--web-port",
            &web.port().to_string(),
            "--app-port",
            &app.port().to_string(),
            "--admin-port",
            &admin.port().to_string(),
        ]);
        let listens = |addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            if listens(web) && listens(app) {
                return (node, web, app);
            }
            if node.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = node.log_text();
        assert!(
            node.exited().is_some() && log.contains("cannot listen"),
            "the demo neither listens nor says why\n{log}\n{}",
            node.stdout_text()
        );
    }
    panic!("the demo found no free ports in three tries");
}

#[test]
fn demo_serves_the_web_and_app_tiers_on_loopback() {
    let (node, web, app) = start_demo();
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
