//! SIGHUP reloads: services and backends come and go, a bad file changes nothing, and no client
//! connection fails because of a reload.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn two_service_config(l1: SocketAddr, p1: &str, l2: SocketAddr, p2: &str) -> String {
    format!(
        r#"[node]
threads = 1
admin = ""

[[service]]
name = "one"
listen = "{l1}"
pool = "p1"

[[service]]
name = "two"
listen = "{l2}"
pool = "p2"
balance = "least_conn"

[[pool]]
name = "p1"
backends = {p1}

[[pool]]
name = "p2"
backends = {p2}
"#
    )
}

/// Backends "a", "b" and "c", and two free addresses on one loopback IP for services.
fn three_backends_two_listen_addrs() -> ([Backend; 3], SocketAddr, SocketAddr) {
    let backends = [
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    ];
    let ip = IpAddr::V4(loopback_ip());
    (backends, free_addr(ip), free_addr(ip))
}

fn names(listen: SocketAddr, n: usize) -> HashSet<String> {
    (0..n).map(|_| which_backend(listen).unwrap()).collect()
}

#[test]
fn reload_adds_and_removes_services_and_backends() {
    reload_adds_and_removes_services_and_backends_on(1);
}

/// Every data thread has a socket of each service: all of them start with a new service,
/// and all of them close with a removed one (one left open would take every client).
#[test]
fn reload_adds_and_removes_services_on_every_data_thread() {
    reload_adds_and_removes_services_and_backends_on(2);
}

fn reload_adds_and_removes_services_and_backends_on(threads: usize) {
    let ([a, b, c], l1, l2) = three_backends_two_listen_addrs();
    let one = |backends: &[&Backend]| {
        with_threads(&simple_config(l1, &backend_list(backends), ""), threads)
    };
    let node = Node::start_listening(&one(&[&a]), l1);
    assert_eq!(names(l1, 4), HashSet::from(["a".to_owned()]));
    assert!(
        TcpStream::connect(l2).is_err(),
        "nothing listens on the second address yet"
    );

    // Add a backend to the first service and a whole second service.
    let grown = two_service_config(l1, &backend_list(&[&a, &b]), l2, &backend_list(&[&c]));
    let grown = with_threads(&grown, threads);
    node.reload(&grown);
    node.wait_log("configuration reloaded", 1);
    assert_eq!(
        names(l1, 6),
        HashSet::from(["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(names(l2, 3), HashSet::from(["c".to_owned()]));

    // A connection open on the second service outlives that service's removal.
    let mut open = Client::connect(l2).unwrap();
    assert_eq!(open.backend_name().unwrap(), "c");

    // Remove backend `a` and the second service.
    node.reload(&one(&[&b]));
    node.wait_log("configuration reloaded", 2);
    assert_eq!(names(l1, 4), HashSet::from(["b".to_owned()]));
    wait_until("the removed service to stop listening", || {
        TcpStream::connect(l2).is_err()
    });
    assert_eq!(open.round_trip(b"still served").unwrap(), b"still served");
}

#[test]
fn a_bad_reload_is_rejected_and_the_old_config_keeps_serving() {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let good = simple_config(listen, &backend_list(&[&a]), "");
    let node = Node::start_listening(&good, listen);

    node.reload("[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:1\"\npool = \"nope\"\n");
    node.wait_log("reload rejected", 1);
    let log = node.log_text();
    assert!(
        log.contains("tandem.toml:4:"),
        "the reason names the line:\n{log}"
    );
    assert_eq!(which_backend(listen).unwrap(), "a");

    // Unparsable TOML too.
    node.reload("[[service\nname = ");
    node.wait_log("reload rejected", 2);
    assert_eq!(which_backend(listen).unwrap(), "a");

    // And a good file afterwards is taken.
    let b = Backend::start("b");
    node.reload(&simple_config(listen, &backend_list(&[&b]), ""));
    node.wait_log("configuration reloaded", 1);
    assert_eq!(which_backend(listen).unwrap(), "b", "{}", node.log_text());
}

#[test]
fn no_connection_fails_while_the_config_is_reloaded_under_load() {
    let ([a, b, c], l1, l2) = three_backends_two_listen_addrs();
    // The two configs differ in pools, services, algorithm and, for the kept listener, its
    // backlog (changed in place on each of its sockets). Two data threads, each accepting on
    // a socket of its own: a service removed and added back binds and closes both.
    let first = simple_config(l1, &backend_list(&[&a, &b]), "backlog = 512")
        .replace("threads = 1", "threads = 2");
    let second = two_service_config(l1, &backend_list(&[&b, &c]), l2, &backend_list(&[&a]))
        .replace("threads = 1", "threads = 2");
    let node = Node::start_listening(&first, l1);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                let started = Instant::now();
                // Bounded in count and time whatever happens.
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    let result = Client::connect(l1).and_then(|mut c| {
                        c.backend_name()?;
                        let back = c.round_trip(b"hello")?;
                        assert_eq!(back, b"hello");
                        Ok(())
                    });
                    match result {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("client failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    let reloads = 40;
    for i in 0..reloads {
        node.reload(if i % 2 == 0 { &second } else { &first });
        node.wait_log("configuration reloaded", i + 1);
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} connections succeeded across {reloads} reloads, {failed} failed");
    assert_eq!(failed, 0, "connections failed during reloads");
    assert!(ok > 100, "the load did not run: only {ok} connections");
}
