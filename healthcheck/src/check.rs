//! The checkers: one probe is one async call answering "alive" (`Ok(())`) or why not.
//!
//! Every probe is bounded by its timeout and leaves nothing behind: a fresh connection per probe
//! (no pooling, so a probe never reuses a connection a broken backend still half-holds), and a
//! command is killed with its whole process group when it overruns.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::str::FromStr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// What to probe, and what counts as alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckSpec {
    /// Connect; optionally send `send` and require the reply to start with `expect`.
    Tcp {
        addr: SocketAddr,
        send: Option<Vec<u8>>,
        expect: Option<Vec<u8>>,
    },
    /// One HTTP/1.1 request on a fresh connection; the status must match `expect` and, if
    /// `body` is set, the body (its first [`BODY_LIMIT`] bytes) must contain it.
    Http {
        addr: SocketAddr,
        method: HttpMethod,
        path: String,
        /// The `Host` header; the address itself when `None`.
        host: Option<String>,
        expect: StatusMatcher,
        body: Option<String>,
    },
    /// Runs `argv` directly (no shell); exit status 0 means alive. Killed with its whole process
    /// group at the timeout, so a script's children cannot outlive it.
    Command { argv: Vec<String> },
    /// A local process is running (for services that listen on nothing we can probe).
    Process { target: ProcessTarget },
    /// An ICMP echo to `addr` is answered (IPv4): for hosts that serve nothing we could
    /// connect to, such as the default gateway a VRRP node uses to tell "my peer is gone" from
    /// "I am cut off". Needs CAP_NET_RAW.
    Icmp { addr: std::net::IpAddr },
}

/// The request method of an HTTP check. `Head` spares the backend building a body, but then a
/// `body` expectation can never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

impl HttpMethod {
    fn as_hyper(self) -> hyper::Method {
        match self {
            Self::Get => hyper::Method::GET,
            Self::Head => hyper::Method::HEAD,
        }
    }
}

/// How a process check finds its process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProcessTarget {
    /// A process whose `/proc/PID/comm` equals this, or whose `argv[0]` basename does (`comm`
    /// is cut to 15 bytes, so long names match through `argv[0]`).
    Name(String),
    /// The pid written in this file is alive and not a zombie.
    PidFile(PathBuf),
}

/// The most of an HTTP body searched for the expected substring: a health page is small, and a
/// backend streaming an endless body must not hold the probe.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The longest excerpt of a TCP reply quoted in an error.
const QUOTE_LIMIT: usize = 64;

/// Why a probe says "not alive", or why a spec is unusable. `Display` is one short sentence: it
/// lands in logs and in `/status` as the last error.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
    #[error("expected a reply starting with \"{expected}\", got \"{got}\"")]
    Expect { expected: String, got: String },
    #[error("http error: {0}")]
    Http(#[source] hyper::Error),
    #[error("status {got}, expected {expected}")]
    Status { got: u16, expected: String },
    #[error("body does not contain {expected:?}")]
    Body { expected: String },
    #[error("command failed: {0}")]
    Exit(ExitStatus),
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("no process: {0}")]
    NoProcess(String),
    #[error(
        "invalid status match {input:?}: {reason} (expected e.g. 200, 200-399 or 200,204,300-399)"
    )]
    BadStatusMatch { input: String, reason: String },
    #[error("invalid check: {0}")]
    InvalidSpec(String),
}

/// Which HTTP status codes count as alive: single codes and inclusive ranges, comma-separated
/// (`"200"`, `"200-399"`, `"200,204,300-399"`). Ranges are kept in the order written, not
/// merged, so `to_string` gives back what was parsed (less whitespace): operators see their own
/// spelling in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusMatcher(Vec<(u16, u16)>);

impl StatusMatcher {
    /// The lowest and highest codes accepted: what `http::StatusCode` accepts.
    const MIN: u16 = 100;
    const MAX: u16 = 999;

    /// Whether `status` counts as alive.
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl Default for StatusMatcher {
    /// `200-399`: success and redirects, as HAProxy's `httpchk` accepts.
    fn default() -> Self {
        Self(vec![(200, 399)])
    }
}

impl FromStr for StatusMatcher {
    type Err = CheckError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| CheckError::BadStatusMatch {
            input: input.to_owned(),
            reason,
        };
        let code = |s: &str| -> Result<u16, CheckError> {
            let s = s.trim();
            // `u16::from_str` would take "+200"; a status code is digits only.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{s:?} is not a status code")));
            }
            match s.parse::<u16>() {
                Ok(c) if (Self::MIN..=Self::MAX).contains(&c) => Ok(c),
                _ => Err(bad(format!("{s} is outside {}-{}", Self::MIN, Self::MAX))),
            }
        };
        let mut ranges = Vec::new();
        for part in input.split(',') {
            let range = match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (code(lo)?, code(hi)?);
                    if lo > hi {
                        return Err(bad(format!("range {lo}-{hi} is backwards")));
                    }
                    (lo, hi)
                }
                None => {
                    let c = code(part)?;
                    (c, c)
                }
            };
            ranges.push(range);
        }
        Ok(Self(ranges))
    }
}

impl fmt::Display for StatusMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// Runs one probe, bounded by `timeout` as a whole (connect, request and reply together).
///
/// A command that overruns is killed with its process group and reaped before this returns
/// (reaping adds at most a second, and only after a kill).
pub async fn probe(spec: &CheckSpec, timeout: Duration) -> Result<(), CheckError> {
    match spec {
        // The command path keeps its own deadline so it can kill and reap on expiry rather than
        // merely drop the child.
        CheckSpec::Command { argv } => command(argv, timeout).await,
        CheckSpec::Tcp { addr, send, expect } => {
            bounded(timeout, tcp(*addr, send.as_deref(), expect.as_deref())).await
        }
        CheckSpec::Http {
            addr,
            method,
            path,
            host,
            expect,
            body,
        } => {
            let work = http(
                *addr,
                *method,
                path,
                host.as_deref(),
                expect,
                body.as_deref(),
            );
            bounded(timeout, work).await
        }
        CheckSpec::Process { target } => bounded(timeout, process(target)).await,
        CheckSpec::Icmp { addr } => bounded(timeout, icmp(*addr, timeout)).await,
    }
}

async fn bounded(
    timeout: Duration,
    work: impl Future<Output = Result<(), CheckError>>,
) -> Result<(), CheckError> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| CheckError::Timeout(timeout))?
}

async fn tcp(
    addr: SocketAddr,
    send: Option<&[u8]>,
    expect: Option<&[u8]>,
) -> Result<(), CheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(CheckError::Connect)?;
    if let Some(bytes) = send {
        stream.write_all(bytes).await.map_err(CheckError::Io)?;
    }
    let Some(expect) = expect else {
        return Ok(());
    };
    let mut got = vec![0; expect.len()];
    let mut filled = 0;
    while filled < expect.len() {
        let n = stream
            .read(&mut got[filled..])
            .await
            .map_err(CheckError::Io)?;
        if n == 0 {
            break;
        }
        filled += n;
        // Stop at the first wrong byte: no need to wait for the rest of a wrong reply.
        if got[..filled] != expect[..filled] {
            break;
        }
    }
    got.truncate(filled);
    if got == expect {
        Ok(())
    } else {
        Err(CheckError::Expect {
            expected: quote(expect),
            got: quote(&got),
        })
    }
}

/// Printable excerpt of raw bytes for an error message.
fn quote(bytes: &[u8]) -> String {
    let mut s = bytes[..bytes.len().min(QUOTE_LIMIT)]
        .escape_ascii()
        .to_string();
    if bytes.len() > QUOTE_LIMIT {
        s.push_str("...");
    }
    s
}

/// Aborts the spawned connection driver when the probe ends or is cancelled, so a timed-out
/// probe closes its socket instead of leaving it to the backend.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn http(
    addr: SocketAddr,
    method: HttpMethod,
    path: &str,
    host: Option<&str>,
    expect: &StatusMatcher,
    body: Option<&str>,
) -> Result<(), CheckError> {
    if !path.starts_with('/') {
        return Err(CheckError::InvalidSpec(format!(
            "http path {path:?} must start with /"
        )));
    }
    let request = hyper::Request::builder()
        .method(method.as_hyper())
        .uri(path)
        .header(HOST, host.map_or_else(|| addr.to_string(), str::to_owned))
        .header(
            USER_AGENT,
            concat!("tandem-healthcheck/", env!("CARGO_PKG_VERSION")),
        )
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckError::InvalidSpec(format!("http request for {path:?}: {e}")))?;

    let stream = TcpStream::connect(addr)
        .await
        .map_err(CheckError::Connect)?;
    // Small requests: send them now rather than wait for an ACK (Nagle). Not fatal if refused.
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(CheckError::Http)?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        // Its errors also surface through `send_request` or the body, where they are reported.
        let _ = connection.await;
    }));

    let response = sender
        .send_request(request)
        .await
        .map_err(CheckError::Http)?;
    let status = response.status().as_u16();
    if !expect.matches(status) {
        return Err(CheckError::Status {
            got: status,
            expected: expect.to_string(),
        });
    }
    let Some(needle) = body else {
        return Ok(());
    };
    let mut body = response.into_body();
    let mut seen = Vec::new();
    while seen.len() < BODY_LIMIT {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame.map_err(CheckError::Http)?.into_data() else {
            continue; // trailers
        };
        let take = data.len().min(BODY_LIMIT - seen.len());
        seen.extend_from_slice(&data[..take]);
        if contains(&seen, needle.as_bytes()) {
            return Ok(());
        }
    }
    Err(CheckError::Body {
        expected: needle.to_owned(),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

async fn command(argv: &[String], timeout: Duration) -> Result<(), CheckError> {
    let finished = runner::run(argv, timeout).await.map_err(|e| match e {
        runner::RunError::Empty => CheckError::InvalidSpec("command is empty".into()),
        runner::RunError::Spawn { program, source } => CheckError::Spawn { program, source },
        runner::RunError::Wait(e) => CheckError::Io(e),
        runner::RunError::Timeout(timeout) => {
            tracing::debug!(program = %argv[0], ?timeout, "health check command killed at its timeout");
            CheckError::Timeout(timeout)
        }
    })?;
    tracing::debug!(
        program = %argv[0],
        status = %finished.status,
        stdout = %String::from_utf8_lossy(&finished.stdout),
        stderr = %String::from_utf8_lossy(&finished.stderr),
        "health check command finished"
    );
    if finished.status.success() {
        Ok(())
    } else {
        Err(CheckError::Exit(finished.status))
    }
}

async fn process(target: &ProcessTarget) -> Result<(), CheckError> {
    let target = target.clone();
    // Walking /proc is many small blocking reads; keep them off the async workers.
    tokio::task::spawn_blocking(move || match &target {
        ProcessTarget::Name(name) => find_by_name(name),
        ProcessTarget::PidFile(path) => check_pid_file(path),
    })
    .await
    .map_err(|e| CheckError::Io(io::Error::other(e)))?
}

/// ICMP echo request type and echo reply type (RFC 792).
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;

async fn icmp(addr: std::net::IpAddr, timeout: Duration) -> Result<(), CheckError> {
    let std::net::IpAddr::V4(v4) = addr else {
        return Err(CheckError::InvalidSpec(format!(
            "icmp check of {addr}: IPv4 only"
        )));
    };
    // A blocking socket with a receive timeout on a blocking thread: gateway checks are few, and
    // this keeps the crate free of `unsafe` (an async raw socket would need it).
    tokio::task::spawn_blocking(move || ping(v4, timeout))
        .await
        .map_err(|e| CheckError::Io(io::Error::other(e)))?
}

fn ping(addr: std::net::Ipv4Addr, timeout: Duration) -> Result<(), CheckError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(CheckError::Io)?;
    // Connected: the kernel hands this socket only packets from `addr`.
    let to = std::net::SocketAddr::from((addr, 0));
    socket.connect(&to.into()).map_err(CheckError::Connect)?;
    let id = (std::process::id() & 0xffff) as u16;
    let seq = fastrand::u16(..);
    let request = echo_request(id, seq);
    socket.send(&request).map_err(CheckError::Io)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(CheckError::Timeout(timeout));
        }
        // A timeout under a microsecond would round to zero, which means "wait forever".
        let left = left.max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(left))
            .map_err(CheckError::Io)?;
        let n = match std::io::Read::read(&mut &socket, &mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CheckError::Timeout(timeout));
            }
            Err(e) => return Err(CheckError::Io(e)),
        };
        if is_echo_reply(&buf[..n], id, seq) {
            return Ok(());
        }
    }
}

/// An ICMP echo request with identifier `id` and sequence `seq`, and its checksum.
fn echo_request(id: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = ICMP_ECHO_REQUEST;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(b"tandem\0\0");
    let sum = internet_checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Whether `packet` (an IPv4 datagram, as a raw socket delivers it) is the reply to our echo.
fn is_echo_reply(packet: &[u8], id: u16, seq: u16) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let header = usize::from(first & 0x0f) * 4;
    let Some(icmp) = packet.get(header..) else {
        return false;
    };
    icmp.len() >= 8
        && icmp[0] == ICMP_ECHO_REPLY
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// RFC 1071 one's-complement sum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn check_pid_file(path: &Path) -> Result<(), CheckError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CheckError::NoProcess(format!("cannot read pid file {}: {e}", path.display()))
    })?;
    let pid = text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| {
            CheckError::NoProcess(format!("pid file {} holds no pid", path.display()))
        })?;
    match proc_state(pid) {
        Some(state) if is_live(state) => Ok(()),
        Some(_) => Err(CheckError::NoProcess(format!(
            "pid {pid} from {} is a zombie",
            path.display()
        ))),
        None => Err(CheckError::NoProcess(format!(
            "pid {pid} from {} is not running",
            path.display()
        ))),
    }
}

fn find_by_name(name: &str) -> Result<(), CheckError> {
    if name.is_empty() || name.contains('/') {
        return Err(CheckError::InvalidSpec(format!("process name {name:?}")));
    }
    let entries = std::fs::read_dir("/proc").map_err(CheckError::Io)?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit mid-walk: every unreadable file simply means "not this one".
        if has_name(pid, name) && proc_state(pid).is_some_and(is_live) {
            return Ok(());
        }
    }
    Err(CheckError::NoProcess(format!(
        "none named {name:?} is running"
    )))
}

fn has_name(pid: u32, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
    if comm.is_ok_and(|c| c.trim_end_matches('\n') == name) {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
        base == name.as_bytes()
    })
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, ...), or `None` if there is no such
/// process. The name field may hold spaces and parentheses, so parse after the last `)`.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Zombies (`Z`) and dead tasks (`X`, `x`) have exited: their pid is still listed, but nothing
/// runs.
fn is_live(state: char) -> bool {
    !matches!(state, 'Z' | 'X' | 'x')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(s: &str) -> StatusMatcher {
        s.parse().unwrap()
    }

    #[test]
    fn status_matcher_accepts_codes_ranges_and_lists() {
        assert!(m("200").matches(200));
        assert!(!m("200").matches(201));
        let r = m("200-399");
        assert!(r.matches(200) && r.matches(302) && r.matches(399));
        assert!(!r.matches(199) && !r.matches(400));
        let l = m("200, 204,300-399");
        assert!(l.matches(204) && l.matches(301));
        assert!(!l.matches(201) && !l.matches(404));
        assert_eq!(l.to_string(), "200,204,300-399");
    }

    #[test]
    fn status_matcher_rejects_garbage_with_a_reason() {
        for bad in [
            "", "abc", "200-", "-200", "399-200", "99", "1000", "+200", "200,,204", "2 00",
        ] {
            let err = bad.parse::<StatusMatcher>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("invalid status match"), "{bad:?}: {msg}");
        }
        let msg = "399-200".parse::<StatusMatcher>().unwrap_err().to_string();
        assert!(msg.contains("backwards"), "{msg}");
    }

    #[test]
    fn default_status_matcher_takes_success_and_redirects() {
        let d = StatusMatcher::default();
        assert!(d.matches(200) && d.matches(399));
        assert!(!d.matches(404) && !d.matches(500));
    }

    #[test]
    fn proc_state_reads_past_a_name_with_parentheses() {
        let me = std::process::id();
        assert!(proc_state(me).is_some_and(is_live));
        assert_eq!(proc_state(u32::MAX), None);
    }

    #[test]
    fn echo_requests_checksum_to_zero_and_replies_match_id_and_sequence() {
        let request = echo_request(0x1234, 7);
        assert_eq!(
            internet_checksum(&request),
            0,
            "a valid checksum sums to zero"
        );
        let mut reply = vec![0x45u8];
        reply.extend_from_slice(&[0; 19]);
        let mut icmp = request;
        icmp[0] = ICMP_ECHO_REPLY;
        reply.extend_from_slice(&icmp);
        assert!(is_echo_reply(&reply, 0x1234, 7));
        assert!(!is_echo_reply(&reply, 0x1234, 8));
        assert!(!is_echo_reply(&reply[..24], 0x1234, 7));
        assert!(!is_echo_reply(&[], 0x1234, 7));
    }

    #[test]
    fn tcp_expect_errors_quote_binary_bytes_readably() {
        assert_eq!(quote(b"+PONG\r\n"), "+PONG\\r\\n");
        assert!(quote(&[0u8; 100]).ends_with("..."));
    }

    proptest! {
        #[test]
        fn status_matcher_parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<StatusMatcher>();
        }

        #[test]
        fn status_matcher_parse_never_panics_on_near_misses(s in "[0-9,\\- +]{0,24}") {
            let _ = s.parse::<StatusMatcher>();
        }

        #[test]
        fn status_matcher_accepts_what_it_formats(
            ranges in prop::collection::vec((100u16..=999, 0u16..=200), 1..6),
            probe in 0u16..=1100,
        ) {
            let ranges: Vec<(u16, u16)> =
                ranges.into_iter().map(|(lo, len)| (lo, lo.saturating_add(len).min(999))).collect();
            let matcher = StatusMatcher(ranges.clone());
            let parsed: StatusMatcher = matcher.to_string().parse().unwrap();
            prop_assert_eq!(&parsed, &matcher);
            let expected = ranges.iter().any(|&(lo, hi)| lo <= probe && probe <= hi);
            prop_assert_eq!(parsed.matches(probe), expected);
        }
    }
}
