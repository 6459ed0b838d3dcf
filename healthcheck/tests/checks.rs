//! Each checker against real things on loopback: listeners, a hand-written HTTP server,
//! processes. Every wait is bounded.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use healthcheck::{CheckError, CheckSpec, HttpMethod, ProcessTarget, StatusMatcher, probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

const T: Duration = Duration::from_secs(2);
/// Bound on any wait in these tests.
const LIMIT: Duration = Duration::from_secs(10);

/// A loopback port with nothing listening: bind, note the port, close.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn tcp(addr: SocketAddr, send: Option<&[u8]>, expect: Option<&[u8]>) -> CheckSpec {
    CheckSpec::Tcp {
        addr,
        send: send.map(<[u8]>::to_vec),
        expect: expect.map(<[u8]>::to_vec),
    }
}

#[tokio::test]
async fn tcp_is_alive_when_something_listens() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    probe(&tcp(l.local_addr().unwrap(), None, None), T)
        .await
        .unwrap();
}

#[tokio::test]
async fn tcp_reports_connect_failure_on_a_closed_port() {
    let err = probe(&tcp(closed_port().await, None, None), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Connect(_)), "{err:?}");
    assert!(err.to_string().starts_with("connect failed"), "{err}");
}

#[tokio::test]
async fn tcp_works_over_ipv6_loopback() {
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        return; // no IPv6 on this host
    };
    probe(&tcp(l.local_addr().unwrap(), None, None), T)
        .await
        .unwrap();
}

/// A server that answers one connection: reads one chunk (up to 64 bytes), replies `reply`,
/// returns what it read.
async fn echo_server(reply: &'static [u8]) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0; 64];
        let n = s.read(&mut buf).await.unwrap();
        buf.truncate(n);
        s.write_all(reply).await.unwrap();
        buf
    });
    (addr, task)
}

#[tokio::test]
async fn tcp_send_expect_passes_when_the_reply_starts_with_expect() {
    let (addr, server) = echo_server(b"+PONG\r\nmore").await;
    probe(&tcp(addr, Some(b"PING\r\n"), Some(b"+PONG")), T)
        .await
        .unwrap();
    let got = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(got, b"PING\r\n");
}

#[tokio::test]
async fn tcp_send_expect_fails_on_a_different_reply() {
    let (addr, _server) = echo_server(b"-ERR no\r\n").await;
    let err = probe(&tcp(addr, Some(b"PING\r\n"), Some(b"+PONG")), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Expect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(r#"expected a reply starting with "+PONG", got "-"#),
        "{msg}"
    );
}

#[tokio::test]
async fn tcp_expect_fails_when_the_server_closes_early() {
    let (addr, _server) = echo_server(b"+PO").await;
    let err = probe(&tcp(addr, Some(b"PING\r\n"), Some(b"+PONG")), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Expect { .. }), "{err:?}");
}

/// A one-connection HTTP/1.1 server: reads the request head, answers `response` verbatim,
/// returns the request head it saw.
async fn http_server(response: &'static str) -> (SocketAddr, JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(response.as_bytes()).await.unwrap();
        let _ = s.shutdown().await;
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, task)
}

fn http(addr: SocketAddr, method: HttpMethod, expect: &str, body: Option<&str>) -> CheckSpec {
    CheckSpec::Http {
        addr,
        method,
        path: "/healthz".into(),
        host: None,
        expect: expect.parse().unwrap(),
        body: body.map(str::to_owned),
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nall is well";

#[tokio::test]
async fn http_200_is_alive_and_the_request_is_well_formed() {
    let (addr, server) = http_server(OK).await;
    probe(&http(addr, HttpMethod::Get, "200-399", Some("is well")), T)
        .await
        .unwrap();
    let head = timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
}

#[tokio::test]
async fn http_500_is_a_status_error() {
    let (addr, _server) =
        http_server("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n").await;
    let err = probe(&http(addr, HttpMethod::Get, "200-399", None), T)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CheckError::Status { got: 500, expected } if expected == "200-399"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "status 500, expected 200-399");
}

#[tokio::test]
async fn http_status_list_accepts_a_listed_code() {
    let (addr, _server) = http_server("HTTP/1.1 204 No Content\r\n\r\n").await;
    probe(&http(addr, HttpMethod::Get, "200,204", None), T)
        .await
        .unwrap();
}

#[tokio::test]
async fn http_body_without_the_substring_is_a_body_error() {
    let (addr, _server) = http_server(OK).await;
    let err = probe(&http(addr, HttpMethod::Get, "200", Some("database: ok")), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Body { .. }), "{err:?}");
    assert_eq!(err.to_string(), r#"body does not contain "database: ok""#);
}

#[tokio::test]
async fn http_body_is_found_in_a_chunked_response() {
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nstat\r\n6\r\nus: ok\r\n0\r\n\r\n";
    let (addr, _server) = http_server(chunked).await;
    probe(&http(addr, HttpMethod::Get, "200", Some("status: ok")), T)
        .await
        .unwrap();
}

#[tokio::test]
async fn http_head_sends_head_and_expects_no_body() {
    // Content-Length announces a body HEAD must not read: a client that tried would hang.
    let (addr, server) = http_server("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n").await;
    probe(&http(addr, HttpMethod::Head, "200", None), T)
        .await
        .unwrap();
    let head = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(head.starts_with("HEAD /healthz HTTP/1.1\r\n"), "{head}");
}

#[tokio::test]
async fn http_sends_the_configured_host_header() {
    let (addr, server) = http_server(OK).await;
    let spec = CheckSpec::Http {
        addr,
        method: HttpMethod::Get,
        path: "/status?full=1".into(),
        host: Some("app.example.test".into()),
        expect: StatusMatcher::default(),
        body: None,
    };
    probe(&spec, T).await.unwrap();
    let head = timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.starts_with("get /status?full=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nhost: app.example.test\r\n"), "{head}");
}

#[tokio::test]
async fn http_server_that_never_answers_times_out_within_the_bound() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        // Read (and ignore) until the client gives up.
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let bound = Duration::from_millis(300);
    let start = Instant::now();
    let err = probe(&http(addr, HttpMethod::Get, "200", None), bound)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, CheckError::Timeout(d) if d == bound),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "timed out after 300ms");
    assert!(
        took >= bound && took < bound + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test]
async fn http_connect_refused_is_a_connect_error() {
    let err = probe(&http(closed_port().await, HttpMethod::Get, "200", None), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn http_path_without_a_leading_slash_is_rejected() {
    let spec = CheckSpec::Http {
        addr: closed_port().await,
        method: HttpMethod::Get,
        path: "healthz".into(),
        host: None,
        expect: StatusMatcher::default(),
        body: None,
    };
    let err = probe(&spec, T).await.unwrap_err();
    assert!(matches!(err, CheckError::InvalidSpec(_)), "{err:?}");
}

fn command(argv: &[&str]) -> CheckSpec {
    CheckSpec::Command {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[tokio::test]
async fn command_exit_zero_is_alive() {
    probe(&command(&["true"]), T).await.unwrap();
}

#[tokio::test]
async fn command_exit_nonzero_is_an_exit_error() {
    let err = probe(&command(&["false"]), T).await.unwrap_err();
    assert!(
        matches!(err, CheckError::Exit(s) if s.code() == Some(1)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "command failed: exit status: 1");
}

#[tokio::test]
async fn command_runs_without_a_shell() {
    // Through a shell this would print and exit 0; run directly, `$(...)` is just an argument.
    let err = probe(&command(&["test", "$(true)", "=", "x"]), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Exit(_)), "{err:?}");
}

#[tokio::test]
async fn command_missing_program_is_a_spawn_error() {
    let err = probe(&command(&["/nonexistent/tandem-check"]), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot run \"/nonexistent/tandem-check\""),
        "{err}"
    );
}

#[tokio::test]
async fn command_empty_argv_is_rejected() {
    let err = probe(&CheckSpec::Command { argv: vec![] }, T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::InvalidSpec(_)), "{err:?}");
}

#[tokio::test]
async fn command_with_endless_output_is_still_judged_by_its_exit() {
    // Far more than the capture limit: the pipe must keep being drained.
    let spec = command(&["sh", "-c", "head -c 1000000 /dev/zero; exit 3"]);
    let err = probe(&spec, Duration::from_secs(5)).await.unwrap_err();
    assert!(
        matches!(err, CheckError::Exit(s) if s.code() == Some(3)),
        "{err:?}"
    );
}

/// `/proc/PID/stat` state letter, or None when the pid is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits (bounded) until `pid` stops running. Returns its last state: `None` (reaped) or `Z`.
async fn wait_not_running(pid: u32) -> Option<char> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = state(pid);
        if matches!(s, None | Some('Z' | 'X')) || Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn command_that_hangs_is_killed_with_its_children_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "echo $$ > {0}; sleep 30 & echo $! >> {0}; wait",
        pids.display()
    );
    let bound = Duration::from_millis(500);
    let start = Instant::now();
    let err = probe(&command(&["sh", "-c", &script]), bound)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, CheckError::Timeout(d) if d == bound),
        "{err:?}"
    );
    assert!(took < bound + Duration::from_secs(2), "{took:?}");

    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    let [shell, sleeper] = pids[..] else {
        panic!("expected two pids, got {text:?}")
    };
    // The shell is our child: it must be killed *and* reaped, so its pid is gone entirely.
    assert_eq!(
        wait_not_running(shell).await,
        None,
        "shell {shell} left behind"
    );
    // The sleeper was the shell's child; once orphaned, reaping it is init's job (a container's
    // init may never do it), so "not running" means gone or a zombie.
    let s = wait_not_running(sleeper).await;
    assert!(
        matches!(s, None | Some('Z' | 'X')),
        "sleep {sleeper} still running: {s:?}"
    );
}

fn pid_file(path: &Path) -> CheckSpec {
    CheckSpec::Process {
        target: ProcessTarget::PidFile(path.to_owned()),
    }
}

/// Kills and reaps a spawned child even when the test fails.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn process_pid_file_of_a_running_process_is_alive_and_stale_once_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let mut child = Reap(
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap(),
    );
    std::fs::write(&path, format!("{}\n", child.0.id())).unwrap();
    probe(&pid_file(&path), T).await.unwrap();

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let err = probe(&pid_file(&path), T).await.unwrap_err();
    assert!(matches!(err, CheckError::NoProcess(_)), "{err:?}");
    assert!(err.to_string().ends_with("is not running"), "{err}");
}

#[tokio::test]
async fn process_pid_file_of_a_zombie_is_not_alive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let mut child = Reap(std::process::Command::new("true").spawn().unwrap());
    let pid = child.0.id();
    std::fs::write(&path, pid.to_string()).unwrap();
    // Not waited for yet: once it exits it stays a zombie, our child.
    let deadline = Instant::now() + LIMIT;
    while state(pid) != Some('Z') && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = probe(&pid_file(&path), T).await.unwrap_err();
    assert!(err.to_string().ends_with("is a zombie"), "{err}");
    child.0.wait().unwrap();
}

#[tokio::test]
async fn process_missing_or_garbage_pid_file_is_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pid");
    let err = probe(&pid_file(&missing), T).await.unwrap_err();
    assert!(matches!(err, CheckError::NoProcess(_)), "{err:?}");
    assert!(err.to_string().contains("cannot read pid file"), "{err}");

    let garbage = dir.path().join("garbage.pid");
    for text in ["", "abc", "0", "-1"] {
        std::fs::write(&garbage, text).unwrap();
        let err = probe(&pid_file(&garbage), T).await.unwrap_err();
        assert!(err.to_string().ends_with("holds no pid"), "{text:?}: {err}");
    }
}

#[tokio::test]
async fn process_by_name_finds_a_process_by_its_argv0_basename() {
    let name = format!("tandem-hc-{}", std::process::id());
    let child = Reap(
        std::process::Command::new("sleep")
            .arg0(format!("/opt/fake/{name}"))
            .arg("30")
            .spawn()
            .unwrap(),
    );
    // `spawn` returns once the child has begun its exec, which can be before the new image's
    // arguments are readable in /proc/PID/cmdline (CI once probed in that window). A real check
    // simply sees the process on its next interval; the test waits for the kernel instead.
    let cmdline = format!("/proc/{}/cmdline", child.0.id());
    let deadline = Instant::now() + LIMIT;
    while !std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"/opt/fake/"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let by_name = |n: &str| CheckSpec::Process {
        target: ProcessTarget::Name(n.to_owned()),
    };
    probe(&by_name(&name), T).await.unwrap();
    let err = probe(&by_name(&format!("{name}-nope")), T)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::NoProcess(_)), "{err:?}");
    drop(child);
    let err = probe(&by_name(&name), T).await.unwrap_err();
    assert!(matches!(err, CheckError::NoProcess(_)), "{err:?}");
}

#[tokio::test]
async fn process_by_name_matches_comm() {
    // Our own test binary's comm (first 15 bytes of its file name) is certainly running.
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let spec = CheckSpec::Process {
        target: ProcessTarget::Name(comm.trim_end().to_owned()),
    };
    probe(&spec, T).await.unwrap();
}
