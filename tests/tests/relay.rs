//! What a client sees of the relay: both directions, half-close, idle timeout, limits,
//! PROXY protocol headers, IPv6. The relay's own behaviours run twice, once on each way of
//! moving bytes (`[node] io`): io_uring and epoll.
//!
//! Over 600 lines on purpose: each test is one short scenario a client relies on, and they
//! are kept together so the transport matrix (which behaviour runs on which `io`) reads in
//! one place.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr};
use std::time::Duration;

use common::*;

on_each_io! {
    half_close_lets_the_response_finish_after_the_request_ends(io) =>
        half_close_lets_the_response_finish_after_the_request_ends_io_uring,
        half_close_lets_the_response_finish_after_the_request_ends_epoll,
}

fn half_close_lets_the_response_finish_after_the_request_ends(io: &str) {
    let Some((_a, listen, _node)) = node_before_a(io, "", 1) else {
        return;
    };
    let mut c = Client::connect(listen).unwrap();
    let request: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.stream.write_all(&request).unwrap();
    // Client is done sending; the backend only finishes (and closes) once it sees our FIN.
    c.stream.shutdown(Shutdown::Write).unwrap();
    let all = c.read_to_end().expect("a clean end of stream");
    assert_eq!(&all[..2], b"a\n");
    assert_eq!(
        &all[2..],
        &request[..],
        "every byte echoed back after the half-close"
    );
}

on_each_io! {
    streams_ending_on_a_receive_buffer_boundary_end_cleanly(io) =>
        streams_ending_on_a_receive_buffer_boundary_end_cleanly_io_uring,
        streams_ending_on_a_receive_buffer_boundary_end_cleanly_epoll,
}

/// A receive that fills the relay's whole buffer (16 KiB on io_uring, 64 KiB on epoll) turns
/// the stream over to splice, whose first read may then meet the end of the stream at once.
fn streams_ending_on_a_receive_buffer_boundary_end_cleanly(io: &str) {
    let Some((_a, listen, _node)) = node_before_a(io, "", 1) else {
        return;
    };
    for kib in [16, 32, 64, 128] {
        let mut c = Client::connect(listen).unwrap();
        let request: Vec<u8> = (0..kib * 1024u32).map(|i| (i % 253) as u8).collect();
        c.stream.write_all(&request).unwrap();
        c.stream.shutdown(Shutdown::Write).unwrap();
        let all = c.read_to_end().expect("a clean end of stream");
        assert_eq!(&all[..2], b"a\n");
        assert!(
            all[2..] == request[..],
            "{kib} KiB: {} bytes came back, not the {} sent",
            all.len() - 2,
            request.len()
        );
    }
}

on_each_io! {
    idle_connections_are_closed_after_idle_timeout(io) =>
        idle_connections_are_closed_after_idle_timeout_io_uring,
        idle_connections_are_closed_after_idle_timeout_epoll,
}

fn idle_connections_are_closed_after_idle_timeout(io: &str) {
    let Some((_a, listen, _node)) = node_before_a(io, r#"idle_timeout = "300ms""#, 1) else {
        return;
    };
    let mut busy = Client::connect(listen).unwrap();
    let mut idle = Client::connect(listen).unwrap();
    assert_eq!(idle.backend_name().unwrap(), "a");
    assert_eq!(busy.backend_name().unwrap(), "a");
    // Keep one connection busy past the timeout, leave the other silent.
    for _ in 0..8 {
        assert_eq!(busy.round_trip(b"ping").unwrap(), b"ping");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rest = idle
        .read_to_end()
        .expect("closed by the node, not by our read timeout");
    assert!(rest.is_empty());
    assert_eq!(
        busy.round_trip(b"ping").unwrap(),
        b"ping",
        "active connection survives"
    );
}

#[test]
fn service_max_conns_holds_extra_clients_until_a_slot_frees() {
    service_max_conns_holds_extra_clients_until_a_slot_frees_on(1);
}

/// Each data thread accepts on a socket of its own; between them they still serve no more
/// than `max_conns` at once.
#[test]
fn service_max_conns_holds_across_two_data_threads() {
    service_max_conns_holds_extra_clients_until_a_slot_frees_on(2);
}

fn service_max_conns_holds_extra_clients_until_a_slot_frees_on(threads: usize) {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &backend_list(&[&a]), "max_conns = 2");
    let config = with_threads(&config, threads);
    let _node = Node::start_listening(&config, listen);
    wait_until("the readiness probe to finish", || {
        a.accepted() >= 1 && a.open() == 0
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut first = Client::connect(listen).unwrap();
    let mut second = Client::connect(listen).unwrap();
    assert_eq!(first.backend_name().unwrap(), "a");
    assert_eq!(second.backend_name().unwrap(), "a");
    // The third connects (kernel backlog) but is not served while two are open.
    let mut third = Client::connect(listen).unwrap();
    third
        .stream
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.stream.read(&mut byte);
    assert!(
        early.is_err(),
        "third client was served over the limit: {early:?}"
    );
    assert_eq!(
        a.accepted(),
        3,
        "probe + two clients reached the backend, not the third"
    );
    drop(first);
    third.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(
        third.backend_name().unwrap(),
        "a",
        "served once a slot freed"
    );
    assert_eq!(second.round_trip(b"x").unwrap(), b"x");
}

#[test]
fn backend_max_conns_overflows_to_the_next_backend() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let backends = format!(
        r#"[{{ addr = "{}", max_conns = 2 }}, {{ addr = "{}", role = "backup" }}]"#,
        a.addr, b.addr
    );
    let _node = Node::start_listening(&simple_config(listen, &backends, ""), listen);
    wait_until("the readiness probe to finish", || {
        a.accepted() >= 1 && a.open() == 0
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut held = Vec::new();
    let mut names = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(listen).unwrap();
        names.push(c.backend_name().unwrap());
        held.push(c);
    }
    assert_eq!(
        names,
        ["a", "a", "b", "b"],
        "a full primary counts as unusable"
    );
}

on_each_io! {
    proxy_protocol_v1_tells_the_backend_who_the_client_is(io) =>
        proxy_protocol_v1_tells_the_backend_who_the_client_is_io_uring,
        proxy_protocol_v1_tells_the_backend_who_the_client_is_epoll,
}

fn proxy_protocol_v1_tells_the_backend_who_the_client_is(io: &str) {
    let Some((_a, listen, _node)) = node_before_a(io, r#"proxy_protocol = "v1""#, 1) else {
        return;
    };
    let mut c = Client::connect(listen).unwrap();
    assert_eq!(c.backend_name().unwrap(), "a");
    // The echo backend sends back what it received first: the header.
    let me = c.stream.local_addr().unwrap();
    let expected = format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        me.ip(),
        listen.ip(),
        me.port(),
        listen.port()
    );
    let mut header = vec![0u8; expected.len()];
    c.stream.read_exact(&mut header).unwrap();
    assert_eq!(String::from_utf8_lossy(&header), expected);
    assert_eq!(c.round_trip(b"payload").unwrap(), b"payload");
}

#[test]
fn proxy_protocol_v2_header_is_binary_with_addresses() {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &backend_list(&[&a]), r#"proxy_protocol = "v2""#);
    let _node = Node::start_listening(&config, listen);
    let mut c = Client::connect(listen).unwrap();
    assert_eq!(c.backend_name().unwrap(), "a");
    let mut header = [0u8; 28];
    c.stream.read_exact(&mut header).unwrap();
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(header[13], 0x11, "TCP over IPv4");
    let me = c.stream.local_addr().unwrap();
    let IpAddr::V4(src) = me.ip() else { panic!() };
    assert_eq!(&header[16..20], &src.octets());
    assert_eq!(u16::from_be_bytes([header[24], header[25]]), me.port());
    assert_eq!(u16::from_be_bytes([header[26], header[27]]), listen.port());
}

#[test]
fn ipv6_listener_and_backend_work() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    };
    drop(probe);
    let a = Backend::start_on("six", SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0));
    let listen = free_addr(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let _node = Node::start_listening(&simple_config(listen, &backend_list(&[&a]), ""), listen);
    let mut c = Client::connect(listen).unwrap();
    assert_eq!(c.backend_name().unwrap(), "six");
    assert_eq!(c.round_trip(b"over v6").unwrap(), b"over v6");
}

on_each_io! {
    bulk_streams_arrive_intact_in_both_directions(io) =>
        bulk_streams_arrive_intact_in_both_directions_io_uring,
        bulk_streams_arrive_intact_in_both_directions_epoll,
}

fn bulk_streams_arrive_intact_in_both_directions(io: &str) {
    // Large enough for the relay to switch both directions to splice(2) pipes.
    let Some((_a, listen, _node)) = node_before_a(io, "", 1) else {
        return;
    };
    let mut c = Client::connect(listen).unwrap();
    assert_eq!(c.backend_name().unwrap(), "a");
    let size = 16 * 1024 * 1024;
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut writer = c.stream.try_clone().unwrap();
    let sent = data.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let echoed = c.read_to_end().expect("the whole echo, then a clean close");
    sender.join().unwrap();
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "bytes changed or reordered on the way");
}

on_each_io! {
    a_backend_that_never_answers_times_out_and_the_client_is_retried_elsewhere(io) =>
        a_backend_that_never_answers_times_out_and_the_client_is_retried_elsewhere_io_uring,
        a_backend_that_never_answers_times_out_and_the_client_is_retried_elsewhere_epoll,
}

/// On io_uring the time limit is a timeout linked to the connect in the kernel; on epoll, a
/// timer of tokio's. Both must give up on the silent backend and retry the client.
fn a_backend_that_never_answers_times_out_and_the_client_is_retried_elsewhere(io: &str) {
    // A listener that never accepts, with its accept queue filled: the kernel then drops
    // further SYNs, so a connect to it hangs, like a host that vanished.
    let blackhole =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    blackhole
        .bind(&SocketAddr::new(IpAddr::V4(loopback_ip()), 0).into())
        .unwrap();
    blackhole.listen(0).unwrap();
    let hole = blackhole.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&hole.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));

    let good = Backend::start("good");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    // Round robin starts with the first backend: the black hole.
    let backends = format!(r#"[{{ addr = "{hole}" }}, {{ addr = "{}" }}]"#, good.addr);
    let config = simple_config(listen, &backends, "")
        .replace("connect_timeout = \"1s\"", "connect_timeout = \"300ms\"");
    let Some(node) = node_with_io(&config, io, listen) else {
        return;
    };
    for _ in 0..4 {
        assert_eq!(which_backend(listen).unwrap(), "good");
    }
    let log = node.log_text();
    assert!(log.contains("no answer within 300ms"), "{log}");
}

#[test]
fn freebind_lets_a_standby_listen_on_an_address_it_does_not_hold() {
    // 192.0.2.0/24 (TEST-NET-1) is on no interface here: only bound, never sent to.
    let a = Backend::start("a");
    let vip: SocketAddr = "192.0.2.77:18443".parse().unwrap();
    let held = free_addr(IpAddr::V4(loopback_ip()));
    let service = |freebind: bool| {
        format!(
            "\n[[service]]\nname = \"vip\"\nlisten = \"{vip}\"\npool = \"p\"\nfreebind = {freebind}\n"
        )
    };
    let config = |freebind: bool| {
        let base = simple_config(held, &backend_list(&[&a]), "");
        let at = base.find("[[pool]]").unwrap();
        format!("{}{}\n{}", &base[..at], service(freebind), &base[at..])
    };

    let mut refused = Node::start(&config(false));
    assert!(
        !refused.wait_exit().success(),
        "binding a foreign address needs freebind"
    );
    assert!(
        refused.log_text().contains("cannot listen on 192.0.2.77"),
        "{}",
        refused.log_text()
    );

    let node = Node::start_listening(&config(true), held);
    node.wait_log("listening on", 1);
    assert!(
        node.log_text().contains("vip=192.0.2.77:18443"),
        "{}",
        node.log_text()
    );
    assert_eq!(which_backend(held).unwrap(), "a");
}

on_each_io! {
    many_clients_talking_at_once_each_get_their_own_bytes_back(io, 1) =>
        many_clients_talking_at_once_each_get_their_own_bytes_back_io_uring,
        many_clients_talking_at_once_each_get_their_own_bytes_back_epoll,
}

on_each_io! {
    many_clients_talking_at_once_each_get_their_own_bytes_back(io, 2) =>
        many_clients_spread_over_two_data_threads_each_get_their_own_bytes_back_io_uring,
        many_clients_spread_over_two_data_threads_each_get_their_own_bytes_back_epoll,
}

/// Small messages from many connections at once: on io_uring their receives and sends share
/// batches and pool buffers, and no byte may end up on another connection or out of order.
/// With several data threads, every thread must take its share of the clients.
fn many_clients_talking_at_once_each_get_their_own_bytes_back(io: &str, threads: usize) {
    let Some((_a, listen, node)) = node_before_a(io, "", threads) else {
        return;
    };
    let before = node.data_thread_runs();
    let clients: Vec<_> = (0..32u32)
        .map(|id| {
            std::thread::spawn(move || {
                let mut c = Client::connect(listen).unwrap();
                assert_eq!(c.backend_name().unwrap(), "a");
                for round in 0..100u32 {
                    // Sizes vary so that messages straddle reads differently every round.
                    let len = 1 + ((id * 7919 + round * 104_729) % 3000) as usize;
                    let message: Vec<u8> = (0..len)
                        .map(|i| (id as usize * 31 + round as usize * 17 + i) as u8)
                        .collect();
                    assert_eq!(
                        c.round_trip(&message).unwrap(),
                        message,
                        "client {id} round {round}"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every client got its own bytes back");
    }
    if threads > 1 {
        let after = node.data_thread_runs();
        assert_eq!(
            after.len(),
            threads,
            "one data thread per `threads`: {after:?}"
        );
        for ((name, was), (_, now)) in before.iter().zip(&after) {
            // 32 clients hashed over the threads' sockets: each thread gets some (all on one
            // has odds of 2 in 2^32) and then sleeps and wakes dozens of times (17 and more
            // seen) as its clients wait on the backend. A thread with no client stays asleep.
            assert!(
                now - was > 4,
                "{name} ran {} times under load: it served no clients",
                now - was
            );
        }
    }
}

on_each_io! {
    a_backend_reset_reaches_the_client_as_a_reset(io) =>
        a_backend_reset_reaches_the_client_as_a_reset_io_uring,
        a_backend_reset_reaches_the_client_as_a_reset_epoll,
}

/// A backend that aborts mid-response must not look like one that finished: the client gets
/// a reset, never a clean end of stream it could take for a complete response.
fn a_backend_reset_reaches_the_client_as_a_reset(io: &str) {
    let backend =
        std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(loopback_ip()), 0)).unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &format!(r#"[{{ addr = "{backend_addr}" }}]"#), "");
    let Some(_node) = node_with_io(&config, io, listen) else {
        return;
    };
    let aborter = std::thread::spawn(move || {
        // The node's readiness probe reaches this backend too; answer only a real request.
        loop {
            let (mut stream, _) = backend.accept().unwrap();
            let mut request = [0u8; 3];
            if stream.read_exact(&mut request).is_err() {
                continue;
            }
            stream.write_all(b"partial response").unwrap();
            std::thread::sleep(Duration::from_millis(200));
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            return; // dropping the stream now sends RST
        }
    });
    let mut c = Client::connect(listen).unwrap();
    c.stream.write_all(b"get").unwrap();
    let mut got = Vec::new();
    let result = c.stream.read_to_end(&mut got);
    aborter.join().unwrap();
    assert_eq!(
        got, b"partial response",
        "bytes before the abort arrive ({result:?})"
    );
    let err = result.expect_err("a reset, not a clean end of stream");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

/// A node on `io` with `threads` data threads in front of one echo backend, "a":
/// [`simple_config`] with `service_extra`, listening on the address returned. `None` where
/// `io` cannot run here (see [`node_with_io`]).
fn node_before_a(
    io: &str,
    service_extra: &str,
    threads: usize,
) -> Option<(Backend, SocketAddr, Node)> {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = with_threads(
        &simple_config(listen, &backend_list(&[&a]), service_extra),
        threads,
    );
    let node = node_with_io(&config, io, listen)?;
    Some((a, listen, node))
}

/// Starts a node on `config` with `[node] io = io` and checks it says so in its start log
/// line. `None` (after saying why) when io_uring is wanted but this kernel forbids it, unless
/// TANDEM_REQUIRE_PRIVILEGED=1 (CI), where that is a failure.
fn node_with_io(config: &str, io: &str, listen: SocketAddr) -> Option<Node> {
    if !io_usable(io) {
        return None;
    }
    let node = Node::start_listening(&with_io(config, io), listen);
    // The start line comes after the listeners are up: wait for it rather than race it.
    node.wait_log(&format!("io=\"{io}\""), 1);
    Some(node)
}

on_each_io! {
    a_backend_that_stops_reading_for_a_while_still_gets_every_byte(io) =>
        a_backend_that_stops_reading_for_a_while_still_gets_every_byte_io_uring,
        a_backend_that_stops_reading_for_a_while_still_gets_every_byte_epoll,
}

/// Small messages into a backend that stops reading: the relay's writes find the backend full
/// and must keep what did not fit (on io_uring, off the shared buffer pool) until it drains.
fn a_backend_that_stops_reading_for_a_while_still_gets_every_byte(io: &str) {
    let backend = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    backend.set_recv_buffer_size(4096).unwrap(); // inherited by accepted sockets: fills fast
    backend
        .bind(&SocketAddr::new(IpAddr::V4(loopback_ip()), 0).into())
        .unwrap();
    backend.listen(16).unwrap();
    let backend_addr = backend.local_addr().unwrap().as_socket().unwrap();
    let backend: std::net::TcpListener = backend.into();
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &format!(r#"[{{ addr = "{backend_addr}" }}]"#), "");
    let Some(_node) = node_with_io(&config, io, listen) else {
        return;
    };
    let sink = std::thread::spawn(move || {
        // The node's readiness probe reaches this backend too; serve the first real stream.
        loop {
            let (mut stream, _) = backend.accept().unwrap();
            std::thread::sleep(Duration::from_millis(1500)); // not reading: the relay backs up
            let mut got = Vec::new();
            stream.read_to_end(&mut got).unwrap();
            if got.is_empty() {
                continue;
            }
            let sum: u64 = got.iter().map(|&b| u64::from(b)).sum();
            stream
                .write_all(format!("{} {sum}", got.len()).as_bytes())
                .unwrap();
            return;
        }
    });
    let mut c = Client::connect(listen).unwrap();
    let mut expected_sum = 0u64;
    // More than the node's send buffer towards the backend can hold (about 1-2 MiB on
    // loopback), in pieces each smaller than one receive buffer.
    for i in 0..500u32 {
        let message: Vec<u8> = (0..8000u32).map(|j| ((i * 13 + j) % 251) as u8).collect();
        expected_sum += message.iter().map(|&b| u64::from(b)).sum::<u64>();
        c.stream.write_all(&message).unwrap();
        // One receive per message on the node: short of a full buffer, so no switch to splice.
        std::thread::sleep(Duration::from_millis(1));
    }
    c.stream.shutdown(Shutdown::Write).unwrap();
    let answer = c
        .read_to_end()
        .expect("the backend's tally, then a clean close");
    sink.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("4000000 {expected_sum}")
    );
}

on_each_io! {
    short_connections_the_backend_closes_first_all_succeed(io, 1) =>
        short_connections_the_backend_closes_first_all_succeed_io_uring,
        short_connections_the_backend_closes_first_all_succeed_epoll,
}

on_each_io! {
    short_connections_the_backend_closes_first_all_succeed(io, 2) =>
        short_connections_on_two_data_threads_all_succeed_io_uring,
}

/// HTTP/1.0 style traffic from many clients at once: each connection carries one request,
/// the backend answers and closes, and the client hangs up as soon as it has the answer,
/// racing the FIN the node passes on. Sockets are opened and closed back to back, so a
/// socket operation that lands after its descriptor was closed (and the number reused by
/// the next connection) breaks some other client: every one must get its answer.
fn short_connections_the_backend_closes_first_all_succeed(io: &str, threads: usize) {
    const CLIENTS: u32 = 8;
    const EACH: u32 = 250;
    let backend = std::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(loopback_ip()), 0))
        .expect("bind backend");
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        // Answers each request with "re:" and the request, then closes. Ends with the test.
        for stream in backend.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut request = [0u8; 64];
                if let Ok(n) = stream.read(&mut request)
                    && n > 0
                {
                    let _ = stream.write_all(&[b"re:", &request[..n]].concat());
                }
            });
        }
    });
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &format!(r#"[{{ addr = "{backend_addr}" }}]"#), "");
    let config = with_threads(&config, threads);
    let Some(_node) = node_with_io(&config, io, listen) else {
        return;
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for n in 0..EACH {
                    let request = format!("client {id} request {n}");
                    let answer = (|| {
                        let mut c = Client::connect(listen)?;
                        c.stream.write_all(request.as_bytes())?;
                        let mut answer = vec![0u8; request.len() + 3];
                        c.stream.read_exact(&mut answer)?;
                        Ok::<_, std::io::Error>(answer)
                    })();
                    match answer {
                        Ok(a) if a == format!("re:{request}").as_bytes() => {}
                        other => failures.push(format!("{request}: {other:?}")),
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} connections failed, first: {:?}",
        failures.len(),
        CLIENTS * EACH,
        failures.first()
    );
}
