//! Shared pieces of the end-to-end tests: real backends on loopback, a real `tandem` process.
//!
//! Everything binds and connects to 127.0.0.0/8 only. Every wait is bounded. Processes are
//! stopped by PID when their handle drops.
#![allow(dead_code)]

pub mod bird;
pub mod browser;
pub mod io_modes;
pub mod keepalived;
pub mod netns;
pub mod node;
pub mod rack;
pub mod udp;

#[allow(unused_imports)] // in the test files that run on no I/O mode of their own
pub use io_modes::*;
pub use node::*;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for any single wait in these tests; reaching it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A loopback address unique to this test process and call, so parallel tests never collide
/// even if the kernel hands out the same ephemeral port twice.
pub fn loopback_ip() -> Ipv4Addr {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() as usize;
    Ipv4Addr::new(
        127,
        ((pid >> 8) % 250 + 1) as u8,
        (pid % 250) as u8 + 1,
        (n % 250) as u8 + 1,
    )
}

/// A free TCP port on `ip` (bound, read, released).
pub fn free_addr(ip: IpAddr) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind a free port on loopback");
    l.local_addr().unwrap()
}

/// A backend that, on each connection, first sends its name and a newline, then echoes every
/// byte it receives; when the client half-closes it finishes sending and closes too.
/// Connecting tells which backend was chosen; the echo proves bytes flow both ways.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    /// Connections this backend has open right now.
    pub open: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Backend {
    pub fn start(name: &str) -> Self {
        Self::start_on(name, SocketAddr::new(IpAddr::V4(loopback_ip()), 0))
    }

    pub fn start_on(name: &str, addr: SocketAddr) -> Self {
        Self::from_listener(name, TcpListener::bind(addr).expect("bind backend"))
    }

    /// A backend serving on `listener` (e.g. one bound inside a test's network namespace).
    pub fn from_listener(name: &str, listener: TcpListener) -> Self {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, a, o, s) = (
            name.to_owned(),
            accepted.clone(),
            open.clone(),
            stop.clone(),
        );
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        o.fetch_add(1, Ordering::Relaxed);
                        let (n, o) = (n.clone(), o.clone());
                        thread::spawn(move || {
                            echo(stream, &n);
                            o.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            accepted,
            open,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening: new connects to its address are refused.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn echo(mut stream: TcpStream, name: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A client connection through the node.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    /// Connects from a chosen loopback source address (to act as many different clients).
    pub fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<Self> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
        socket.connect_timeout(&addr.into(), PATIENCE)?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(Self { stream })
    }

    /// Reads the backend's name line: which backend this connection reached.
    pub fn backend_name(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte)? {
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("closed after {:?}", String::from_utf8_lossy(&line)),
                    ));
                }
                _ if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
                _ => line.push(byte[0]),
            }
        }
    }

    /// Sends `data` and reads the same number of bytes back (the backend echoes).
    pub fn round_trip(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stream.write_all(data)?;
        let mut back = vec![0u8; data.len()];
        self.stream.read_exact(&mut back)?;
        Ok(back)
    }

    /// Reads until the peer closes; Ok(bytes) on a clean close, Err on reset or timeout.
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        self.stream.read_to_end(&mut all)?;
        Ok(all)
    }
}

/// One connection through `addr`: the name of the backend it reached.
pub fn which_backend(addr: SocketAddr) -> std::io::Result<String> {
    Client::connect(addr)?.backend_name()
}

/// Like [`which_backend`], waiting at most `timeout` for the connection and as long again for
/// the name (an address nobody answers on, or a connection nobody serves, fails fast).
pub fn which_backend_within(target: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let domain = socket2::Domain::for_address(target);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.connect_timeout(&target.into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(timeout))?;
    Client { stream }.backend_name()
}

/// Polls `cond` until it holds, failing the test after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `tandem check -c FILE` on `config`: (exit success, stdout, stderr).
pub fn check(config: &str) -> (bool, String, String) {
    let dir = temp_dir();
    let path = dir.join("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(tandem_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("run tandem check");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `backends = [...]` TOML for the given backends (all primary, weight 1).
pub fn backend_list(backends: &[&Backend]) -> String {
    let items: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    format!("[{}]", items.join(", "))
}

/// A one-service config in front of `backends`, with extra `[[service]]` keys.
pub fn simple_config(listen: SocketAddr, backends: &str, service_extra: &str) -> String {
    format!(
        r#"[node]
name = "test"
threads = 1
drain_timeout = "5s"
admin = ""

[[service]]
name = "svc"
listen = "{listen}"
pool = "p"
connect_timeout = "1s"
{service_extra}

[[pool]]
name = "p"
backends = {backends}
"#
    )
}

/// A tiny HTTP/1.1 health endpoint answering every request with the status (and body) held
/// in `status` / `body`, which the test changes at will. One request per connection.
pub struct HealthEndpoint {
    pub addr: SocketAddr,
    pub status: Arc<std::sync::atomic::AtomicU16>,
    pub body: Arc<std::sync::Mutex<String>>,
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HealthEndpoint {
    pub fn start(ip: IpAddr) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind health endpoint");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let body = Arc::new(std::sync::Mutex::new("healthy".to_owned()));
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, bd, rq, sp) = (status.clone(), body.clone(), requests.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                rq.fetch_add(1, Ordering::Relaxed);
                let code = st.load(Ordering::Relaxed);
                let text = bd.lock().unwrap().clone();
                let reply = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Self {
            addr,
            status,
            body,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::Relaxed);
    }

    pub fn set_body(&self, text: &str) {
        *self.body.lock().unwrap() = text.to_owned();
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `count` consecutive connections through `listen` all reach backends named in
/// `allowed` (health changes take a probe interval or two to show).
pub fn wait_for_routing(listen: SocketAddr, allowed: &[&str], count: usize) {
    let mut streak = 0;
    wait_until(&format!("all traffic to go to {allowed:?}"), || {
        match which_backend(listen) {
            Ok(name) if allowed.contains(&name.as_str()) => streak += 1,
            _ => streak = 0,
        }
        streak >= count
    });
}

/// The token the admin tests configure.
pub const ADMIN_TOKEN: &str = "test-token-0123456789";

/// One raw HTTP/1.1 exchange (`Connection: close` is added): (status, body). `None` if the
/// connection failed or the reply was not HTTP.
pub fn http_raw(addr: SocketAddr, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).ok()?;
    s.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut request = head.trim_end_matches("\r\n").to_owned();
    request.push_str("\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    // The server may answer (and close) before reading a refused body: ignore write errors.
    let _ = s.write_all(body);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// `METHOD path` against the admin API, with the test token if `auth`.
pub fn admin(addr: SocketAddr, method: &str, path: &str, auth: bool) -> (u16, String) {
    let token = if auth {
        format!("\r\nAuthorization: Bearer {ADMIN_TOKEN}")
    } else {
        String::new()
    };
    let head = format!("{method} {path} HTTP/1.1\r\nHost: admin{token}");
    http_raw(addr, &head, b"").expect("the admin API answers")
}

/// `config` (as `simple_config` writes it) with `[node] threads = {threads}`.
pub fn with_threads(config: &str, threads: usize) -> String {
    assert!(config.contains("threads = 1\n"), "a one-thread config");
    config.replacen("threads = 1\n", &format!("threads = {threads}\n"), 1)
}

/// Whether CI asked for every test to run (`TANDEM_REQUIRE_PRIVILEGED=1`): there, a test that
/// cannot run fails instead of skipping.
pub fn every_test_required() -> bool {
    std::env::var_os("TANDEM_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1")
}

/// For a test that cannot run here for `reason`: says so and returns false, or fails the test
/// under `TANDEM_REQUIRE_PRIVILEGED=1` (see [`every_test_required`]).
pub fn skipped(reason: &str) -> bool {
    if every_test_required() {
        panic!("{reason} but TANDEM_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// Stops a helper program we started (keepalived, BIRD): SIGTERM, then waits up to 5 s for it
/// to exit, then SIGKILL.
pub fn stop_child(child: &mut std::process::Child) {
    if let Ok(None) = child.try_wait() {
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
