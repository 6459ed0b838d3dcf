//! UDP services end to end: real UDP backends on loopback, a real node, real datagrams.
//! Flows stick and spread by the algorithm, end at their replies or when idle, are bounded by
//! `max_flows`, move off a dead backend; a `udp` health check; reload under load; TCP and UDP
//! on one port; segmented sends, and one by one where the MTU refuses them; drain.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::udp::*;
use common::*;

/// A started node and its addresses.
struct Udp {
    node: Node,
    listen: SocketAddr,
    admin: SocketAddr,
}

fn start(threads: usize, backends: &[&UdpBackend], extra: &str) -> Udp {
    let ip = IpAddr::V4(loopback_ip());
    let listen = free_udp_addr(ip);
    let admin = free_addr(ip);
    let config = udp_config(listen, admin, threads, &udp_backend_list(backends), extra);
    let node = Node::start(&config);
    node.wait_log("listening on", 1);
    node.wait_listening(admin);
    Udp {
        node,
        listen,
        admin,
    }
}

/// The `dns` service of `/status`.
fn service(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = common::admin(admin, "GET", "/status", false);
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "dns")
        .cloned()
        .expect("the dns service")
}

fn backend(admin: SocketAddr, addr: SocketAddr) -> serde_json::Value {
    let (_, body) = common::admin(admin, "GET", "/status", false);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == addr.to_string())
        .cloned()
        .expect("the backend")
}

#[test]
fn a_flow_sticks_to_one_backend_and_flows_spread_round_robin() {
    let a = UdpBackend::start("a");
    let b = UdpBackend::start("b");
    let node = start(2, &[&a, &b], "");
    let mut per_backend: HashMap<String, usize> = HashMap::new();
    for _ in 0..8 {
        let client = UdpClient::new(node.listen);
        let first = client.which(b"hello", 3).expect("an answer");
        for i in 0..5 {
            let (name, echo) = client.ask(format!("query {i}").as_bytes()).expect("reply");
            assert_eq!(name, first, "a flow stays on its backend");
            assert_eq!(echo, format!("query {i}").as_bytes());
        }
        *per_backend.entry(first).or_default() += 1;
    }
    assert_eq!(per_backend.len(), 2, "{per_backend:?}");
    assert!(
        per_backend.values().all(|n| *n >= 2),
        "round robin spreads flows: {per_backend:?}"
    );
    let s = service(node.admin);
    assert_eq!(s["protocol"], "udp");
    assert_eq!(s["accepted"], 8, "{s}");
    assert_eq!(s["datagrams_in"], 48);
    assert_eq!(s["datagrams_out"], 48);
    let b = backend(node.admin, a.addr);
    assert!(b["datagrams_in"].as_u64().unwrap() > 0, "{b}");
    let (_, metrics) = common::admin(node.admin, "GET", "/metrics", false);
    for line in [
        "tandem_service_datagrams_total{service=\"dns\",direction=\"in\"} 48",
        "tandem_service_datagrams_total{service=\"dns\",direction=\"out\"} 48",
        "tandem_service_flows_total{service=\"dns\"} 8",
        "tandem_service_datagrams_dropped_total{service=\"dns\",reason=\"no_backend\"} 0",
        "tandem_service_flow_ends_total{service=\"dns\",reason=\"answered\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

#[test]
fn maglev_keeps_a_client_address_on_its_backend_across_restarts() {
    let backends: Vec<UdpBackend> = (0..3)
        .map(|i| UdpBackend::start(&format!("m{i}")))
        .collect();
    let refs: Vec<&UdpBackend> = backends.iter().collect();
    let sources: Vec<Ipv4Addr> = (0..12).map(|_| loopback_ip()).collect();
    let picks = |node: &Udp| -> Vec<String> {
        sources
            .iter()
            .map(|ip| {
                UdpClient::from(*ip, node.listen)
                    .which(b"q", 3)
                    .expect("an answer")
            })
            .collect()
    };
    let first = start(2, &refs, "balance = \"maglev\"");
    let before = picks(&first);
    // Another port of the same address: same backend.
    let again = picks(&first);
    assert_eq!(before, again, "a client address keeps its backend");
    let used: HashSet<&String> = before.iter().collect();
    assert!(used.len() >= 2, "maglev spreads addresses: {before:?}");
    drop(first);
    let second = start(1, &refs, "balance = \"maglev\"");
    assert_eq!(picks(&second), before, "and across a restart");
}

#[test]
fn responses_1_ends_a_flow_at_its_reply() {
    let a = UdpBackend::start("a");
    let node = start(1, &[&a], "responses = 1");
    let client = UdpClient::new(node.listen);
    for i in 0..3 {
        let (name, _) = client.ask(format!("q{i}").as_bytes()).expect("reply");
        assert_eq!(name, "a");
    }
    wait_until("the answered flows to end", || {
        let s = service(node.admin);
        s["active"] == 0 && s["flow_ends"]["answered"] == 3
    });
    assert_eq!(
        service(node.admin)["accepted"],
        3,
        "each query its own flow"
    );
}

#[test]
fn an_idle_flow_ends_after_idle_timeout_and_an_active_one_does_not() {
    let a = UdpBackend::start("a");
    let node = start(1, &[&a], "idle_timeout = \"1s\"");
    let quiet = UdpClient::new(node.listen);
    let busy = UdpClient::new(node.listen);
    quiet.ask(b"once").expect("reply");
    let started = Instant::now();
    // A datagram every 100 ms keeps a flow 10 times inside its idle_timeout.
    while started.elapsed() < Duration::from_millis(2500) {
        busy.ask(b"again").expect("reply");
        thread::sleep(Duration::from_millis(100));
    }
    let s = service(node.admin);
    assert_eq!(s["active"], 1, "the busy flow lives on: {s}");
    assert_eq!(s["flow_ends"]["idle"], 1, "{s}");
    assert_eq!(s["idle_timeouts"], 1);
    wait_until("the busy flow to idle out once it stops", || {
        service(node.admin)["active"] == 0
    });
}

#[test]
fn max_flows_drops_new_flows_and_keeps_the_open_ones() {
    let a = UdpBackend::start("a");
    let node = start(2, &[&a], "max_flows = 2");
    let one = UdpClient::new(node.listen);
    let two = UdpClient::new(node.listen);
    one.ask(b"1").expect("first flow");
    two.ask(b"2").expect("second flow");
    let three = UdpClient::new(node.listen);
    three
        .socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(three.ask(b"3").is_none(), "a third flow is over max_flows");
    assert!(one.ask(b"1 again").is_some(), "open flows keep working");
    assert!(two.ask(b"2 again").is_some());
    let s = service(node.admin);
    assert_eq!(s["drops"]["max_flows"], 1, "{s}");
    assert_eq!(s["active"], 2);
}

#[test]
fn the_flows_of_a_dead_backend_move_on_their_next_datagram() {
    let mut a = UdpBackend::start("a");
    let b = UdpBackend::start("b");
    let node = start(1, &[&a, &b], "");
    let clients: Vec<UdpClient> = (0..4).map(|_| UdpClient::new(node.listen)).collect();
    let on_a: Vec<&UdpClient> = clients
        .iter()
        .filter(|c| c.which(b"hi", 3).as_deref() == Some("a"))
        .collect();
    assert!(!on_a.is_empty(), "round robin put some flows on a");
    a.stop();
    for client in on_a {
        // The first datagram after the death draws a refusal (and is lost); the flow ends, and
        // the next picks again.
        let moved = client.which(b"still there?", 4);
        assert_eq!(moved.as_deref(), Some("b"));
    }
    let state = backend(node.admin, a.addr);
    assert!(
        state["connect_failures"].as_u64().unwrap() >= 1,
        "refusals count against the backend: {state}"
    );
    let s = service(node.admin);
    assert!(s["flow_ends"]["refused"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn a_udp_health_check_takes_a_silent_backend_down_and_brings_it_back() {
    let a = UdpBackend::start("a");
    let b = UdpBackend::start("b");
    let health = r#"health = { kind = "udp", send = "ping", expect = "a", interval = "200ms", timeout = "150ms", rise = 2, fall = 2 }"#;
    let ip = IpAddr::V4(loopback_ip());
    let listen = free_udp_addr(ip);
    let admin = free_addr(ip);
    let backends = format!(
        "[{{ addr = \"{}\" }}, {{ addr = \"{}\", health = {{ kind = \"udp\", send = \"ping\", expect = \"b\" }} }}]\n{health}",
        a.addr, b.addr
    );
    let node = Node::start(&udp_config(listen, admin, 1, &backends, ""));
    node.wait_log("listening on", 1);
    node.wait_listening(admin);
    let up = |addr| backend(admin, addr)["up"].as_bool().unwrap();
    wait_until("both checked up", || up(a.addr) && up(b.addr));
    a.set_silent(true);
    wait_until("the silent backend to go down", || !up(a.addr));
    let health = backend(admin, a.addr)["health"].clone();
    assert!(
        health["last_error"].as_str().unwrap().contains("timed out"),
        "{health}"
    );
    for _ in 0..6 {
        let client = UdpClient::new(listen);
        assert_eq!(
            client.which(b"q", 2).as_deref(),
            Some("b"),
            "new flows avoid it"
        );
    }
    a.set_silent(false);
    wait_until("it to come back", || up(a.addr));
    let names: HashSet<String> = (0..6)
        .filter_map(|_| UdpClient::new(listen).which(b"q", 2))
        .collect();
    assert!(names.contains("a"), "{names:?}");
    drop(node);
}

#[test]
fn a_reload_under_load_loses_no_datagram_of_a_kept_service() {
    let a = UdpBackend::start("a");
    let b = UdpBackend::start("b");
    let node = start(2, &[&a], "");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, sent, answered, listen) =
                (stop.clone(), sent.clone(), answered.clone(), node.listen);
            thread::spawn(move || {
                let client = UdpClient::new(listen);
                let started = Instant::now();
                let mut n = 0u64;
                // Bounded: at most 20 s, however the stop flag goes.
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
                    let payload = format!("{i}-{n}");
                    sent.fetch_add(1, Ordering::Relaxed);
                    if let Some((_, echo)) = client.ask(payload.as_bytes()) {
                        assert_eq!(echo, payload.as_bytes(), "replies in order");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let config = std::fs::read_to_string(&node.node.config).unwrap();
    let both = config.replace(&udp_backend_list(&[&a]), &udp_backend_list(&[&a, &b]));
    for round in 0..6 {
        thread::sleep(Duration::from_millis(300));
        let next = if round % 2 == 0 { &both } else { &config };
        node.node.reload(next);
        node.node.wait_log("reload", round + 1);
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    assert!(sent > 100, "the load ran: {sent}");
    assert_eq!(
        answered, sent,
        "every datagram answered through six reloads"
    );
    let s = service(node.admin);
    assert_eq!(s["accepted"], 4, "the four flows were kept: {s}");
}

#[test]
fn a_tcp_and_a_udp_service_share_one_address_and_port() {
    let tcp = Backend::start("t");
    let udp = UdpBackend::start("u");
    let ip = IpAddr::V4(loopback_ip());
    let listen = free_addr(ip);
    let config = format!(
        r#"[node]
name = "test"
threads = 2
admin = ""

[[service]]
name = "web"
listen = "{listen}"
pool = "tcp"

[[service]]
name = "dns"
protocol = "udp"
listen = "{listen}"
pool = "udp"

[[pool]]
name = "tcp"
backends = [{{ addr = "{}" }}]

[[pool]]
name = "udp"
backends = [{{ addr = "{}" }}]
"#,
        tcp.addr, udp.addr
    );
    let node = Node::start_listening(&config, listen);
    assert_eq!(which_backend(listen).unwrap(), "t");
    assert_eq!(UdpClient::new(listen).which(b"x", 3).as_deref(), Some("u"));
    drop(node);
}

#[test]
fn a_64_kib_datagram_passes_whole_and_proxy_v2_heads_each_datagram() {
    let a = UdpBackend::start("a");
    let node = start(1, &[&a], "proxy_protocol = \"v2\"");
    let client = UdpClient::new(node.listen);
    let big: Vec<u8> = (0..60_000u32).map(|i| i as u8).collect();
    let (_, echo) = client.ask(&big).expect("a reply");
    // The backend echoes what it got: the PROXY v2 header, then the datagram whole.
    assert_eq!(&echo[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(echo[13], 0x12, "AF_INET + DGRAM");
    let header_len = 16 + usize::from(u16::from_be_bytes([echo[14], echo[15]]));
    let client_addr = client.socket.local_addr().unwrap();
    let IpAddr::V4(client_ip) = client_addr.ip() else {
        unreachable!()
    };
    assert_eq!(&echo[16..20], &client_ip.octets());
    assert_eq!(u16::from_be_bytes([echo[24], echo[25]]), client_addr.port());
    assert_eq!(&echo[header_len..], &big[..]);
}

#[test]
fn runs_of_equal_datagrams_reach_the_backend_as_the_datagrams_sent() {
    // A run of one flow's datagrams of one size goes to the backend in one segmented send
    // (UDP GSO; the last of a run may be shorter): the backend must still get each datagram
    // whole, on its own and in order, whatever the runs and their breaks.
    let ip = IpAddr::V4(loopback_ip());
    let sink = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    sink.set_recv_buffer_size(4 << 20).unwrap();
    sink.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    let sink: std::net::UdpSocket = sink.into();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let listen = free_udp_addr(ip);
    let admin = free_addr(ip);
    let backends = format!("[{{ addr = \"{}\" }}]", sink.local_addr().unwrap());
    let node = Node::start(&udp_config(listen, admin, 1, &backends, ""));
    node.wait_log("listening on", 1);
    node.wait_listening(admin);
    let client = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    client.connect(listen).unwrap();
    let mut sizes = Vec::new();
    for _ in 0..5 {
        sizes.extend([1200; 20]);
        sizes.push(500); // a shorter one closes a run
        sizes.extend([64; 15]);
        sizes.push(1300); // a longer one breaks it
        sizes.extend([9000; 4]);
        sizes.push(7);
    }
    send_and_expect_in_order(&client, &sink, &sizes, String::new);
    assert_eq!(service(admin)["datagrams_in"], sizes.len() as u64);
}

#[test]
fn sigterm_serves_open_flows_until_they_end_and_takes_no_new_one() {
    let a = UdpBackend::start("a");
    let mut node = start(1, &[&a], "idle_timeout = \"1500ms\"");
    let open = UdpClient::new(node.listen);
    open.ask(b"before").expect("reply");
    node.node.signal(rustix::process::Signal::TERM);
    thread::sleep(Duration::from_millis(200));
    assert!(
        open.ask(b"during the drain").is_some(),
        "an open flow is served"
    );
    let late = UdpClient::new(node.listen);
    late.socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(late.ask(b"new").is_none(), "no new flow while draining");
    let stopped = Instant::now();
    let status = node.node.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "exits when its flow idles out, before the 5 s deadline"
    );
}

/// Where the route's MTU is smaller than a run's datagrams, the kernel refuses the segmented
/// send (a segment may not exceed the MTU): the flow must fall back to one datagram per send,
/// which the kernel fragments, and every datagram still arrive whole. Inside a namespace of the
/// test's own, whose loopback gets an MTU of 1,280.
#[test]
fn where_the_mtu_refuses_segmented_sends_datagrams_go_one_by_one_and_arrive_whole() {
    use common::netns::{Lan, admin_in, in_netns, ip};
    let Some(mut lan) = Lan::new("udp segmented sends refused by a small MTU") else {
        return;
    };
    let ns = lan.host("lb", 1);
    ip(&["-n", &ns, "link", "set", "lo", "mtu", "1280"]);
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (listen, admin) = (
        SocketAddr::new(localhost, 5300),
        SocketAddr::new(localhost, 9090),
    );
    let (sink, client) = in_netns(&ns, move || {
        let sink = std::net::UdpSocket::bind(SocketAddr::new(localhost, 9053)).unwrap();
        let client = std::net::UdpSocket::bind(SocketAddr::new(localhost, 0)).unwrap();
        (sink, client)
    });
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.connect(listen).unwrap();
    let backends = "[{ addr = \"127.0.0.1:9053\" }]";
    let node = Node::start_in_netns(&ns, &udp_config(listen, admin, 1, backends, ""));
    node.wait_log("listening on", 1);
    // Runs of 1,400-byte datagrams (over the MTU, segmented sends refused), then runs of
    // 600-byte ones (under it: segmented sends would pass, but this flow has fallen back).
    let sizes: Vec<usize> = [[1400; 30], [600; 30]].concat();
    send_and_expect_in_order(&client, &sink, &sizes, || {
        admin_in(&ns, "GET", "/status").map_or_else(String::new, |(_, b)| b)
    });
    drop(node);
}

/// Datagram `i` of a numbered sequence: `len` bytes, its index in the first four.
fn numbered(i: usize, len: usize) -> Vec<u8> {
    let mut d = vec![(i % 251) as u8; len];
    d[..4].copy_from_slice(&(i as u32).to_be_bytes());
    d
}

/// Sends numbered datagrams of `sizes` from `client` back to back (so that they queue and go
/// on in batches) and checks that `sink` gets each whole, on its own and in order; `context`
/// is added to the message of a datagram that does not come.
fn send_and_expect_in_order(
    client: &std::net::UdpSocket,
    sink: &std::net::UdpSocket,
    sizes: &[usize],
    context: impl Fn() -> String,
) {
    for (i, &len) in sizes.iter().enumerate() {
        client.send(&numbered(i, len)).unwrap();
    }
    let mut buf = vec![0u8; 65_536];
    for (i, &len) in sizes.iter().enumerate() {
        let n = sink
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} of {}: {e}\n{}", sizes.len(), context()));
        assert_eq!(buf[..n], numbered(i, len)[..], "datagram {i} ({len} bytes)");
    }
}
