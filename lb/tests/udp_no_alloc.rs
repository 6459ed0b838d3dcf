//! A UDP service's per-datagram path allocates nothing once warm: a datagram taken by the
//! worker (recvmmsg), found in its flow table, sent to the flow's backend (sendmmsg), the reply
//! read from the flow's socket and sent back to the client. Counted on the thread that runs the
//! worker (and the client), with `syscall`'s allocator that counts each thread's allocations;
//! the backend echoes on a thread of its own.

use std::net::UdpSocket as StdUdpSocket;
use std::sync::Arc;
use std::time::Duration;

use lb::config::parse;
use lb::generation;
use lb::registry::Registry;
use lb::udp::listener::{self, UdpListener};
use syscall::alloc_count::{CountingAllocator, allocations};
use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

async fn round_trip(client: &UdpSocket, buf: &mut [u8]) {
    client.send(b"query").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), client.recv(buf))
        .await
        .expect("a reply")
        .unwrap();
    assert_eq!(&buf[..n], b"query");
}

#[test]
fn a_datagram_and_its_reply_allocate_nothing_once_the_flow_is_open() {
    let backend = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = backend.recv_from(&mut buf) {
            let _ = backend.send_to(&buf[..n], from);
        }
    });
    let listen = StdUdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = parse(
        &format!(
            "[node]\nthreads = 1\nadmin = \"\"\n[[service]]\nname = \"dns\"\nprotocol = \"udp\"\n\
             listen = \"{listen}\"\npool = \"p\"\n[[pool]]\nname = \"p\"\n\
             backends = [{{ addr = \"{backend_addr}\" }}]\n"
        ),
        "test.toml",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let registry = Registry::default();
        let monitor = healthcheck::Monitor::new();
        let service = generation::build(&config, &registry, &monitor).remove(0);
        let bound = listener::bind(listen, false, &[tokio::runtime::Handle::current()]).unwrap();
        let sessions = TaskTracker::new();
        let _udp = UdpListener::start(bound, Arc::clone(&service), &sessions);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(listen).await.unwrap();
        let mut buf = vec![0u8; 2048];
        // Warm: the flow, its socket and the table entry; tokio's and arc-swap's first uses.
        for _ in 0..200 {
            round_trip(&client, &mut buf).await;
        }
        let before = allocations();
        let counted = std::hint::black_box(vec![1u8; 16]);
        assert_eq!(allocations() - before, 1, "the counter counts");
        drop(counted);
        let before = allocations();
        for _ in 0..1000 {
            round_trip(&client, &mut buf).await;
        }
        let made = allocations() - before;
        assert_eq!(
            made, 0,
            "1,000 round trips through an open flow allocated {made} times"
        );
        assert_eq!(
            service
                .stats
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "one flow"
        );
    });
}
