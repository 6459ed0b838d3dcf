//! Tests of the `health` tables: defaults, how a backend's table overrides its pool's, and
//! where each problem is reported.

use std::time::Duration;

use crate::config::test_support::{addr, assert_error, backends, errors};
use crate::config::{Config, HealthCheck, HealthConfig, HttpMethod, parse};

/// MINIMAL with a pool-level `health` table (line 8) and the backends list on line 7.
fn with_health(list: &str, health: &str) -> String {
    format!("{}health = {health}\n", backends(list))
}

fn health_of(config: &Config, backend: usize) -> &HealthConfig {
    config.pools[0].backends[backend]
        .health
        .as_ref()
        .expect("a health table")
}

#[test]
fn pool_health_applies_to_every_backend_and_a_backend_overrides_key_by_key() {
    let source = with_health(
        r#"[{ addr = "10.0.0.1:80" }, { addr = "10.0.0.2:80", health = { path = "/b", port = 8081, start = "down" } }]"#,
        r#"{ kind = "http", path = "/health", expect = "200,204", interval = "5s", timeout = "2s", rise = 1, fall = 4, eject_after = 0 }"#,
    );
    let config = parse(&source, "tandem.toml").unwrap();
    let a = health_of(&config, 0);
    assert_eq!(
        a.check,
        HealthCheck::Http {
            addr: addr("10.0.0.1:80"),
            method: HttpMethod::Get,
            path: "/health".into(),
            host: None,
            expect: "200,204".into(),
            body: None,
        }
    );
    assert_eq!(
        (
            a.interval,
            a.timeout,
            a.rise,
            a.fall,
            a.start_up,
            a.eject_after
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(2),
            1,
            4,
            true,
            0
        )
    );
    let b = health_of(&config, 1);
    let HealthCheck::Http {
        addr: b_addr,
        path,
        expect,
        ..
    } = &b.check
    else {
        panic!("{b:?}")
    };
    assert_eq!(
        (*b_addr, path.as_str(), expect.as_str()),
        (addr("10.0.0.2:8081"), "/b", "200,204")
    );
    assert_eq!(
        (b.interval, b.fall, b.start_up),
        (Duration::from_secs(5), 4, false)
    );
}

#[test]
fn health_defaults_are_documented_values() {
    let config = parse(
        &with_health(r#"[{ addr = "10.0.0.1:80" }]"#, r#"{ kind = "tcp" }"#),
        "t",
    )
    .unwrap();
    let h = health_of(&config, 0);
    assert_eq!(
        h,
        &HealthConfig {
            check: HealthCheck::Tcp {
                addr: addr("10.0.0.1:80"),
                send: None,
                expect: None
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            start_up: true,
            eject_after: 3,
        }
    );
}

#[test]
fn a_backend_switching_kind_drops_the_pools_kind_specific_keys() {
    let source = with_health(
        r#"[{ addr = "10.0.0.1:80", health = { kind = "command", command = ["check", "{host}", "{port}"] } }]"#,
        r#"{ kind = "http", path = "/health", interval = "3s" }"#,
    );
    let config = parse(&source, "tandem.toml").unwrap();
    let h = health_of(&config, 0);
    assert_eq!(
        h.check,
        HealthCheck::Command {
            argv: vec!["check".into(), "10.0.0.1".into(), "80".into()]
        }
    );
    assert_eq!(
        h.interval,
        Duration::from_secs(3),
        "common keys are still inherited"
    );
}

#[test]
fn health_rise_or_fall_zero_is_rejected_at_the_value() {
    let list = r#"[{ addr = "10.0.0.1:80" }]"#;
    assert_error(
        &with_health(list, r#"{ kind = "tcp", rise = 0 }"#),
        8,
        33,
        "rise must be at least 1",
    );
    assert_error(
        &with_health(list, r#"{ kind = "tcp", fall = 0 }"#),
        8,
        33,
        "fall must be at least 1",
    );
    assert_error(
        &with_health(list, r#"{ kind = "tcp", fall = 101 }"#),
        8,
        33,
        "fall",
    );
}

#[test]
fn health_timeout_longer_than_interval_is_rejected() {
    let source = with_health(
        r#"[{ addr = "10.0.0.1:80" }]"#,
        r#"{ kind = "tcp", interval = "1s", timeout = "2s" }"#,
    );
    assert_error(&source, 8, 53, "longer than interval");
}

#[test]
fn an_empty_health_command_is_rejected() {
    let list = r#"[{ addr = "10.0.0.1:80" }]"#;
    assert_error(
        &with_health(list, r#"{ kind = "command", command = [] }"#),
        8,
        40,
        "must name a program",
    );
    assert_error(
        &with_health(list, r#"{ kind = "command", command = [""] }"#),
        8,
        40,
        "must name a program",
    );
    assert_error(
        &with_health(list, r#"{ kind = "command" }"#),
        8,
        10,
        "needs `command`",
    );
}

#[test]
fn health_kind_errors_name_the_valid_kinds_and_foreign_keys() {
    let list = r#"[{ addr = "10.0.0.1:80" }]"#;
    assert_error(
        &with_health(list, r#"{ kind = "icmp" }"#),
        8,
        19,
        "expected \"tcp\", \"http\"",
    );
    assert_error(
        &with_health(list, r#"{ interval = "1s" }"#),
        8,
        10,
        "health needs a kind",
    );
    assert_error(
        &with_health(list, r#"{ kind = "tcp", path = "/" }"#),
        8,
        33,
        "`path` does not apply to a tcp",
    );
    assert_error(
        &with_health(list, r#"{ kind = "http", expect = "600-" }"#),
        8,
        36,
        "invalid status match",
    );
    assert_error(
        &with_health(list, r#"{ kind = "http", method = "POST" }"#),
        8,
        36,
        "GET",
    );
    assert_error(
        &with_health(list, r#"{ kind = "http", path = "health" }"#),
        8,
        34,
        "must start with '/'",
    );
    assert_error(
        &with_health(
            list,
            r#"{ kind = "process", process = "app", pidfile = "/run/app.pid" }"#,
        ),
        8,
        57,
        "not both",
    );
    assert_error(
        &with_health(list, r#"{ kind = "tcp", port = 0 }"#),
        8,
        33,
        "port",
    );
    assert_error(
        &with_health(list, r#"{ kind = "tcp", start = "maybe" }"#),
        8,
        34,
        "start must be",
    );
}

#[test]
fn a_pool_health_error_is_reported_once_not_once_per_backend() {
    let source = with_health(
        r#"[{ addr = "10.0.0.1:80" }, { addr = "10.0.0.2:80" }, { addr = "10.0.0.3:80" }]"#,
        r#"{ kind = "tcp", rise = 0 }"#,
    );
    assert_eq!(errors(&source).len(), 1);
}

#[test]
fn a_backend_health_error_points_at_the_backends_own_key() {
    let source = with_health(
        r#"[{ addr = "10.0.0.1:80", health = { fall = 0 } }]"#,
        r#"{ kind = "tcp" }"#,
    );
    assert_error(&source, 7, 55, "fall must be at least 1");
}

#[test]
fn probe_intervals_and_timeouts_no_one_means_are_rejected() {
    let list = r#"[{ addr = "10.0.0.1:80" }]"#;
    let cases = [
        (
            r#"{ kind = "tcp", interval = "1ns" }"#,
            "interval \"1ns\" is shorter than the minimum of 10ms",
        ),
        (r#"{ kind = "tcp", interval = "9ms" }"#, "minimum of 10ms"),
        (
            r#"{ kind = "tcp", interval = "365d" }"#,
            "longer than the maximum of 1h",
        ),
        (
            r#"{ kind = "tcp", timeout = "1ns" }"#,
            "timeout \"1ns\" is shorter than the minimum of 1ms",
        ),
    ];
    for (health, fragment) in cases {
        let column = health.rfind("= \"").unwrap() + 3 + "health = ".len();
        assert_error(&with_health(list, health), 8, column, fragment);
    }
    let source = with_health(
        list,
        r#"{ kind = "tcp", interval = "10ms", timeout = "1ms" }"#,
    );
    let config = parse(&source, "t").unwrap();
    let health = health_of(&config, 0);
    assert_eq!(
        (health.interval, health.timeout),
        (Duration::from_millis(10), Duration::from_millis(1))
    );
}

#[test]
fn a_host_header_with_a_line_break_or_space_is_rejected() {
    let list = r#"[{ addr = "10.0.0.1:80" }]"#;
    for (host, fragment) in [
        (r#""example.com\r\nX-Evil: 1""#, "'\\r'"),
        (r#""example.com\n""#, "'\\n'"),
        (r#""exa mple.com""#, "' '"),
        (r#""""#, "must not be empty"),
        (r#""bücher.example""#, "xn--"),
    ] {
        let health = format!("{{ kind = \"http\", host = {host} }}");
        assert_error(&with_health(list, &health), 8, 34, fragment);
    }
    let long = format!("{{ kind = \"http\", host = \"{}\" }}", "a".repeat(256));
    assert_error(&with_health(list, &long), 8, 34, "longer than 255");
    let good = with_health(list, r#"{ kind = "http", host = "www.example.com:8080" }"#);
    let config = parse(&good, "t").unwrap();
    let HealthCheck::Http { host, .. } = &health_of(&config, 0).check else {
        panic!()
    };
    assert_eq!(host.as_deref(), Some("www.example.com:8080"));
}

#[test]
fn a_nul_byte_in_a_command_or_process_is_rejected() {
    let list = r#"[{ addr = "10.0.0.1:80" }]"#;
    assert_error(
        &with_health(
            list,
            r#"{ kind = "command", command = ["/bin/check", "a\u0000b"] }"#,
        ),
        8,
        55,
        "NUL",
    );
    assert_error(
        &with_health(list, r#"{ kind = "process", process = "a\u0000" }"#),
        8,
        40,
        "NUL",
    );
}

#[test]
fn a_udp_check_sends_text_or_hex_and_expects_a_prefix() {
    let one = r#"[{ addr = "10.0.0.1:53" }]"#;
    let config = parse(
        &with_health(
            one,
            r#"{ kind = "udp", send_hex = "ab 01:00", expect_hex = "AB", port = 5353 }"#,
        ),
        "tandem.toml",
    )
    .unwrap();
    assert_eq!(
        health_of(&config, 0).check,
        HealthCheck::Udp {
            addr: addr("10.0.0.1:5353"),
            send: vec![0xab, 0x01, 0x00],
            expect: Some(vec![0xab]),
        }
    );
    let config = parse(
        &with_health(one, r#"{ kind = "udp", send = "ping" }"#),
        "tandem.toml",
    )
    .unwrap();
    assert_eq!(
        health_of(&config, 0).check,
        HealthCheck::Udp {
            addr: addr("10.0.0.1:53"),
            send: b"ping".to_vec(),
            expect: None,
        }
    );
}

#[test]
fn a_udp_check_without_send_or_with_bad_hex_is_an_error_where_written() {
    let one = r#"[{ addr = "10.0.0.1:53" }]"#;
    assert_error(
        &with_health(one, r#"{ kind = "udp" }"#),
        8,
        10,
        "a udp health check needs `send`",
    );
    assert_error(
        &with_health(one, r#"{ kind = "udp", send_hex = "abc" }"#),
        8,
        37,
        "odd number of hex digits",
    );
    assert_error(
        &with_health(one, r#"{ kind = "udp", send_hex = "zz" }"#),
        8,
        37,
        "\"zz\", which is not a hex byte",
    );
    assert_error(
        &with_health(one, r#"{ kind = "udp", send = "a", send_hex = "61" }"#),
        8,
        49,
        "give either `send` or `send_hex`, not both",
    );
    assert_error(
        &with_health(one, r#"{ kind = "tcp", send_hex = "61" }"#),
        8,
        37,
        "`send_hex` does not apply to a tcp health check",
    );
}
