//! Health checks steering real traffic: backends leave the rotation when their checks fail,
//! come back when they pass, and passive ejection reacts to refused connects at once.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;

/// One service over `backends` (TOML list), with `health` as the pool's health table.
fn config_with_health(listen: SocketAddr, backends: &str, health: &str) -> String {
    format!("{}health = {health}\n", simple_config(listen, backends, ""))
}

fn http_health(port: u16, extra: &str) -> String {
    format!(
        r#"{{ kind = "http", port = {port}, path = "/health", interval = "100ms", timeout = "80ms", rise = 2, fall = 2{extra} }}"#
    )
}

/// Two backends on one loopback IP, each with its own health endpoint on that IP.
struct Pair {
    a: Backend,
    b: Backend,
    health_a: HealthEndpoint,
    health_b: HealthEndpoint,
}

fn pair() -> Pair {
    let (ip_a, ip_b) = (IpAddr::V4(loopback_ip()), IpAddr::V4(loopback_ip()));
    Pair {
        a: Backend::start_on("a", SocketAddr::new(ip_a, 0)),
        b: Backend::start_on("b", SocketAddr::new(ip_b, 0)),
        health_a: HealthEndpoint::start(ip_a),
        health_b: HealthEndpoint::start(ip_b),
    }
}

/// Per-backend health tables: each backend is checked on its own endpoint's port.
fn pair_backends(p: &Pair, extra: &str) -> String {
    format!(
        r#"[{{ addr = "{}", health = {{ port = {} }} }}, {{ addr = "{}", health = {{ port = {} }}{extra} }}]"#,
        p.a.addr,
        p.health_a.addr.port(),
        p.b.addr,
        p.health_b.addr.port()
    )
}

#[test]
fn a_failing_http_check_takes_a_backend_out_and_a_passing_one_brings_it_back() {
    let p = pair();
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let health = http_health(1, ""); // port overridden per backend
    let config = config_with_health(listen, &pair_backends(&p, ""), &health);
    let node = Node::start_listening(&config, listen);
    wait_for_routing(listen, &["a", "b"], 4);

    // `b` answers 500: out of rotation; its traffic port stays open, so any connection the
    // node still sent there would be seen by its accept counter.
    p.health_b.set_status(500);
    wait_for_routing(listen, &["a"], 6);
    let accepted = p.b.accepted();
    for _ in 0..30 {
        assert_eq!(which_backend(listen).unwrap(), "a");
    }
    assert_eq!(
        p.b.accepted(),
        accepted,
        "no new connection may reach a down backend"
    );
    assert!(
        node.log_text().contains("500"),
        "the reason is logged:\n{}",
        node.log_text()
    );

    // Healthy again: back after `rise` good probes.
    p.health_b.set_status(200);
    wait_for_routing(listen, &["b"], 1);
}

#[test]
fn an_http_body_mismatch_counts_as_down() {
    let p = pair();
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let health = http_health(1, r#", body = "healthy""#);
    let node = Node::start_listening(
        &config_with_health(listen, &pair_backends(&p, ""), &health),
        listen,
    );
    wait_for_routing(listen, &["a", "b"], 4);
    p.health_a.set_body("degraded: database unreachable");
    wait_for_routing(listen, &["b"], 8);
    p.health_a.set_body("healthy");
    wait_for_routing(listen, &["a"], 1);
    drop(node);
}

#[test]
fn a_tcp_check_on_a_closed_port_takes_the_backend_down() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    // `b`'s check port, on b's IP: a listener the test closes. `a` has no check: always up.
    let check = std::net::TcpListener::bind(SocketAddr::new(b.addr.ip(), 0)).unwrap();
    let check_port = check.local_addr().unwrap().port();
    let backends = format!(
        r#"[{{ addr = "{}" }}, {{ addr = "{}", health = {{ kind = "tcp", port = {check_port}, interval = "100ms", timeout = "80ms", fall = 2, rise = 2 }} }}]"#,
        a.addr, b.addr
    );
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let node = Node::start_listening(&simple_config(listen, &backends, ""), listen);
    wait_for_routing(listen, &["a", "b"], 4);
    let check_addr = check.local_addr().unwrap();
    drop(check);
    wait_for_routing(listen, &["a"], 8);
    let accepted = b.accepted();
    for _ in 0..20 {
        assert_eq!(which_backend(listen).unwrap(), "a");
    }
    assert_eq!(
        b.accepted(),
        accepted,
        "no new connection may reach a down backend"
    );

    // Listening again: back in rotation after `rise` good probes.
    let _check = std::net::TcpListener::bind(check_addr).expect("rebind the check port");
    wait_for_routing(listen, &["b"], 1);
    drop(node);
}

#[test]
fn command_checks_decide_by_exit_status() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = std::env::temp_dir().join(format!("tandem-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("b-ok");
    std::fs::write(&flag, "").unwrap();
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    // `test -e FILE`: exit 0 while the file exists. {port} is replaced per backend, so the
    // same pool-level command checks a file of each backend's own.
    let health = format!(
        r#"{{ kind = "command", command = ["test", "-e", "{}/{{port}}"], interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }}"#,
        dir.display()
    );
    std::fs::write(dir.join(a.addr.port().to_string()), "").unwrap();
    std::fs::rename(&flag, dir.join(b.addr.port().to_string())).unwrap();
    let config = config_with_health(listen, &backend_list(&[&a, &b]), &health);
    let node = Node::start_listening(&config, listen);
    wait_for_routing(listen, &["a", "b"], 4);
    std::fs::remove_file(dir.join(b.addr.port().to_string())).unwrap();
    wait_for_routing(listen, &["a"], 8);
    std::fs::write(dir.join(b.addr.port().to_string()), "").unwrap();
    wait_for_routing(listen, &["b"], 1);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_process_check_follows_the_process_in_a_pid_file() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = std::env::temp_dir().join(format!("tandem-pid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("b.pid");
    let mut app = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(&pidfile, format!("{}\n", app.id())).unwrap();
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let backends = format!(
        r#"[{{ addr = "{}" }}, {{ addr = "{}", health = {{ kind = "process", pidfile = "{}", interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }} }}]"#,
        a.addr,
        b.addr,
        pidfile.display()
    );
    let node = Node::start_listening(&simple_config(listen, &backends, ""), listen);
    wait_for_routing(listen, &["a", "b"], 4);
    app.kill().unwrap();
    app.wait().unwrap();
    wait_for_routing(listen, &["a"], 8);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refused_connects_eject_a_backend_before_its_next_probe() {
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    // Probes every 30 s (the first after up to 30 s of jitter) and they always pass:
    // only passive ejection can take `b` out during this test.
    let health = r#"{ kind = "command", command = ["true"], interval = "30s", timeout = "1s", eject_after = 2 }"#;
    let config = config_with_health(listen, &backend_list(&[&a, &b]), health);
    let node = Node::start_listening(&config, listen);
    b.stop();
    for _ in 0..20 {
        assert_eq!(
            which_backend(listen).unwrap(),
            "a",
            "retry hides the refusals"
        );
    }
    // The transition's reason is logged only by an ejection (probes would say "ok").
    let log = node.log_text();
    assert!(log.contains("2 consecutive connect failures"), "{log}");
}

#[test]
fn health_survives_a_reload_and_backups_take_over_and_hand_back() {
    let p = pair();
    // The backup is checked like every backend of the pool, on its own endpoint.
    let backup_ip = IpAddr::V4(loopback_ip());
    let backup = Backend::start_on("backup", SocketAddr::new(backup_ip, 0));
    let backup_health = HealthEndpoint::start(backup_ip);
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let health = http_health(1, "");
    let backends = pair_backends(&p, "").replace(
        "]",
        &format!(
            r#", {{ addr = "{}", role = "backup", health = {{ port = {} }} }}]"#,
            backup.addr,
            backup_health.addr.port()
        ),
    );
    let config = config_with_health(listen, &backends, &health);
    let node = Node::start_listening(&config, listen);
    wait_for_routing(listen, &["a", "b"], 4);

    // Every primary down: the backup serves.
    p.health_a.set_status(503);
    p.health_b.set_status(503);
    wait_for_routing(listen, &["backup"], 6);

    // A reload that keeps the backends keeps their health: still down, backup still serves.
    node.reload(&config.replace("connect_timeout = \"1s\"", "connect_timeout = \"2s\""));
    node.wait_log("configuration reloaded", 1);
    for _ in 0..10 {
        assert_eq!(which_backend(listen).unwrap(), "backup");
    }

    // A primary recovers: the backup hands back.
    p.health_a.set_status(200);
    wait_for_routing(listen, &["a"], 6);
    let backup_before = backup.accepted();
    for _ in 0..10 {
        assert_eq!(which_backend(listen).unwrap(), "a");
    }
    assert_eq!(
        backup.accepted(),
        backup_before,
        "the backup gets nothing once a primary is up"
    );
}
