//! UDP pieces of the end-to-end tests: echo backends that say who they are, clients, and a
//! node config with UDP services. Loopback only; every wait bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use super::loopback_ip;

/// A UDP backend: answers each datagram with its name, a newline and the datagram, unless told
/// to keep silent. Dropping (or [`UdpBackend::stop`]) closes its port, so datagrams to it draw
/// an ICMP port unreachable.
pub struct UdpBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Datagrams received.
    pub received: Arc<AtomicU64>,
    pub silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl UdpBackend {
    pub fn start(name: &str) -> Self {
        Self::start_on(name, SocketAddr::new(IpAddr::V4(loopback_ip()), 0))
    }

    pub fn start_on(name: &str, addr: SocketAddr) -> Self {
        Self::from_socket(name, UdpSocket::bind(addr).expect("bind a UDP backend"))
    }

    /// A backend serving on `socket` (e.g. one bound inside a test's network namespace).
    pub fn from_socket(name: &str, socket: UdpSocket) -> Self {
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let silent = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, r, q, s) = (
            name.to_owned(),
            received.clone(),
            silent.clone(),
            stop.clone(),
        );
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut reply = Vec::with_capacity(65_600);
            while !s.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                r.fetch_add(1, Ordering::Relaxed);
                if q.load(Ordering::Relaxed) {
                    continue;
                }
                reply.clear();
                reply.extend_from_slice(n.as_bytes());
                reply.push(b'\n');
                reply.extend_from_slice(&buf[..len]);
                let _ = socket.send_to(&reply, from);
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            received,
            silent,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the port: what is sent to it now is refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client: one socket (one address and port: one flow), connected to the service.
pub struct UdpClient {
    pub socket: UdpSocket,
}

impl UdpClient {
    pub fn new(service: SocketAddr) -> Self {
        Self::from(Ipv4Addr::LOCALHOST, service)
    }

    /// A client with source address `source` (to act as many different clients).
    pub fn from(source: Ipv4Addr, service: SocketAddr) -> Self {
        let socket = UdpSocket::bind((source, 0)).expect("bind a UDP client");
        socket.connect(service).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        Self { socket }
    }

    /// Sends `payload`; the reply (name of the backend, echoed payload), or `None` if none
    /// came within the read timeout.
    pub fn ask(&self, payload: &[u8]) -> Option<(String, Vec<u8>)> {
        self.socket.send(payload).ok()?;
        self.reply()
    }

    pub fn reply(&self) -> Option<(String, Vec<u8>)> {
        let mut buf = vec![0u8; 70_000];
        let n = self.socket.recv(&mut buf).ok()?;
        let split = buf[..n].iter().position(|b| *b == b'\n')?;
        let name = String::from_utf8_lossy(&buf[..split]).into_owned();
        Some((name, buf[split + 1..n].to_vec()))
    }

    /// The backend that answers `payload`, asking up to `tries` times (a datagram may be
    /// dropped on purpose: the first after a backend died).
    pub fn which(&self, payload: &[u8], tries: usize) -> Option<String> {
        (0..tries).find_map(|_| self.ask(payload).map(|(name, _)| name))
    }
}

/// `backends = [...]` for UDP backends.
pub fn udp_backend_list(backends: &[&UdpBackend]) -> String {
    let items: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    format!("[{}]", items.join(", "))
}

/// A free UDP port on `ip`.
pub fn free_udp_addr(ip: IpAddr) -> SocketAddr {
    UdpSocket::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A node with one UDP service `dns` on `listen` in front of `backends`, an admin API on
/// `admin`, `threads` data threads and extra service keys.
pub fn udp_config(
    listen: SocketAddr,
    admin: SocketAddr,
    threads: usize,
    backends: &str,
    service_extra: &str,
) -> String {
    format!(
        r#"[node]
name = "test"
threads = {threads}
drain_timeout = "5s"
admin = "{admin}"

[[service]]
name = "dns"
protocol = "udp"
listen = "{listen}"
pool = "p"
{service_extra}

[[pool]]
name = "p"
backends = {backends}
"#
    )
}
