//! The checkers: one probe is one async call answering "alive" (`Ok(())`) or why not.
//!
//! Every probe is bounded by its timeout and leaves nothing behind: a fresh connection per probe
//! (no pooling, so a probe never reuses a connection a broken backend still half-holds), and a
//! command is killed with its whole process group when it overruns.

mod http;
mod icmp;
mod process;
mod tcp;
mod udp;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::str::FromStr;
use std::time::Duration;

use http::http;
use icmp::icmp;
use process::process;
use tcp::tcp;
use udp::udp;

/// What to probe, and what counts as alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckSpec {
    /// Connect; optionally send `send` and require the reply to start with `expect`.
    Tcp {
        addr: SocketAddr,
        send: Option<Vec<u8>>,
        expect: Option<Vec<u8>>,
    },
    /// Send `send` as one datagram from a fresh socket connected to `addr`; a reply (starting
    /// with `expect`, if set) must come back. An ICMP port unreachable fails at once.
    Udp {
        addr: SocketAddr,
        send: Vec<u8>,
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

impl CheckError {
    /// Whether this host, not the target, failed the probe: out of descriptors, memory,
    /// buffers, ephemeral ports or processes. Such a result says nothing of the target, so it
    /// must not count against it: a flood that exhausts the node's descriptors would
    /// otherwise mark every healthy backend down.
    pub fn is_host_fault(&self) -> bool {
        let io = match self {
            CheckError::Connect(e) | CheckError::Io(e) => e,
            // fork hit the process limit.
            CheckError::Spawn { source, .. } if source.raw_os_error() == Some(libc::EAGAIN) => {
                return true;
            }
            CheckError::Spawn { source, .. } => source,
            CheckError::Http(e) => {
                // hyper keeps the i/o error it hit as its source.
                match std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>()) {
                    Some(e) => e,
                    None => return false,
                }
            }
            _ => return false,
        };
        is_host_errno(io)
    }
}

/// The errnos that say the host ran out of something (see [`CheckError::is_host_fault`]);
/// EADDRNOTAVAIL on a connect: out of ephemeral ports.
fn is_host_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
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
        CheckSpec::Udp { addr, send, expect } => {
            bounded(timeout, udp(*addr, send, expect.as_deref())).await
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

#[cfg(test)]
mod tests {
    use super::icmp::{ICMP_ECHO_REPLY, echo_request, internet_checksum, is_echo_reply};
    use super::process::{is_live, proc_state};
    use super::tcp::quote;
    use super::*;
    use proptest::prelude::*;

    fn m(s: &str) -> StatusMatcher {
        s.parse().unwrap()
    }

    #[test]
    fn running_out_of_descriptors_memory_or_ports_is_the_host_s_fault_not_the_target_s() {
        let os = io::Error::from_raw_os_error;
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(CheckError::Connect(os(errno)).is_host_fault(), "{errno}");
            assert!(CheckError::Io(os(errno)).is_host_fault(), "{errno}");
        }
        let spawn = |errno| CheckError::Spawn {
            program: "x".into(),
            source: os(errno),
        };
        assert!(
            spawn(libc::EAGAIN).is_host_fault(),
            "fork at the process limit"
        );
        assert!(spawn(libc::EMFILE).is_host_fault());
        for target_fault in [
            CheckError::Connect(os(libc::ECONNREFUSED)),
            CheckError::Connect(os(libc::EHOSTUNREACH)),
            CheckError::Io(os(libc::ECONNRESET)),
            CheckError::Io(os(libc::EAGAIN)),
            spawn(libc::ENOENT),
            CheckError::Timeout(Duration::from_secs(1)),
            CheckError::NoProcess("gone".into()),
        ] {
            assert!(!target_fault.is_host_fault(), "{target_fault}");
        }
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
