//! The ring against real sockets, on both kinds of ring.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::uring::buffers::CHUNK;

fn bytes(buf: &Buf) -> Vec<u8> {
    with_ring(None, |ring| ring.buffers.bytes(buf).to_vec()).unwrap()
}

/// A runtime like the daemon's: one thread, queued operations submitted at each park.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(flush)
        .build()
        .unwrap()
}

/// Installs this thread's ring of `kind`. A kernel that has deferral (6.1 on) must give
/// it when asked: a ring that silently never defers would pass every other test.
fn ring_or_skip(kind: RingKind) -> bool {
    match install(kind) {
        Ok(()) => {
            let deferring = with_ring(None, |ring| ring.defer).unwrap();
            assert_eq!(deferring, kind == RingKind::Deferring, "the ring asked for");
            true
        }
        Err(e) if kind == RingKind::Deferring && !kernel_at_least(6, 1) => {
            eprintln!("SKIPPED: kernels before 6.1 have no deferring ring ({e})");
            false
        }
        Err(e) if std::env::var_os("TANDEM_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") => {
            panic!("io_uring is not usable here ({e}) but TANDEM_REQUIRE_PRIVILEGED=1")
        }
        Err(e) => {
            eprintln!("SKIPPED: io_uring is not usable here ({e})");
            false
        }
    }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// Two test functions running `$body(kind)` on a deferring ring and on a plain one.
macro_rules! both_rings {
    ($body:ident, $deferring:ident, $plain:ident) => {
        #[test]
        fn $deferring() {
            $body(RingKind::Deferring);
        }

        #[test]
        fn $plain() {
            $body(RingKind::Plain);
        }
    };
}

both_rings!(
    holding_more_buffers_than_the_first_chunk_grows_the_pool,
    holding_more_buffers_than_the_first_chunk_grows_the_pool_deferring,
    holding_more_buffers_than_the_first_chunk_grows_the_pool_plain
);

fn holding_more_buffers_than_the_first_chunk_grows_the_pool(kind: RingKind) {
    runtime().block_on(async {
        if !ring_or_skip(kind) {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut pairs = Vec::new();
        for i in 0..CHUNK + 8 {
            let mut sender = TcpStream::connect(addr).await.unwrap();
            let (receiver, _) = listener.accept().await.unwrap();
            sender.write_all(&[i as u8; 10]).await.unwrap();
            pairs.push((sender, receiver));
        }
        // Every message is held, as a relay stalled on a slow peer holds its buffer.
        let (mut held, mut empty_pool) = (Vec::new(), 0);
        for (i, (_, receiver)) in pairs.iter().enumerate() {
            let buf = loop {
                match recv(receiver.as_raw_fd()).await {
                    Received::Data(buf) => break buf,
                    Received::NoBuffers => {
                        empty_pool += 1;
                        assert!(grow_buffers(), "the pool may grow far beyond one chunk");
                    }
                    Received::End => panic!("connection {i} ended"),
                    Received::Failed(e) => panic!("connection {i}: {e}"),
                }
            };
            assert_eq!(
                bytes(&buf),
                [i as u8; 10],
                "connection {i} got its own bytes"
            );
            held.push(buf);
        }
        assert_eq!(empty_pool, 1, "one chunk ran out, once");
        for buf in held {
            give_back(buf);
        }
    });
}

both_rings!(
    a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works,
    a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works_deferring,
    a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works_plain
);

fn a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works(kind: RingKind) {
    runtime().block_on(async {
        if !ring_or_skip(kind) {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        // Nothing to receive yet: the receive waits in the kernel until it is dropped.
        let waiting = recv(receiver.as_raw_fd());
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), waiting);
        assert!(timed_out.await.is_err());
        // Had the cancelled receive survived, it would take these bytes and lose them.
        sender.write_all(b"after").await.unwrap();
        let next = recv(receiver.as_raw_fd());
        match tokio::time::timeout(std::time::Duration::from_secs(10), next).await {
            Ok(Received::Data(buf)) => {
                assert_eq!(bytes(&buf), b"after");
                give_back(buf);
            }
            _ => panic!("the bytes sent after the cancel arrive at the next receive"),
        }
    });
}

both_rings!(
    a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly,
    a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly_deferring,
    a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly_plain
);

/// Every operation the relay uses, on one connection: connect, receive, send back the
/// received buffer, see the peer's FIN, close through the ring.
fn a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly(kind: RingKind) {
    use tokio::io::AsyncReadExt;
    runtime().block_on(async {
        if !ring_or_skip(kind) {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM.nonblocking(),
            None,
        )
        .unwrap();
        let patience = Duration::from_secs(10);
        connect(socket.as_raw_fd(), listener.local_addr().unwrap(), patience)
            .await
            .expect("connected through the ring");
        let (mut peer, _) = listener.accept().await.unwrap();
        let fd = socket.as_raw_fd();
        for round in 0..200u32 {
            let message = format!("message {round}");
            peer.write_all(message.as_bytes()).await.unwrap();
            let mut echoed = vec![0u8; message.len()];
            let mut got = 0;
            while got < message.len() {
                let buf = match tokio::time::timeout(patience, recv(fd)).await {
                    Ok(Received::Data(buf)) => buf,
                    Ok(Received::NoBuffers) => {
                        assert!(grow_buffers());
                        continue;
                    }
                    Ok(Received::End) => panic!("round {round}: ended early"),
                    Ok(Received::Failed(e)) => panic!("round {round}: {e}"),
                    Err(_) => panic!("round {round}: no completion (a lost wake-up?)"),
                };
                let (sent, buf) = send(fd, buf, 0).await;
                assert_eq!(sent.unwrap(), buf.len, "a small send fits at once");
                give_back(buf);
                got += peer.read(&mut echoed[got..]).await.unwrap();
            }
            assert_eq!(echoed, message.as_bytes(), "round {round}");
        }
        peer.shutdown().await.unwrap();
        match tokio::time::timeout(patience, recv(fd)).await {
            Ok(Received::End) => {}
            _ => panic!("the peer's FIN arrives as the end"),
        }
        close(socket.into());
        let mut rest = Vec::new();
        let read = tokio::time::timeout(patience, peer.read_to_end(&mut rest)).await;
        assert_eq!(
            read.unwrap().unwrap(),
            0,
            "closed through the ring: a clean EOF"
        );
    });
}

both_rings!(
    a_connect_nobody_answers_ends_with_its_linked_timeout,
    a_connect_nobody_answers_ends_with_its_linked_timeout_deferring,
    a_connect_nobody_answers_ends_with_its_linked_timeout_plain
);

fn a_connect_nobody_answers_ends_with_its_linked_timeout(kind: RingKind) {
    runtime().block_on(async {
        if !ring_or_skip(kind) {
            return;
        }
        // A listener that never accepts, its queue full: the kernel drops further SYNs.
        let hole =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        hole.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        hole.listen(0).unwrap();
        let addr = hole.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM.nonblocking(),
                None,
            )
            .unwrap();
            let _ = s.connect(&addr.into());
            fillers.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM.nonblocking(),
            None,
        )
        .unwrap();
        let limit = Duration::from_millis(200);
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            connect(socket.as_raw_fd(), addr, limit),
        )
        .await
        .expect("the kernel's timeout ends the connect, not ours");
        assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::TimedOut);
    });
}

both_rings!(
    a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion,
    a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion_deferring,
    a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion_plain
);

/// The promise the start-up probe makes: a ring it keeps wakes its thread for each
/// completion. 200 round trips, each finding the ring's thread asleep, take milliseconds;
/// a ring whose wake-ups wait for a grace period needs seconds. The plain ring wakes its
/// thread through task work, on every kernel, so its probe must keep it.
fn a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion(kind: RingKind) {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    runtime().block_on(async {
        if !ring_or_skip(kind) {
            return;
        }
        let seen = crate::uring::probe(kind).await.unwrap();
        match (seen.verdict(kind), kind) {
            (Ok(()), _) => {}
            (Err(why), RingKind::Deferring) => {
                eprintln!("SKIPPED: this kernel's deferring ring is turned down: {why}");
                return;
            }
            (Err(why), RingKind::Plain) => panic!("the plain ring was turned down: {why}"),
        }
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let peer = std::thread::spawn(move || {
            theirs
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let start = tokio::time::Instant::now();
            for round in 0..200u32 {
                theirs.write_all(&round.to_be_bytes()).unwrap();
                let mut back = [0u8; 4];
                theirs.read_exact(&mut back).unwrap();
                assert_eq!(u32::from_be_bytes(back), round);
            }
            start.elapsed()
        });
        let fd = ours.as_raw_fd();
        let mut echoed = 0;
        while echoed < 800 {
            let buf = match tokio::time::timeout(Duration::from_secs(10), recv(fd)).await {
                Ok(Received::Data(buf)) => buf,
                Ok(Received::NoBuffers) => {
                    assert!(grow_buffers());
                    continue;
                }
                other => panic!("after {echoed} bytes: {:?}", other.map(|_| ())),
            };
            let (sent, buf) = send(fd, buf, 0).await;
            echoed += sent.unwrap();
            give_back(buf);
        }
        let took = peer.join().unwrap();
        assert!(
            took < Duration::from_secs(2),
            "200 round trips took {took:?}: the ring's thread was not woken for each"
        );
    });
}

#[test]
fn a_ring_taken_down_leaves_the_thread_free_for_another() {
    runtime().block_on(async {
        if !ring_or_skip(RingKind::Plain) {
            return;
        }
        assert!(uninstall().await, "nothing was in flight");
        assert!(!installed());
        install(RingKind::Plain).expect("a second ring after the first is gone");
        // The new ring works: a probe's round trips go through it.
        let seen = crate::uring::probe(RingKind::Plain).await.unwrap();
        assert!(!seen.round_trips.is_empty(), "{seen:?}");
    });
}

#[test]
fn a_ring_taken_down_with_an_operation_in_flight_stays_open_but_leaves_the_thread() {
    runtime().block_on(async {
        if !ring_or_skip(RingKind::Plain) {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _sender = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        let fd = receiver.as_raw_fd();
        // A receive on a socket nobody writes to: in flight until the end of the test.
        let waiting = tokio::spawn(async move { matches!(recv(fd).await, Received::End) });
        tokio::task::yield_now().await;
        assert!(!uninstall().await, "the receive is still in the kernel");
        assert!(!installed(), "the thread no longer uses that ring");
        install(RingKind::Plain).expect("a new ring in its place");
        let seen = crate::uring::probe(RingKind::Plain).await.unwrap();
        assert!(!seen.round_trips.is_empty(), "{seen:?}");
        waiting.abort();
    });
}
