//! Applications on a node without VRRP (`run_on = "all"`), on loopback: no root needed. The
//! node runs the program, brings it back when it is killed, obeys an operator's disable,
//! restart and enable (API and CLI), stops it when a reload removes it, and leaves nothing
//! running when it stops.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn config(listen: SocketAddr, admin: SocketAddr, pidfile: &Path, with_app: bool) -> String {
    let base = simple_config(listen, r#"[{ addr = "127.0.0.1:9" }]"#, "").replace(
        "admin = \"\"",
        &format!("admin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\""),
    );
    if !with_app {
        return base;
    }
    // `exec` keeps one process, whose pid the shell wrote: the pidfile names the program.
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    format!(
        r#"{base}
[[app]]
name = "worker"
start = ["/bin/sh", "-c", "{script}"]
run_on = "all"
checks = [{{ kind = "process", pidfile = "{pidfile}", interval = "200ms", timeout = "100ms", rise = 1, fall = 1 }}]
restart = {{ max = 3, within = "60s", backoff = "100ms" }}
stop_timeout = "2s"
"#,
        pidfile = pidfile.display()
    )
}

/// The app's entry in `/status`.
fn app_status(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = common::admin(admin, "GET", "/status", false);
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["apps"][0].clone()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) != Some("Z"))
}

fn running_pid(admin: SocketAddr, node: &Node) -> u64 {
    let mut pid = 0;
    wait_until(&format!("the app runs\n{}", node.log_text()), || {
        let app = app_status(admin);
        pid = app["pid"].as_u64().unwrap_or(0);
        app["state"] == "running" && pid != 0
    });
    pid
}

fn cli(admin: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new(tandem_bin())
        .args(args)
        .args(["--admin", &admin.to_string(), "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_farm_app_is_kept_running_obeys_the_operator_and_ends_with_the_node() {
    let dir = TempDir::create();
    let pidfile = dir.path().join("worker.pid");
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    let mut node = Node::start_listening(&config(listen, admin, &pidfile, true), listen);
    node.wait_listening(admin);

    let first = running_pid(admin, &node);
    let app = app_status(admin);
    assert_eq!(app["run_on"], "all");
    assert_eq!(app["instance"], serde_json::Value::Null);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        first.to_string()
    );

    // Killed behind the node's back: restarted here, and counted.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    wait_until("a new copy runs", || {
        let app = app_status(admin);
        app["state"] == "running" && app["pid"].as_u64().is_some_and(|p| p != first)
    });
    let app = app_status(admin);
    assert_eq!(app["restarts_total"], 1, "{app}");
    assert!(
        app["last_error"]
            .as_str()
            // Whichever saw it first: the exit, or the process check.
            .is_some_and(|e| e.contains("signal: 9") || e.contains("is not running")),
        "{app}"
    );
    let second = app["pid"].as_u64().unwrap();

    // Disabled: stopped, and kept stopped.
    let (code, body) = common::admin(admin, "POST", "/apps/worker/disable", true);
    assert_eq!((code, body.trim()), (200, "disabled"));
    wait_until("disabled and stopped", || {
        let app = app_status(admin);
        app["state"] == "stopped" && app["disabled"] == true
    });
    assert!(!alive(second), "the program {second} still runs");
    let (code, _) = common::admin(admin, "POST", "/apps/worker/restart", false);
    assert_eq!(code, 401, "mutations need the token");
    let (code, body) = common::admin(admin, "POST", "/apps/nobody/restart", true);
    assert_eq!(code, 404, "{body}");

    // Enabled from the CLI; restarted from the CLI: a new copy each time.
    let (ok, text) = cli(admin, &["enable", "app", "worker"]);
    assert!(ok && text.contains("enabled"), "{text}");
    let third = running_pid(admin, &node);
    assert_ne!(third, second);
    let (ok, text) = cli(admin, &["restart", "app", "worker"]);
    assert!(ok && text.contains("restarting"), "{text}");
    wait_until("restarted", || {
        let app = app_status(admin);
        app["state"] == "running" && app["pid"].as_u64().is_some_and(|p| p != third)
    });
    assert!(!alive(third));
    let (ok, text) = cli(admin, &["status"]);
    assert!(
        ok && text.contains("worker") && text.contains("running"),
        "{text}"
    );

    // A reload without the table stops it; one with it starts it again.
    let fourth = app_status(admin)["pid"].as_u64().unwrap();
    node.reload(&config(listen, admin, &pidfile, false));
    wait_until("the app removed by the reload stops", || !alive(fourth));
    assert!(
        common::admin(admin, "GET", "/status", false)
            .1
            .contains("\"apps\": []"),
        "gone from /status"
    );
    node.reload(&config(listen, admin, &pidfile, true));
    let fifth = running_pid(admin, &node);

    // The node stops: so does the app.
    node.signal(rustix::process::Signal::TERM);
    assert!(node.wait_exit().success(), "{}", node.log_text());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(fifth) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(fifth), "the app outlived the node");
}

/// A node killed outright (SIGKILL: no cleanup runs) takes its application with it: a copy
/// left running would run beside the one the peer starts.
#[test]
fn an_app_does_not_outlive_a_node_killed_outright() {
    let dir = TempDir::create();
    let pidfile = dir.path().join("worker.pid");
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    let mut node = Node::start_listening(&config(listen, admin, &pidfile, true), listen);
    node.wait_listening(admin);
    let pid = running_pid(admin, &node);
    node.signal(rustix::process::Signal::KILL);
    node.wait_exit();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the app {pid} outlived its node");
}

/// A reload leaves an unchanged app alone; a changed one keeps running until its next start,
/// unless its table says `restart_on_change`.
#[test]
fn a_reload_restarts_an_app_only_when_its_table_changed_and_asks_for_it() {
    let dir = TempDir::create();
    let pidfile = dir.path().join("worker.pid");
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    let base = config(listen, admin, &pidfile, true);
    let mut node = Node::start_listening(&base, listen);
    node.wait_listening(admin);
    let first = running_pid(admin, &node);

    let reload = |node: &Node, text: &str, count: usize| {
        node.reload(text);
        node.wait_log("configuration reloaded", count);
    };
    reload(&node, &base, 1);
    let changed = base.replace("stop_timeout = \"2s\"", "stop_timeout = \"3s\"");
    assert_ne!(changed, base);
    reload(&node, &changed, 2);
    // Give a wrongful restart time to show.
    std::thread::sleep(Duration::from_millis(500));
    let app = app_status(admin);
    assert_eq!(app["pid"], first, "{app}");
    assert!(alive(first));

    let restart = changed.replace(
        "stop_timeout = \"3s\"",
        "stop_timeout = \"2s\"\nrestart_on_change = true",
    );
    reload(&node, &restart, 3);
    wait_until("restarted for its changed table", || {
        let app = app_status(admin);
        app["state"] == "running" && app["pid"].as_u64().is_some_and(|p| p != first)
    });
    assert!(!alive(first));
    assert_eq!(app_status(admin)["restarts_total"], 0, "not a failure");
    node.signal(rustix::process::Signal::TERM);
    assert!(node.wait_exit().success(), "{}", node.log_text());
}
