//! The admin HTTP API and the CLI on top of it, against a real node on loopback: reads follow
//! the running state, mutations need the token, bad requests get a 4xx and change nothing.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use common::*;

/// `simple_config` with the admin API on `admin` and the test token.
fn admin_config(listen: SocketAddr, backends: &str, admin: SocketAddr) -> String {
    simple_config(listen, backends, "").replace(
        "admin = \"\"",
        &format!("admin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\""),
    )
}

struct Setup {
    a: Backend,
    b: Backend,
    listen: SocketAddr,
    admin: SocketAddr,
    node: Node,
}

fn setup() -> Setup {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    let node = Node::start_listening(
        &admin_config(listen, &backend_list(&[&a, &b]), admin),
        listen,
    );
    node.wait_listening(admin);
    Setup {
        a,
        b,
        listen,
        admin,
        node,
    }
}

#[test]
fn status_and_metrics_follow_the_traffic() {
    let s = setup();
    let status = || -> serde_json::Value {
        let (code, body) = admin(s.admin, "GET", "/status", false);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    };
    let backend_totals = |v: &serde_json::Value| -> u64 {
        v["pools"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["total"].as_u64().unwrap())
            .sum()
    };
    // The start-up probe that saw the node listening counts too: once the node has accepted
    // it, measure from there.
    wait_until("the start-up probe accepted and relayed", || {
        let s = status();
        s["services"][0]["accepted"].as_u64() == Some(1) && backend_totals(&s) == 1
    });
    let before = status();
    let accepted = before["services"][0]["accepted"].as_u64().unwrap();
    let totals = backend_totals(&before);
    for _ in 0..6 {
        which_backend(s.listen).unwrap();
    }
    let after = status();
    assert_eq!(
        after["healthz"], "primary",
        "a node without VRRP is primary"
    );
    assert_eq!(after["services"][0]["name"], "svc");
    assert_eq!(
        after["services"][0]["accepted"].as_u64().unwrap(),
        accepted + 6
    );
    assert_eq!(backend_totals(&after), totals + 6);
    let backends = after["pools"][0]["backends"].as_array().unwrap();
    assert!(
        backends
            .iter()
            .all(|b| b["up"] == true && b["drained"] == false)
    );

    let connections = "tandem_service_connections_total{service=\"svc\"}";
    let (code, text) = admin(s.admin, "GET", "/metrics", false);
    assert_eq!(code, 200);
    let first = parse_metrics(&text)[connections];
    assert_eq!(first, (accepted + 6) as f64);
    for _ in 0..4 {
        which_backend(s.listen).unwrap();
    }
    let samples = parse_metrics(&admin(s.admin, "GET", "/metrics", false).1);
    assert_eq!(samples[connections], first + 4.0);
    let to_a = format!(
        "tandem_backend_connections_total{{pool=\"p\",backend=\"{}\"}}",
        s.a.addr
    );
    assert!(samples[&to_a] >= 1.0, "{text}");
    assert_eq!(samples["tandem_reloads_total{result=\"failed\"}"], 0.0);
    drop(s.b);
}

/// Parses Prometheus/OpenMetrics text: every line is a comment (`# TYPE`, `# HELP`, `# EOF`) or
/// `name{labels} value`; fails the test on anything else. Returns sample → value.
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric.starts_with("tandem_")
                && metric
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        samples.insert(name.to_owned(), value);
    }
    samples
}

/// What the node runs on, as an operator checking a default (one thread per core) node sees it.
#[test]
fn status_says_how_many_data_threads_run_and_how_they_move_bytes() {
    let a = Backend::start("a");
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin_addr) = (free_addr(ip), free_addr(ip));
    let config = with_threads(&admin_config(listen, &backend_list(&[&a]), admin_addr), 2);
    let node = Node::start_listening(&config, listen);
    node.wait_listening(admin_addr);
    let (code, body) = admin(admin_addr, "GET", "/status", false);
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["threads"], 2, "{body}");
    let expected = if io_uring_usable() {
        "io_uring"
    } else {
        "epoll"
    };
    assert_eq!(status["io"], expected, "{body}");
    // Each data thread says which way it moves bytes and on what evidence, and /metrics agrees.
    let threads = status["data_threads"].as_array().expect("data_threads");
    assert_eq!(threads.len(), 2, "{body}");
    let (_, metrics) = admin(admin_addr, "GET", "/metrics", false);
    for (i, thread) in threads.iter().enumerate() {
        let io = thread["io"].as_str().unwrap();
        let ring = io.starts_with("io_uring_");
        assert!(ring || io == "epoll", "{body}");
        assert_eq!(ring, expected == "io_uring", "{body}");
        let why = thread["why"].as_str().unwrap();
        if ring {
            assert!(
                why.contains(&format!("{io} woke its thread promptly")),
                "{why}"
            );
            assert!(
                metrics.contains(&format!(
                    "tandem_data_thread_wake_probe_seconds{{thread=\"{i}\",ring=\"{io}\"}}"
                )),
                "{metrics}"
            );
        }
        let chosen = format!("tandem_data_thread_io{{thread=\"{i}\",io=\"{io}\"}} 1");
        assert!(metrics.contains(&chosen), "{chosen} in\n{metrics}");
    }
}

#[test]
fn health_endpoints_answer_without_a_token() {
    let s = setup();
    assert_eq!(
        admin(s.admin, "GET", "/healthz", false),
        (200, "primary\n".into())
    );
    assert_eq!(admin(s.admin, "HEAD", "/healthz", false).0, 200);
    assert_eq!(admin(s.admin, "GET", "/livez", false), (200, "ok\n".into()));
}

#[test]
fn mutations_without_the_token_are_refused_and_change_nothing() {
    let s = setup();
    let drain = format!("/pools/p/backends/{}/drain", s.a.addr);
    assert_eq!(admin(s.admin, "POST", &drain, false).0, 401);
    let wrong =
        format!("POST {drain} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-the-token-at-all");
    assert_eq!(http_raw(s.admin, &wrong, b"").unwrap().0, 401);
    assert_eq!(admin(s.admin, "POST", "/swap", false).0, 401);
    assert_eq!(admin(s.admin, "POST", "/reload", false).0, 401);
    let names: std::collections::HashSet<String> =
        (0..8).map(|_| which_backend(s.listen).unwrap()).collect();
    assert_eq!(names.len(), 2, "nothing was drained: {names:?}");
    assert!(!s.node.log_text().contains("configuration reloaded"));
}

#[test]
fn drain_leaves_open_connections_alone_and_sends_no_new_ones() {
    let s = setup();
    // An open connection to `a`, kept across the drain.
    let mut open = loop {
        let mut c = Client::connect(s.listen).unwrap();
        if c.backend_name().unwrap() == "a" {
            break c;
        }
    };
    let drain = format!("/pools/p/backends/{}/drain", s.a.addr);
    assert_eq!(
        admin(s.admin, "POST", &drain, true),
        (200, "drained\n".into())
    );
    let accepted = s.a.accepted();
    for _ in 0..10 {
        assert_eq!(which_backend(s.listen).unwrap(), "b");
    }
    assert_eq!(
        s.a.accepted(),
        accepted,
        "a drained backend gets no new connection"
    );
    assert_eq!(open.round_trip(b"still here").unwrap(), b"still here");
    let status: serde_json::Value =
        serde_json::from_str(&admin(s.admin, "GET", "/status", false).1).unwrap();
    let a = status["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == s.a.addr.to_string())
        .unwrap()
        .clone();
    assert_eq!(
        (a["drained"].clone(), a["active"].clone()),
        (true.into(), 1.into())
    );

    let enable = format!("/pools/p/backends/{}/enable", s.a.addr);
    assert_eq!(
        admin(s.admin, "POST", &enable, true),
        (200, "enabled\n".into())
    );
    wait_for_routing(s.listen, &["a", "b"], 1);
    let missing = admin(s.admin, "POST", "/pools/p/backends/127.0.0.1:1/drain", true);
    assert_eq!(missing.0, 404, "{missing:?}");
    drop(s.b);
}

#[test]
fn bad_and_oversized_requests_get_4xx_and_the_node_keeps_serving() {
    let s = setup();
    let garbage = http_raw(s.admin, "NOT HTTP AT ALL", b"").map(|r| r.0);
    assert_eq!(garbage, Some(400));
    let big_head = format!(
        "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}",
        "a".repeat(10_000)
    );
    assert_eq!(http_raw(s.admin, &big_head, b"").map(|r| r.0), Some(431));
    let big_body = "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000";
    assert_eq!(
        http_raw(s.admin, big_body, &[b'x'; 1000]).map(|r| r.0),
        Some(413)
    );
    assert_eq!(admin(s.admin, "GET", "/nope", false).0, 404);
    assert_eq!(admin(s.admin, "GET", "/swap", true).0, 405);
    assert_eq!(admin(s.admin, "DELETE", "/status", true).0, 405);
    assert_eq!(
        admin(s.admin, "POST", "/pools/p/backends/x/drain", true).0,
        404
    );
    assert_eq!(admin(s.admin, "GET", "/livez", false).0, 200);
    assert!(
        which_backend(s.listen).is_ok(),
        "the data plane is untouched"
    );
}

/// A chunked body that does not parse is a bad request (400), not a large one: 413 is for a
/// body that really is over 64 KiB, chunked or not.
#[test]
fn a_malformed_chunked_body_is_a_400_and_only_an_oversized_one_a_413() {
    let s = setup();
    let chunked = "POST /reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked";
    for bad in [&b"zz\r\nhello\r\n0\r\n\r\n"[..], b"5\r\nhelloXX0\r\n\r\n"] {
        let reply = http_raw(s.admin, chunked, bad);
        assert_eq!(
            reply.as_ref().map(|r| r.0),
            Some(400),
            "{:?}: {reply:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut big = format!("{:x}\r\n", 70_000).into_bytes();
    big.extend(std::iter::repeat_n(b'x', 70_000));
    big.extend(b"\r\n0\r\n\r\n");
    assert_eq!(http_raw(s.admin, chunked, &big).map(|r| r.0), Some(413));
    // A small, well-formed chunked body is read and dropped: the request goes on to the token
    // check.
    assert_eq!(
        http_raw(s.admin, chunked, b"5\r\nhello\r\n0\r\n\r\n").map(|r| r.0),
        Some(401)
    );
    assert!(
        !s.node.log_text().contains("configuration reloaded"),
        "no body reached a reload"
    );
}

/// Requests turned away leave a trace: a counter by reason in `/metrics`, and one log line
/// for many (at most one per 10 s, saying how many), naming the latest and its client.
#[test]
fn rejected_requests_are_counted_by_reason_and_logged_without_flooding() {
    let s = setup();
    let wrong = "POST /swap HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-the-token-at-all";
    for _ in 0..40 {
        assert_eq!(http_raw(s.admin, wrong, b"").map(|r| r.0), Some(401));
    }
    for _ in 0..20 {
        assert_eq!(admin(s.admin, "GET", "/wp-login.php", false).0, 404);
    }
    for _ in 0..5 {
        assert_eq!(admin(s.admin, "PUT", "/status", false).0, 405);
        assert_eq!(
            http_raw(s.admin, "NOT HTTP AT ALL", b"").map(|r| r.0),
            Some(400)
        );
    }
    let chunked = "POST /reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked";
    assert_eq!(
        http_raw(s.admin, chunked, b"zz\r\n").map(|r| r.0),
        Some(400)
    );
    let big_head = format!(
        "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}",
        "a".repeat(10_000)
    );
    assert_eq!(http_raw(s.admin, &big_head, b"").map(|r| r.0), Some(431));
    // Answers to good requests are not rejections.
    assert_eq!(admin(s.admin, "GET", "/livez", false).0, 200);
    assert_eq!(
        admin(s.admin, "POST", "/pools/p/backends/127.0.0.1:1/drain", true).0,
        404
    );

    let samples = parse_metrics(&admin(s.admin, "GET", "/metrics", false).1);
    let rejected = |reason: &str| {
        samples[&format!(
            "tandem_admin_requests_rejected_total{{listener=\"admin\",reason=\"{reason}\"}}"
        )]
    };
    assert_eq!(rejected("bad_token"), 40.0);
    assert_eq!(rejected("not_found"), 20.0);
    assert_eq!(rejected("method"), 5.0);
    assert_eq!(rejected("malformed"), 6.0, "5 not HTTP, 1 bad chunk");
    assert_eq!(rejected("too_large"), 1.0);
    assert_eq!(rejected("no_token"), 0.0);
    let log = s.node.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("listener rejected"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "73 rejections in well under 10 s: one line\n{log}"
    );
    assert!(
        lines[0].contains("rejected 1 request(s)") && lines[0].contains("bad_token (401)"),
        "the first is said at once: {}",
        lines[0]
    );
    assert!(
        lines[0].contains("for POST \"/swap\" from 127."),
        "what and from where: {}",
        lines[0]
    );
}

#[test]
fn reload_through_the_api_says_whether_the_config_was_taken() {
    let s = setup();
    let good = admin_config(s.listen, &backend_list(&[&s.a]), s.admin);
    std::fs::write(s.node.dir.join("tandem.toml"), &good).unwrap();
    let (code, body) = admin(s.admin, "POST", "/reload", true);
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("reloaded"), "{body}");
    wait_for_routing(s.listen, &["a"], 4);

    std::fs::write(s.node.dir.join("tandem.toml"), "[[service]]\nname = 1\n").unwrap();
    let (code, body) = admin(s.admin, "POST", "/reload", true);
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("tandem.toml:2"),
        "the reason names the line: {body}"
    );
    assert_eq!(
        which_backend(s.listen).unwrap(),
        "a",
        "the old config keeps serving"
    );
    let samples = parse_metrics(&admin(s.admin, "GET", "/metrics", false).1);
    assert_eq!(samples["tandem_reloads_total{result=\"ok\"}"], 1.0);
    assert_eq!(samples["tandem_reloads_total{result=\"failed\"}"], 1.0);
}

#[test]
fn the_cli_shows_status_and_drains_through_the_api() {
    let s = setup();
    let config = s.node.dir.join("tandem.toml");
    let tandem = |args: &[&str]| {
        let out = Command::new(tandem_bin())
            .args(args)
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, table) = tandem(&["status"]);
    assert!(ok, "{table}");
    assert!(
        table.contains("healthz primary") && table.contains(&s.a.addr.to_string()),
        "{table}"
    );
    let (ok, json) = tandem(&["status", "--json"]);
    assert!(
        ok && serde_json::from_str::<serde_json::Value>(&json).is_ok(),
        "{json}"
    );

    let (ok, out) = tandem(&["drain", "p", &s.a.addr.to_string()]);
    assert!(ok, "{out}");
    for _ in 0..6 {
        assert_eq!(which_backend(s.listen).unwrap(), "b");
    }
    let (ok, out) = tandem(&["enable", "p", &s.a.addr.to_string()]);
    assert!(ok, "{out}");
    let (ok, out) = tandem(&["drain", "nope", &s.a.addr.to_string()]);
    assert!(
        !ok && out.contains("404"),
        "an unknown backend fails: {out}"
    );
    let (ok, out) = tandem(&["reload"]);
    assert!(ok && out.contains("reloaded"), "{out}");
}

#[test]
fn metrics_carry_health_check_counts_and_latency() {
    let a = Backend::start("a");
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin_addr) = (free_addr(ip), free_addr(ip));
    let config = format!(
        "{}health = {{ kind = \"tcp\", interval = \"50ms\", timeout = \"40ms\" }}\n",
        admin_config(listen, &backend_list(&[&a]), admin_addr)
    );
    let node = Node::start_listening(&config, listen);
    node.wait_listening(admin_addr);
    let labels = format!("{{pool=\"p\",backend=\"{}\"}}", a.addr);
    wait_until("a few probes", || {
        let samples = parse_metrics(&admin(admin_addr, "GET", "/metrics", false).1);
        samples
            .get(&format!("tandem_backend_checks_total{labels}"))
            .is_some_and(|n| *n >= 3.0)
    });
    let samples = parse_metrics(&admin(admin_addr, "GET", "/metrics", false).1);
    let took = samples[&format!("tandem_backend_check_duration_seconds{labels}")];
    assert!(took > 0.0, "the last probe's duration is measured: {took}");
    assert_eq!(samples[&format!("tandem_backend_up{labels}")], 1.0);
}

#[test]
fn a_draining_node_says_stopping_on_healthz() {
    let s = setup();
    // An open connection keeps the node draining for its drain_timeout (5 s).
    let mut open = Client::connect(s.listen).unwrap();
    open.backend_name().unwrap();
    s.node.signal(rustix::process::Signal::TERM);
    wait_until("healthz says stopping", || {
        admin(s.admin, "GET", "/healthz", false) == (503, "stopping\n".into())
    });
    drop(open);
}

/// A listener of its own for the load balancer in front: the health path and nothing else,
/// following the config on reload.
#[test]
fn healthz_listen_serves_only_the_health_path_and_moves_on_reload() {
    let a = Backend::start("a");
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin_addr, healthz, moved) =
        (free_addr(ip), free_addr(ip), free_addr(ip), free_addr(ip));
    let config = |healthz: SocketAddr| {
        admin_config(listen, &backend_list(&[&a]), admin_addr).replace(
            "admin_token",
            &format!("healthz_listen = \"{healthz}\"\nadmin_token"),
        )
    };
    let node = Node::start_listening(&config(healthz), listen);
    node.wait_listening(healthz);
    assert_eq!(
        admin(healthz, "GET", "/healthz", false),
        (200, "primary\n".into())
    );
    assert_eq!(admin(healthz, "HEAD", "/healthz", false).0, 200);
    assert_eq!(admin(healthz, "POST", "/healthz", false).0, 405);
    for path in ["/status", "/metrics", "/livez"] {
        assert_eq!(admin(healthz, "GET", path, false).0, 404, "{path}");
    }
    assert_eq!(
        admin(healthz, "POST", "/reload", true).0,
        404,
        "no mutation either"
    );
    assert_eq!(
        admin(admin_addr, "GET", "/healthz", false).0,
        200,
        "still on the admin port"
    );

    node.reload(&config(moved));
    node.wait_listening(moved);
    assert_eq!(
        admin(moved, "GET", "/healthz", false),
        (200, "primary\n".into())
    );
    wait_until("the old health listener to close", || {
        std::net::TcpStream::connect_timeout(&healthz, std::time::Duration::from_millis(200))
            .is_err()
    });
    let (_, metrics) = admin(admin_addr, "GET", "/metrics", false);
    let samples = parse_metrics(&metrics);
    assert!(
        samples[r#"tandem_admin_connections_total{listener="healthz"}"#] >= 8.0,
        "{metrics}"
    );
}

/// A connection that says nothing is closed two seconds after its accept, and a kept-alive
/// one a second after its last answer: neither holds a place on the admin port for long.
#[test]
fn silent_and_idle_kept_alive_admin_connections_are_closed_soon() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let s = setup();
    let read_until_closed = |stream: &mut std::net::TcpStream| {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    };
    let start = Instant::now();
    let mut silent = std::net::TcpStream::connect(s.admin).unwrap();
    assert_eq!(read_until_closed(&mut silent), "");
    let silent_for = start.elapsed();

    let mut kept = std::net::TcpStream::connect(s.admin).unwrap();
    kept.write_all(b"GET /livez HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let answered = Instant::now();
    read_until_closed(&mut kept);
    let kept_for = answered.elapsed();
    eprintln!(
        "silent connection closed after {silent_for:?}, kept-alive one {kept_for:?} after its answer"
    );
    assert!(
        (Duration::from_millis(1900)..Duration::from_millis(3000)).contains(&silent_for),
        "{silent_for:?}"
    );
    assert!(
        (Duration::from_millis(900)..Duration::from_millis(2000)).contains(&kept_for),
        "{kept_for:?}"
    );
}
