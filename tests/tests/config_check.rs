//! `tandem check` and start-up refusals: what an operator sees for a good and a bad file.

mod common;

use std::net::IpAddr;

use common::*;

#[test]
fn check_prints_a_summary_and_exits_zero_for_a_good_file() {
    let config = simple_config(
        "127.0.0.1:8080".parse().unwrap(),
        r#"[{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }]"#,
        "",
    );
    let (ok, stdout, stderr) = check(&config);
    assert!(ok, "stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("1 service"), "{stdout}");
}

#[test]
fn check_names_file_line_and_problem_for_each_error() {
    let config = r#"[node]
name = "lb1"

[[service]]
name = "web"
listen = "127.0.0.1:8080"
pool = "missing"

[[pool]]
name = "web"
backends = [{ addr = "127.0.0.1:9001", weight = 0 }, { addr = "not-an-address" }]
"#;
    let (ok, _stdout, stderr) = check(config);
    assert!(!ok);
    // Line 7: the dangling pool; line 11: the zero weight and the bad address.
    assert!(stderr.contains("check.toml:7:"), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    assert_eq!(stderr.matches("check.toml:11:").count(), 2, "{stderr}");
}

#[test]
fn check_rejects_unknown_keys_with_their_line() {
    let config = "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\nbalanse = \"p2c\"\n\n[[pool]]\nname = \"p\"\nbackends = [{ addr = \"127.0.0.1:81\" }]\n";
    let (ok, _stdout, stderr) = check(config);
    assert!(!ok);
    assert!(stderr.contains("check.toml:5:"), "{stderr}");
    assert!(stderr.contains("balanse"), "{stderr}");
}

#[test]
fn run_refuses_to_start_on_a_bad_file() {
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let mut node = Node::start(&simple_config(listen, "[]", ""));
    let status = node.wait_exit();
    assert!(!status.success());
    assert!(
        node.log_text().contains("tandem.toml:"),
        "{}",
        node.log_text()
    );
}

#[test]
fn run_reports_a_listen_address_it_cannot_bind() {
    // A port held by a plain (non-SO_REUSEPORT) socket cannot be shared.
    let holder = std::net::TcpListener::bind((loopback_ip(), 0)).unwrap();
    let listen = holder.local_addr().unwrap();
    let mut node = Node::start(&simple_config(listen, r#"[{ addr = "127.0.0.1:9" }]"#, ""));
    let status = node.wait_exit();
    assert!(!status.success());
    let log = node.log_text();
    assert!(
        log.contains("cannot listen on") && log.contains(&listen.to_string()),
        "{log}"
    );
}

#[test]
fn an_app_table_with_a_bad_program_is_an_error_with_its_line() {
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = format!(
        "{}\n[[app]]\nname = \"worker\"\nstart = [\"no-such-program-anywhere\"]\nrun_on = \"all\"\n",
        simple_config(listen, r#"[{ addr = "127.0.0.1:9" }]"#, "")
    );
    let (ok, _stdout, stderr) = check(&config);
    assert!(!ok, "{stderr}");
    let line = config
        .lines()
        .position(|l| l.starts_with("start = "))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("check.toml:{line}:")) && stderr.contains("not found on PATH"),
        "{stderr}"
    );
}

#[test]
fn every_shipped_example_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let (ok, stdout, stderr) = check(&text);
            assert!(ok, "{}: {stderr}", path.display());
            assert!(stdout.contains("OK"), "{stdout}");
            checked += 1;
        }
    }
    assert!(
        checked >= 1,
        "no example configs found in {}",
        dir.display()
    );
}
