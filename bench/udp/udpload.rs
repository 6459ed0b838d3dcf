//! UDP load for bench/udp/udp_bench.sh: std only, built with `rustc -O`.
//!
//!   udpload echo ADDR                       echo server (replies with what it got)
//!   udpload rr TARGET CLIENTS SECS SIZE     request/response: CLIENTS sockets, each with one
//!                                           request in flight; prints answered/s and lost
//!   udpload flood TARGET SINK SECS SIZE [RATE]
//!                                           one way: SIZE-byte datagrams at TARGET for SECS,
//!                                           as fast as it can, or RATE per second (in bursts
//!                                           of RATE/1000 each millisecond); counts what
//!                                           reaches SINK (bound here): taken, and dropped at
//!                                           its socket for want of room
//!   udpload flows TARGET N HOLD             N sockets send one datagram each, then hold HOLD s
//!
//! Every mode is bounded by its SECS (or HOLD); nothing waits forever (200 ms read timeouts).
use std::env;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i} missing or malformed; see the header"))
}

fn main() {
    let args: Vec<String> = env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("echo") => echo(arg(&args, 2)),
        Some("rr") => rr(arg(&args, 2), arg(&args, 3), arg(&args, 4), arg(&args, 5)),
        Some("flood") => flood(
            arg(&args, 2),
            arg(&args, 3),
            arg(&args, 4),
            arg(&args, 5),
            args.get(6).map(|_| arg(&args, 6)),
        ),
        Some("flows") => flows(arg(&args, 2), arg(&args, 3), arg(&args, 4)),
        _ => {
            eprintln!("usage: see the header of udpload.rs");
            std::process::exit(2);
        }
    }
}

fn echo(addr: SocketAddr) {
    let socket = UdpSocket::bind(addr).expect("bind");
    let mut buf = vec![0u8; 65_536];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

/// Two threads, each owning half the clients: send one request on each, then collect the
/// replies; a client whose reply does not come within 200 ms counts one loss.
fn rr(target: SocketAddr, clients: usize, secs: u64, size: usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (answered, lost) = (answered.clone(), lost.clone());
            thread::spawn(move || {
                let sockets: Vec<UdpSocket> = (0..clients / 2 + (t & clients & 1))
                    .map(|_| {
                        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                        s.connect(target).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                        s
                    })
                    .collect();
                let request = vec![0x42u8; size];
                let mut buf = vec![0u8; 65_536];
                while Instant::now() < deadline {
                    for s in &sockets {
                        let _ = s.send(&request);
                    }
                    for s in &sockets {
                        match s.recv(&mut buf) {
                            Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                            Err(_) => lost.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let a = answered.load(Ordering::Relaxed);
    println!(
        "rr answered_per_s {:.0} lost {}",
        a as f64 / secs as f64,
        lost.load(Ordering::Relaxed)
    );
}

fn flood(target: SocketAddr, sink: SocketAddr, secs: u64, size: usize, rate: Option<u64>) {
    // Shared with the counting thread, and open until its drops are read below (a socket
    // closed first is gone from /proc/net/udp, and its drops with it).
    let socket = Arc::new(UdpSocket::bind(sink).expect("bind the sink"));
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let counter = {
        let (socket, stop, received) = (socket.clone(), stop.clone(), received.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(target).unwrap();
    let payload = vec![0x17u8; size];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut sent = 0u64;
    match rate {
        None => {
            while Instant::now() < deadline {
                for _ in 0..64 {
                    if sender.send(&payload).is_ok() {
                        sent += 1;
                    }
                }
            }
        }
        Some(rate) => {
            // Paced: each millisecond its share, then sleep to the next millisecond.
            let tick = Duration::from_millis(1);
            let mut next = started;
            let mut due = 0u64;
            let mut ticks = 0u64;
            while next < deadline {
                ticks += 1;
                let target_total = rate * ticks / 1000;
                while due < target_total {
                    if sender.send(&payload).is_ok() {
                        sent += 1;
                    }
                    due += 1;
                }
                next += tick;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
        }
    }
    // Let what is in flight land, then stop counting.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    counter.join().unwrap();
    let got = received.load(Ordering::Relaxed);
    // What reached the sink's socket but found its queue full: forwarded by the proxy all the
    // same (the kernel's per-socket count, read while the socket is still open).
    let dropped = socket_drops(sink.port());
    drop(socket);
    println!(
        "flood sent_per_s {:.0} delivered_per_s {:.0} delivered_share {:.3} arrived_per_s {:.0}",
        sent as f64 / secs as f64,
        got as f64 / secs as f64,
        got as f64 / sent.max(1) as f64,
        (got + dropped) as f64 / secs as f64
    );
}

/// The `drops` column of the IPv4 UDP socket bound to `port`, from /proc/net/udp.
fn socket_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let wanted = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&wanted)))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0)
}

fn flows(target: SocketAddr, n: usize, hold: u64) {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(target).unwrap();
        let _ = s.send(b"hello");
        sockets.push(s);
        if sockets.len() % 256 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    println!("flows opened {n}");
    thread::sleep(Duration::from_secs(hold));
}
