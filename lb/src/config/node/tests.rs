//! Tests of the `[node]` table: its defaults, ranges and admin keys.

use std::time::Duration;

use crate::config::test_support::{addr, assert_error, node_with};
use crate::config::{AdminToken, IoMode, parse, parse_checked};

#[test]
fn unknown_key_in_node_is_reported_with_its_line() {
    assert_error(&node_with("workers = 4"), 2, 1, "unknown field `workers`");
}

#[test]
fn zero_drain_timeout_means_close_immediately() {
    let config = parse(&node_with("drain_timeout = \"0s\""), "t").unwrap();
    assert_eq!(config.node.drain_timeout, Duration::ZERO);
}

#[test]
fn threads_zero_is_rejected_with_a_hint() {
    assert_error(
        &node_with("threads = 0"),
        2,
        11,
        "omit it to use one per CPU",
    );
}

#[test]
fn io_names_how_bytes_move() {
    let io = |line: &str| parse(&node_with(line), "t").unwrap().node.io;
    assert_eq!(io("threads = 1\nio = \"epoll\""), IoMode::Epoll);
    assert_eq!(io("threads = 1\nio = \"io_uring\""), IoMode::IoUring);
    assert_eq!(io("threads = 4\nio = \"auto\""), IoMode::Auto);
    // A ring per data thread: any number of threads may use io_uring.
    assert_eq!(io("threads = 4\nio = \"io_uring\""), IoMode::IoUring);
    // A ring of one kind, for operators (and tests) that pin it.
    assert_eq!(io("io = \"io_uring_deferring\""), IoMode::IoUringDeferring);
    assert_eq!(io("io = \"io_uring_plain\""), IoMode::IoUringPlain);
    assert_error(&node_with("io = \"uring\""), 2, 6, "unknown variant");
}

#[test]
fn threads_above_1024_is_rejected() {
    assert_error(
        &node_with("threads = 1025"),
        2,
        11,
        "threads must be between 1 and 1024",
    );
}

#[test]
fn threads_beyond_the_cpus_warn_and_beyond_four_per_cpu_are_rejected() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let checked = parse_checked(&node_with(&format!("threads = {cpus}")), "t").unwrap();
    assert_eq!(checked.config.node.threads, cpus);
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);

    let checked = parse_checked(&node_with(&format!("threads = {}", cpus + 1)), "t").unwrap();
    assert_eq!(checked.config.node.threads, cpus + 1);
    assert_eq!(checked.warnings.len(), 1);
    let warning = &checked.warnings[0];
    assert_eq!((warning.0.line, warning.0.column), (2, 11));
    assert!(
        warning
            .to_string()
            .starts_with("t:2:11: warning: threads = "),
        "{warning}"
    );

    let checked = parse_checked(&node_with(&format!("threads = {}", 4 * cpus)), "t").unwrap();
    assert_eq!(
        checked.warnings.len(),
        1,
        "four per CPU is allowed, with a warning"
    );
    if 4 * cpus < 1024 {
        assert_error(
            &node_with(&format!("threads = {}", 4 * cpus + 1)),
            2,
            11,
            "more than 4 per CPU",
        );
    }
}

#[test]
fn a_node_name_of_more_than_64_characters_is_rejected() {
    let name = "n".repeat(65);
    assert_error(
        &node_with(&format!("name = \"{name}\"")),
        2,
        8,
        "at most 64",
    );
    let name = "n".repeat(64);
    let config = parse(&node_with(&format!("name = \"{name}\"")), "t").unwrap();
    assert_eq!(config.node.name, name);
}

#[test]
fn tokens_are_printable_ascii_of_16_to_4096_characters() {
    // Counted in characters: sixteen two-byte characters are no sixteen-character token,
    // nor could they travel in a header.
    let cases = [
        ("é".repeat(16), "non-ASCII"),
        (
            "0123456789abcdef\\u0000".to_owned(),
            "control character '\\0'",
        ),
        (
            "01234567\\r\\n89abcdef".to_owned(),
            "control character '\\r'",
        ),
        ("0123456789\\nabcdef".to_owned(), "control character '\\n'"),
        ("x".repeat(4097), "at most 4096"),
        ("0123456789abcde".to_owned(), "at least 16 characters"),
    ];
    for (token, fragment) in cases {
        assert_error(
            &node_with(&format!("admin_token = \"{token}\"")),
            2,
            15,
            fragment,
        );
    }
    let token = "x".repeat(4096);
    let config = parse(&node_with(&format!("admin_token = \"{token}\"")), "t").unwrap();
    assert_eq!(config.node.admin_token, Some(AdminToken::Inline(token)));
}

#[test]
fn a_missing_or_bad_admin_token_file_is_an_error_at_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none");
    assert_error(
        &node_with(&format!(
            "admin_token_file = {:?}",
            missing.display().to_string()
        )),
        2,
        20,
        "No such file or directory",
    );
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "0123456789\nabcdef\n").unwrap();
    assert_error(
        &node_with(&format!(
            "admin_token_file = {:?}",
            bad.display().to_string()
        )),
        2,
        20,
        "control character",
    );
    // Neither a device that never ends nor a directory is read.
    for path in ["/dev/zero", "/"] {
        assert_error(
            &node_with(&format!("admin_token_file = {path:?}")),
            2,
            20,
            "not a regular file",
        );
    }
    let huge = dir.path().join("huge");
    std::fs::write(&huge, "x".repeat(10_000)).unwrap();
    assert_error(
        &node_with(&format!(
            "admin_token_file = {:?}",
            huge.display().to_string()
        )),
        2,
        20,
        "longer than 4096",
    );
    let good = dir.path().join("good");
    std::fs::write(&good, "0123456789abcdef\n").unwrap();
    let config = parse(
        &node_with(&format!(
            "admin_token_file = {:?}",
            good.display().to_string()
        )),
        "t",
    )
    .unwrap();
    assert_eq!(config.node.admin_token, Some(AdminToken::File(good)));
}

#[test]
fn the_admin_api_listens_on_unicast_or_every_address() {
    for admin in ["224.0.0.1:9090", "255.255.255.255:9090", "[ff02::1]:9090"] {
        assert_error(
            &node_with(&format!("admin = \"{admin}\"")),
            2,
            9,
            "TCP listens on unicast addresses",
        );
    }
    let config = parse(&node_with("admin = \"0.0.0.0:9090\""), "t").unwrap();
    assert_eq!(config.node.admin, Some(addr("0.0.0.0:9090")));
}

#[test]
fn drain_timeout_is_at_most_an_hour() {
    assert_error(
        &node_with("drain_timeout = \"365d\""),
        2,
        17,
        "longer than the maximum of 1h",
    );
    let config = parse(&node_with("drain_timeout = \"1h\""), "t").unwrap();
    assert_eq!(config.node.drain_timeout, Duration::from_secs(3600));
}

#[test]
fn healthz_listen_is_an_address_of_its_own() {
    let listen = |line: &str| parse(&node_with(line), "t").unwrap().node.healthz_listen;
    assert_eq!(listen(""), None, "off unless asked for");
    assert_eq!(
        listen("healthz_listen = \"10.0.0.1:8080\""),
        Some(addr("10.0.0.1:8080"))
    );
    assert_eq!(listen("healthz_listen = \"\""), None);
    assert_error(
        &node_with("healthz_listen = \"10.0.0.1\""),
        2,
        18,
        "invalid healthz_listen address",
    );
    assert_error(
        &node_with("admin = \"10.0.0.1:9090\"\nhealthz_listen = \"10.0.0.1:9090\""),
        3,
        18,
        "is the admin address",
    );
}

#[test]
fn admin_keys_parse_and_bad_ones_are_located() {
    let config = parse(&node_with("admin = \"\""), "t").unwrap();
    assert_eq!(
        config.node.admin, None,
        "an empty admin address turns the API off"
    );
    let config = parse(
        &node_with("admin = \"10.0.0.1:8000\"\nadmin_token = \"0123456789abcdef\"\nhealthz_path = \"/ready\""),
        "t",
    )
    .unwrap();
    assert_eq!(config.node.admin, Some(addr("10.0.0.1:8000")));
    assert_eq!(
        config.node.admin_token,
        Some(AdminToken::Inline("0123456789abcdef".into()))
    );
    assert_eq!(config.node.healthz_path, "/ready");
    assert_error(
        &node_with("admin_token = \"short\""),
        2,
        15,
        "at least 16 characters",
    );
    assert_error(
        &node_with("admin_token = \"0123456789abcdef\"\nadmin_token_file = \"/etc/t\""),
        3,
        20,
        "not both",
    );
    assert_error(
        &node_with("healthz_path = \"/metrics\""),
        2,
        16,
        "already an admin endpoint",
    );
    assert_error(
        &node_with("healthz_path = \"healthz\""),
        2,
        16,
        "must be a path",
    );
    assert_error(
        &node_with("admin = \"localhost:9090\""),
        2,
        9,
        "invalid admin address",
    );
}

#[test]
fn an_admin_token_file_is_read_without_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "0123456789abcdef\n").unwrap();
    assert_eq!(
        AdminToken::File(path.clone()).resolve().unwrap(),
        "0123456789abcdef"
    );
    std::fs::write(&path, "short\n").unwrap();
    assert!(
        AdminToken::File(path).resolve().is_err(),
        "a short token is refused"
    );
    let missing = AdminToken::File(dir.path().join("none"))
        .resolve()
        .unwrap_err();
    assert!(
        missing.to_string().contains("admin_token_file"),
        "{missing}"
    );
}

#[test]
fn realtime_priority_is_0_to_99() {
    let config = parse(&node_with("realtime_priority = 50"), "t").unwrap();
    assert_eq!(config.node.realtime_priority, 50);
    assert_error(
        &node_with("realtime_priority = 100"),
        2,
        21,
        "realtime_priority",
    );
}

#[test]
fn lock_memory_is_a_boolean_and_off_by_default() {
    let lock = |line: &str| parse(&node_with(line), "t").unwrap().node.lock_memory;
    assert!(!lock("threads = 1"));
    assert!(lock("lock_memory = true"));
    assert!(!lock("lock_memory = false"));
    assert_error(&node_with("lock_memory = \"yes\""), 2, 15, "invalid type");
}

#[test]
fn peer_admin_names_the_peers_admin_addresses() {
    let config = parse(
        &node_with("peer_admin = [\"10.0.0.2:9090\", \"[fd00::2]:9090\"]"),
        "t",
    )
    .unwrap();
    assert_eq!(
        config.node.peer_admin,
        [addr("10.0.0.2:9090"), addr("[fd00::2]:9090")]
    );
    assert_error(
        &node_with("peer_admin = [\"10.0.0.2\"]"),
        2,
        15,
        "peer_admin address",
    );
    assert_error(
        &node_with("peer_admin = [\"127.0.0.1:9090\"]"),
        2,
        15,
        "this node's own admin address",
    );
    assert_error(
        &node_with("peer_admin = [\"10.0.0.2:9090\", \"10.0.0.2:9090\"]"),
        2,
        32,
        "listed twice",
    );
    assert_error(
        &node_with("peer_admin = [\"0.0.0.0:9090\"]"),
        2,
        15,
        "must name a peer's admin address",
    );
}

#[test]
fn healthz_path_cannot_hide_the_console_or_the_event_stream() {
    for path in ["/events", "/peers", "/console.js", "/peers/x", "/apps/x"] {
        assert_error(
            &node_with(&format!("healthz_path = \"{path}\"")),
            2,
            16,
            "already an admin endpoint",
        );
    }
}

#[test]
fn a_token_file_others_can_read_or_anyone_but_its_owner_can_change_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "0123456789abcdef\n").unwrap();
    let config = node_with(&format!(
        "admin_token_file = {:?}",
        file.display().to_string()
    ));
    let warnings_at = |mode: u32| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let checked = parse_checked(&config, "t").expect("a warning, not an error");
        assert_eq!(
            checked.config.node.admin_token,
            Some(AdminToken::File(file.clone())),
            "the token is still used"
        );
        checked
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    for (mode, exposure) in [
        (0o644, "everyone on this host can read the token"),
        (0o604, "everyone on this host can read the token"),
        (0o602, "everyone on this host can change the token"),
        (0o601, "everyone on this host has access to it"),
        (0o660, "its group can change the token"),
    ] {
        let warnings = warnings_at(mode);
        assert_eq!(warnings.len(), 1, "{mode:04o}: {warnings:?}");
        assert!(
            warnings[0].starts_with("t:2:20: warning: admin_token_file ")
                && warnings[0].contains(&format!("has mode {mode:04o}: {exposure}"))
                && warnings[0].contains("chmod go-w,o-rwx"),
            "{mode:04o}: {}",
            warnings[0]
        );
    }
    // The owner alone, or the documented root:tandem 0640: nothing to say.
    for mode in [0o600, 0o400, 0o640, 0o440] {
        assert_eq!(warnings_at(mode), Vec::<String>::new(), "{mode:04o}");
    }
}
