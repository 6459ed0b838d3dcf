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
    // The cloud pair reads its token from where the install steps put it; here, from a file
    // of this test's.
    let tokens = temp_dir();
    let token = tokens.join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap().replace(
                "\"/etc/tandem/admin-token\"",
                &format!("{:?}", token.display().to_string()),
            );
            let (ok, stdout, stderr) = check(&text);
            assert!(ok, "{}: {stderr}", path.display());
            assert!(stdout.contains("OK"), "{stdout}");
            checked += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&tokens);
    assert!(
        checked >= 1,
        "no example configs found in {}",
        dir.display()
    );
}

#[test]
fn check_reports_a_missing_token_file_that_run_would_refuse() {
    let config = simple_config(
        "127.0.0.1:8080".parse().unwrap(),
        r#"[{ addr = "127.0.0.1:9001" }]"#,
        "",
    )
    .replace(
        "admin = \"\"\n",
        "admin = \"\"\nadmin_token_file = \"/nonexistent/admin-token\"\n",
    );
    let (ok, _stdout, stderr) = check(&config);
    assert!(!ok);
    let line = config
        .lines()
        .position(|l| l.starts_with("admin_token_file"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "check.toml:{line}:20: admin_token_file /nonexistent/admin-token: No such file"
        )),
        "{stderr}"
    );
}

#[test]
fn check_prints_warnings_with_their_line_and_passes() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let config = simple_config(
        "127.0.0.1:8080".parse().unwrap(),
        r#"[{ addr = "127.0.0.1:9001" }]"#,
        "",
    )
    .replace("threads = 1\n", &format!("threads = {}\n", cpus + 1));
    let (ok, stdout, stderr) = check(&config);
    assert!(ok, "{stderr}");
    assert!(stdout.trim_end().ends_with("(1 warning)"), "{stdout}");
    assert!(
        stderr.contains("check.toml:3:11: warning: threads = "),
        "{stderr}"
    );
}

/// A token file anyone on the host can read is warned about, as ssh does for a private key:
/// by `check` with its place in the file, and in the log at start and on every reload.
#[test]
fn a_world_readable_token_file_is_warned_about_by_check_at_start_and_on_reload() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::create();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(0o644);
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let backend = Backend::start("a");
    let config = simple_config(listen, &backend_list(&[&backend]), "").replace(
        "admin = \"\"\n",
        &format!(
            "admin = \"\"\nadmin_token_file = {:?}\n",
            token.display().to_string()
        ),
    );
    let line = config
        .lines()
        .position(|l| l.starts_with("admin_token_file"))
        .unwrap()
        + 1;
    let warning = format!(
        "warning: admin_token_file {} has mode 0644: everyone on this host can read the token",
        token.display()
    );
    let (ok, stdout, stderr) = check(&config);
    assert!(ok, "a warning, not an error: {stderr}");
    assert!(stdout.trim_end().ends_with("(1 warning)"), "{stdout}");
    assert!(
        stderr.contains(&format!("check.toml:{line}:20: {warning}")),
        "{stderr}"
    );

    let node = Node::start_listening(&config, listen);
    node.wait_log(&warning, 1);
    set_mode(0o600);
    node.reload(&config);
    node.wait_log("configuration reloaded", 1);
    set_mode(0o644);
    node.reload(&config);
    node.wait_log("configuration reloaded", 2);
    let log = node.log_text();
    assert_eq!(
        log.matches(&warning).count(),
        2,
        "at start and at the second reload, not at the first\n{log}"
    );
    assert_eq!(
        which_backend(listen).unwrap(),
        "a",
        "the node runs on the warned-about file"
    );
}

#[test]
fn check_rejects_values_no_one_means_at_their_line() {
    let config = r#"[node]
name = "lb"
threads = 1
admin_token = "0123456789abcdef\r\n"

[[service]]
name = "web"
listen = "224.0.0.1:80"
pool = "web"
connect_timeout = "1ns"
idle_timeout = "365d"

[[pool]]
name = "web"
health = { kind = "http", interval = "1ns", host = "example.com\r\nX: y" }
backends = [{ addr = "255.255.255.255:80" }, { addr = "10.0.0.1:80" }]

[[vrrp]]
name = "a"
interface = "eth0"
vrid = 1
vips = ["255.255.255.255/32", "10.0.0.100/24"]

[[vrrp]]
name = "b"
interface = "eth1"
vrid = 2
vips = ["10.0.0.100/24"]
"#;
    let (ok, _stdout, stderr) = check(config);
    assert!(!ok);
    let located: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(check_path_prefix(l)?))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    let expected = [
        "4:15: admin_token holds the control character '\\r'",
        "8:10: listen address 224.0.0.1:80 is a multicast address",
        "10:19: connect_timeout \"1ns\" is shorter than the minimum of 1ms",
        "11:16: idle_timeout \"365d\" is longer than the maximum of 7days",
        "15:38: interval \"1ns\" is shorter than the minimum of 10ms",
        "15:52: host \"example.com\\r\\nX: y\" holds '\\r'",
        "16:22: backend addr 255.255.255.255:80 is the broadcast address",
        "22:9: vip 255.255.255.255 cannot be a virtual address",
        "28:9: vip 10.0.0.100 is already held by vrrp \"a\" (line 22)",
    ];
    assert_eq!(located.len(), expected.len(), "{stderr}");
    for (line, want) in located.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "{line:?} does not start with {want:?}\n{stderr}"
        );
    }
}

/// `.../check.toml:` at the start of a line of `check`'s output, if it is there.
fn check_path_prefix(line: &str) -> Option<&str> {
    let end = line.find("check.toml:")? + "check.toml:".len();
    Some(&line[..end])
}

/// A valid config with `backends` backends: pools of 100, each behind a service and probed
/// over HTTP, one backend a line.
fn config_with_backends(backends: usize) -> String {
    let mut config = String::from("[node]\nname = \"big\"\nthreads = 1\nadmin = \"\"\n");
    for pool in 0..backends / 100 {
        config.push_str(&format!(
            "\n[[service]]\nname = \"s{pool}\"\nlisten = \"127.0.{}.{}:80\"\npool = \"p{pool}\"\n\n\
             [[pool]]\nname = \"p{pool}\"\nhealth = {{ kind = \"http\", path = \"/ready\" }}\n\
             backends = [\n",
            pool / 250,
            pool % 250 + 1
        ));
        for i in 0..100 {
            let n = pool * 100 + i;
            config.push_str(&format!(
                "  {{ addr = \"10.{}.{}.{}:8080\", weight = 2 }},\n",
                n >> 16,
                (n >> 8) & 255,
                n & 255
            ));
        }
        config.push_str("]\n");
    }
    config
}

/// The quicker of two `check` runs of `config`, which must pass.
fn check_time(config: &str) -> std::time::Duration {
    (0..2)
        .map(|_| {
            let start = std::time::Instant::now();
            let (ok, _stdout, stderr) = check(config);
            assert!(ok, "{stderr}");
            start.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn check_time_grows_linearly_with_the_number_of_backends() {
    let small = check_time(&config_with_backends(10_000));
    let large = check_time(&config_with_backends(40_000));
    // Four times the backends: about four times the time; a quadratic check takes sixteen.
    assert!(
        large < small * 10,
        "10k backends: {small:?}, 40k backends: {large:?}"
    );
}

#[test]
fn a_file_with_thousands_of_errors_prints_the_first_fifty_and_a_count() {
    let backends: Vec<String> = (0..10_000)
        .map(|n| {
            format!(
                "{{ addr = \"10.0.{}.{}:80\", weight = 0 }}",
                n >> 8,
                n & 255
            )
        })
        .collect();
    let config = simple_config(
        "127.0.0.1:8080".parse().unwrap(),
        &format!("[\n{}\n]", backends.join(",\n")),
        "",
    );
    let (ok, _stdout, stderr) = check(&config);
    assert!(!ok);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 52, "{stderr}");
    assert!(lines[0].contains("check.toml:") && lines[0].contains("weight 0"));
    assert_eq!(lines[50], "... and 9950 more errors");
    assert!(lines[51].ends_with("check.toml: 10000 errors"), "{stderr}");
}
