//! Tests of the `[node]` table: its defaults, ranges and admin keys.

use std::time::Duration;

use crate::config::test_support::{addr, assert_error, node_with};
use crate::config::{AdminToken, IoMode, parse};

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
    assert_eq!(
        parse(&node_with("threads = 1024"), "t")
            .unwrap()
            .node
            .threads,
        1024
    );
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
