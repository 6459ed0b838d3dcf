//! Clients that connect and say nothing (issue 19): they must not lock a service out for its
//! whole idle timeout. `first_byte_timeout` closes a connection on which no byte has moved
//! either way; `max_conns_per_source` bounds what one address may hold. Neither may cut a
//! protocol whose server speaks first.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A backend that waits for the client to speak first (as HTTP, TLS or Redis servers do): it
/// echoes what it receives and greets nobody.
struct SilentEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentEcho {
    fn start() -> Self {
        let listener = TcpListener::bind((loopback_ip(), 0)).expect("bind backend");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                            let mut buf = [0u8; 4096];
                            while let Ok(n @ 1..) = stream.read(&mut buf) {
                                if stream.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `simple_config` in front of `backend` with `service_extra`, the admin API on `admin`.
fn config(listen: SocketAddr, backend: SocketAddr, admin: SocketAddr, extra: &str) -> String {
    simple_config(listen, &format!("[{{ addr = \"{backend}\" }}]"), extra)
        .replace("admin = \"\"", &format!("admin = \"{admin}\""))
}

fn service_status(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = common::admin(admin, "GET", "/status", false);
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    status["services"][0].clone()
}

fn connect(listen: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&listen, PATIENCE).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

on_each_io! {
    silent_clients_hold_a_full_service_only_until_first_byte_timeout(io) =>
        silent_clients_hold_a_full_service_only_until_first_byte_timeout_io_uring,
        silent_clients_hold_a_full_service_only_until_first_byte_timeout_epoll,
}

/// Four clients that never send a byte take all of `max_conns = 4`; a real client queued
/// behind them is served once `first_byte_timeout` closes them, not after `idle_timeout`.
fn silent_clients_hold_a_full_service_only_until_first_byte_timeout(io: &str) {
    if !io_usable(io) {
        return;
    }
    let backend = SilentEcho::start();
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    let extra = "max_conns = 4\nidle_timeout = \"5m\"\nfirst_byte_timeout = \"600ms\"";
    let node = Node::start_listening(
        &with_io(&config(listen, backend.addr, admin, extra), io),
        listen,
    );
    node.wait_listening(admin);
    node.wait_log(&format!("io=\"{io}\""), 1);
    // The start-up probe (connect, close) ends at once; wait until its slot is free.
    wait_until("the start-up probe to finish", || {
        service_status(admin)["active"].as_u64() == Some(0)
    });

    let mut silent: Vec<TcpStream> = (0..4).map(|_| connect(listen)).collect();
    wait_until("the silent clients to be served", || {
        service_status(admin)["active"].as_u64() == Some(4)
    });
    let start = Instant::now();
    let mut real = connect(listen);
    real.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    real.read_exact(&mut back)
        .expect("served once the silent clients are closed");
    let waited = start.elapsed();
    assert_eq!(&back, b"hello");
    eprintln!("{io}: the real client waited {waited:?} behind 4 silent ones");
    assert!(
        waited < Duration::from_millis(1500),
        "held for {waited:?}, not the first_byte_timeout of 600ms"
    );
    for s in &mut silent {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("closed by the node, not by our read timeout");
        assert!(rest.is_empty());
    }
    let status = service_status(admin);
    assert_eq!(status["first_byte_timeouts"], 4, "{status}");
    assert_eq!(status["idle_timeouts"], 0, "{status}");
    let (_, metrics) = common::admin(admin, "GET", "/metrics", false);
    assert!(
        metrics.contains("tandem_service_timeouts_total{service=\"svc\",reason=\"first_byte\"} 4"),
        "{metrics}"
    );
    // The real client, having spoken, is under idle_timeout now: still open well after.
    thread::sleep(Duration::from_millis(900));
    real.write_all(b"again").unwrap();
    real.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"again");
}

on_each_io! {
    a_server_that_speaks_first_is_not_cut_by_first_byte_timeout(io) =>
        a_server_that_speaks_first_is_not_cut_by_first_byte_timeout_io_uring,
        a_server_that_speaks_first_is_not_cut_by_first_byte_timeout_epoll,
}

/// SMTP, MySQL, FTP: the server greets and the client may think before it answers. The
/// greeting is a byte moved, so `first_byte_timeout` no longer applies.
fn a_server_that_speaks_first_is_not_cut_by_first_byte_timeout(io: &str) {
    if !io_usable(io) {
        return;
    }
    let greeter = Backend::start("banner");
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    let extra = "first_byte_timeout = \"300ms\"";
    let node = Node::start_listening(
        &with_io(&config(listen, greeter.addr, admin, extra), io),
        listen,
    );
    node.wait_log(&format!("io=\"{io}\""), 1);
    let mut client = Client::connect(listen).unwrap();
    assert_eq!(client.backend_name().unwrap(), "banner");
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(client.round_trip(b"HELO").unwrap(), b"HELO");
    assert_eq!(service_status(admin)["first_byte_timeouts"], 0);
}

/// One address holding `max_conns_per_source` connections is reset at accept for more; other
/// addresses are served, and the address gets in again once one of its connections ends.
#[test]
fn max_conns_per_source_resets_an_address_over_its_limit_and_serves_the_others() {
    let a = Backend::start("a");
    let ip = loopback_ip();
    let (listen, admin) = (free_addr(IpAddr::V4(ip)), free_addr(IpAddr::V4(ip)));
    let node = Node::start_listening(
        &config(listen, a.addr, admin, "max_conns_per_source = 2"),
        listen,
    );
    node.wait_listening(admin);
    let pid = std::process::id();
    let crowded = Ipv4Addr::new(127, 78, (pid % 250) as u8 + 1, 1);
    let other = Ipv4Addr::new(127, 78, (pid % 250) as u8 + 1, 2);

    let mut held: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::connect_from(crowded, listen).unwrap();
            assert_eq!(c.backend_name().unwrap(), "a");
            c
        })
        .collect();
    let third = Client::connect_from(crowded, listen).and_then(|mut c| c.backend_name());
    let err = third.expect_err("a third connection from the same address is not served");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        "refused at once, not left waiting: {err}"
    );
    let mut elsewhere = Client::connect_from(other, listen).unwrap();
    assert_eq!(elsewhere.backend_name().unwrap(), "a");

    drop(held.pop());
    wait_until("the address to get a place again", || {
        Client::connect_from(crowded, listen)
            .and_then(|mut c| c.backend_name())
            .is_ok()
    });
    let status = service_status(admin);
    assert!(
        status["rejected_per_source"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let (_, metrics) = common::admin(admin, "GET", "/metrics", false);
    assert!(
        metrics.contains(
            "tandem_service_rejected_total{service=\"svc\",reason=\"max_conns_per_source\"}"
        ),
        "{metrics}"
    );
    assert!(
        node.log_text().contains("max_conns_per_source"),
        "the reset is logged: {}",
        node.log_text()
    );
}
