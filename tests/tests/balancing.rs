//! Balancing through a real node: each algorithm's distribution, backups, retry, refusal.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use common::*;

fn tally(listen: std::net::SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let name = which_backend(listen).expect("connection through the node");
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[test]
fn round_robin_respects_weights() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let backends = format!(
        r#"[{{ addr = "{}", weight = 3 }}, {{ addr = "{}", weight = 1 }}]"#,
        a.addr, b.addr
    );
    let _node = Node::start_listening(&simple_config(listen, &backends, ""), listen);
    let before = a.accepted() + b.accepted(); // the readiness probe may have landed on one
    let counts = tally(listen, 200);
    assert_eq!(counts.values().sum::<usize>(), 200);
    // Smooth weighted round robin over one sequential client: 3 of every 4 go to `a`,
    // give or take the one probe connection.
    let (ca, cb) = (counts["a"] as i64, counts["b"] as i64);
    assert!(
        (ca - 150).abs() <= 2 && (cb - 50).abs() <= 2,
        "a={ca} b={cb} (probe {before})"
    );
}

#[test]
fn least_conn_sends_new_clients_to_the_least_busy_backend() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(
        listen,
        &backend_list(&[&a, &b]),
        r#"balance = "least_conn""#,
    );
    let _node = Node::start_listening(&config, listen);
    // Held connections are spread evenly.
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for _ in 0..10 {
        let mut c = Client::connect(listen).unwrap();
        match c.backend_name().unwrap().as_str() {
            "a" => on_a.push(c),
            _ => on_b.push(c),
        }
    }
    assert_eq!((on_a.len(), on_b.len()), (5, 5));
    // Close the five on `a` (and let the node see them go): the next four all go to `a`.
    drop(on_a);
    wait_until("a's connections to close", || a.open() == 0);
    // The node releases a backend slot right after the backend's FIN reaches it.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut names = Vec::new();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(listen).unwrap();
        names.push(c.backend_name().unwrap());
        held.push(c);
    }
    assert_eq!(names, ["a", "a", "a", "a"]);
    // `b`'s clients are still served.
    for c in &mut on_b {
        assert_eq!(c.round_trip(b"still here").unwrap(), b"still here");
    }
}

#[test]
fn p2c_spreads_held_connections() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &backend_list(&[&a, &b, &c]), r#"balance = "p2c""#);
    let _node = Node::start_listening(&config, listen);
    let mut held = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let mut client = Client::connect(listen).unwrap();
        *counts.entry(client.backend_name().unwrap()).or_default() += 1;
        held.push(client);
    }
    // Two choices, least loaded wins: no backend can run away with the held connections.
    for name in ["a", "b", "c"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((6..=14).contains(&n), "{name} got {n}: {counts:?}");
    }
}

#[test]
fn maglev_gives_each_client_the_same_backend_on_two_independent_nodes() {
    let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("m{i}"))).collect();
    let refs: Vec<&Backend> = backends.iter().collect();
    let list = backend_list(&refs);
    let (l1, l2) = (
        free_addr(IpAddr::V4(loopback_ip())),
        free_addr(IpAddr::V4(loopback_ip())),
    );
    let _n1 = Node::start_listening(&simple_config(l1, &list, r#"balance = "maglev""#), l1);
    // The second node lists the same backends in another order: the mapping must not care.
    let reversed: Vec<&Backend> = backends.iter().rev().collect();
    let list2 = backend_list(&reversed);
    let _n2 = Node::start_listening(&simple_config(l2, &list2, r#"balance = "maglev""#), l2);

    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..60u8 {
        let client_ip = Ipv4Addr::new(127, 200, i / 250 + 1, i % 250 + 1);
        let on1 = Client::connect_from(client_ip, l1)
            .unwrap()
            .backend_name()
            .unwrap();
        let again = Client::connect_from(client_ip, l1)
            .unwrap()
            .backend_name()
            .unwrap();
        let on2 = Client::connect_from(client_ip, l2)
            .unwrap()
            .backend_name()
            .unwrap();
        assert_eq!(on1, again, "client {client_ip} moved between connections");
        assert_eq!(on1, on2, "client {client_ip}: the two nodes disagree");
        *seen.entry(on1).or_default() += 1;
    }
    assert!(
        seen.len() >= 3,
        "60 clients should spread over the backends: {seen:?}"
    );
}

#[test]
fn backups_serve_only_while_every_primary_is_down() {
    let (mut p1, mut p2) = (Backend::start("primary1"), Backend::start("primary2"));
    let backup = Backend::start("backup");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let backends = format!(
        r#"[{{ addr = "{}" }}, {{ addr = "{}" }}, {{ addr = "{}", role = "backup" }}]"#,
        p1.addr, p2.addr, backup.addr
    );
    let _node = Node::start_listening(&simple_config(listen, &backends, ""), listen);
    let counts = tally(listen, 20);
    assert!(!counts.contains_key("backup"), "{counts:?}");
    p1.stop();
    let counts = tally(listen, 20);
    assert_eq!(counts.get("primary2"), Some(&20), "{counts:?}");
    p2.stop();
    let counts = tally(listen, 20);
    assert_eq!(counts.get("backup"), Some(&20), "{counts:?}");
}

#[test]
fn a_dead_backend_costs_clients_nothing_thanks_to_retry() {
    let (a, mut b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &backend_list(&[&a, &b, &c]), "retries = 2");
    let node = Node::start_listening(&config, listen);
    b.stop();
    let counts = tally(listen, 60);
    assert_eq!(counts.values().sum::<usize>(), 60);
    assert!(!counts.contains_key("b"));
    assert!(
        counts.contains_key("a") && counts.contains_key("c"),
        "{counts:?}"
    );
    assert!(node.log_text().contains("backend connect failed"));
}

#[test]
fn a_client_is_refused_at_once_when_no_backend_is_usable() {
    let mut a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let node = Node::start_listening(&simple_config(listen, &backend_list(&[&a]), ""), listen);
    a.stop();
    for _ in 0..5 {
        // The reset can arrive before `connect` returns (std reads SO_ERROR after the
        // handshake) or on the first read; either way it must be a reset, not a hang.
        let mut client = match Client::connect(listen) {
            Ok(client) => client,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => panic!("the listener still accepts: {e}\n{}", node.log_text()),
        };
        match client.read_to_end() {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
            Ok(bytes) => assert!(bytes.is_empty(), "got {bytes:?}"),
        }
    }
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// hangs until its timeout, as a backend behind a black hole does. On loopback, no root.
struct BlackHole {
    addr: std::net::SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<std::net::TcpStream>,
}

impl BlackHole {
    fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&std::net::SocketAddr::from((loopback_ip(), 0)).into())
            .unwrap();
        listener.listen(1).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        // Never accepted: fill the queue until a connect no longer completes.
        for _ in 0..16 {
            match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
            {
                Ok(s) => queued.push(s),
                Err(_) => {
                    return Self {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    };
                }
            }
        }
        panic!("the accept queue of {addr} never filled");
    }
}

/// In a pool without health checks, a backend behind a black hole costs only the first few
/// clients the connect timeout: then it is ejected, and the others go straight to the live one.
#[test]
fn a_black_hole_without_health_checks_costs_only_the_first_few_clients() {
    let hole = BlackHole::new();
    let live = Backend::start("live");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let backends = format!(
        r#"[{{ addr = "{}" }}, {{ addr = "{}" }}]"#,
        hole.addr, live.addr
    );
    let config = simple_config(listen, &backends, "")
        .replace("connect_timeout = \"1s\"", "connect_timeout = \"300ms\"")
        .replace(
            &format!("backends = {backends}"),
            &format!("backends = {backends}\neject_after = 2\neject_time = \"30s\""),
        );
    let node = Node::start_listening(&config, listen);
    let mut slow = 0;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let name = which_backend(listen).expect("served, by retry if need be");
        assert_eq!(name, "live");
        if started.elapsed() >= std::time::Duration::from_millis(250) {
            slow += 1;
        }
    }
    assert!(
        slow <= 2,
        "{slow} of 20 clients waited for the black hole\n{}",
        node.log_text()
    );
    assert!(
        node.log_text().contains("backend ejected"),
        "{}",
        node.log_text()
    );
}
