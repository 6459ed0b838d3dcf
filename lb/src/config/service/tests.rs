//! Tests of the `[[service]]` tables: unique names and listen addresses, pool references,
//! and the range of each setting.

use std::time::Duration;

use crate::config::parse;
use crate::config::test_support::{MINIMAL, assert_error, service_with};

#[test]
fn unknown_key_is_reported_with_its_line() {
    assert_error(&service_with("retry = 3"), 5, 1, "unknown field `retry`");
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    assert_error(&service_with("retries = \"3\""), 5, 11, "expected i64");
    assert_error(
        &service_with("freebind = \"yes\""),
        5,
        12,
        "expected a boolean",
    );
}

#[test]
fn service_written_as_a_single_table_is_a_type_error() {
    let source = "[service]\nname = \"web\"\n";
    assert_error(source, 1, 1, "expected a sequence");
}

#[test]
fn missing_required_key_points_at_the_table_header() {
    let source = "[[service]]\nname = \"web\"\npool = \"web\"\n";
    assert_error(source, 1, 1, "missing field `listen`");
}

#[test]
fn duplicate_service_names_point_at_the_second_and_name_the_first_line() {
    let source = format!(
        "{MINIMAL}[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:81\"\npool = \"web\"\n"
    );
    assert_error(&source, 9, 8, "first defined at line 2");
}

#[test]
fn duplicate_listen_address_names_the_other_service() {
    let source = format!(
        "{MINIMAL}[[service]]\nname = \"api\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n"
    );
    assert_error(&source, 10, 10, "already used by service \"web\" at line 3");
}

#[test]
fn duplicate_listen_address_is_found_through_different_spellings() {
    let source = format!(
        "{}[[service]]\nname = \"api\"\nlisten = \"[0:0::1]:80\"\npool = \"web\"\n",
        MINIMAL.replace("127.0.0.1:80", "[::1]:80")
    );
    assert_error(&source, 10, 10, "[::1]:80 is already used");
}

#[test]
fn dangling_pool_reference_names_the_existing_pools() {
    let source = format!(
        "{}[[pool]]\nname = \"api\"\nbackends = [{{ addr = \"10.0.0.2:80\" }}]\n",
        MINIMAL.replace("pool = \"web\"", "pool = \"wbe\"")
    );
    assert_error(
        &source,
        4,
        8,
        "service \"web\" uses pool \"wbe\", which is not defined; defined pools: \"web\", \"api\"",
    );
}

#[test]
fn dangling_pool_reference_says_when_no_pool_exists() {
    let source = "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n";
    assert_error(source, 4, 8, "no [[pool]] is defined");
}

#[test]
fn unparsable_listen_address_says_what_was_expected() {
    let source = MINIMAL.replace("127.0.0.1:80", "localhost:80");
    assert_error(
        &source,
        3,
        10,
        "invalid listen address \"localhost:80\": expected IP:PORT, e.g. 10.0.0.1:80 or [::1]:80",
    );
}

#[test]
fn zero_connect_and_idle_timeouts_are_rejected() {
    assert_error(
        &service_with("connect_timeout = \"0s\""),
        5,
        19,
        "connect_timeout must be greater than 0",
    );
    assert_error(
        &service_with("idle_timeout = \"0ms\""),
        5,
        16,
        "idle_timeout must be greater than 0",
    );
}

#[test]
fn durations_accept_human_units() {
    let source = service_with("connect_timeout = \"500ms\"\nidle_timeout = \"1h 30m\"");
    let config = parse(&source, "t").unwrap();
    assert_eq!(
        config.services[0].connect_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(config.services[0].idle_timeout, Duration::from_secs(5400));
}

#[test]
fn idle_clients_are_bounded_by_default_and_limits_parse() {
    let service = |extra: &str| parse(&service_with(extra), "t").unwrap().services[0].clone();
    let default = service("");
    assert_eq!(default.first_byte_timeout, Duration::from_secs(30));
    assert_eq!(default.max_conns_per_source, 0, "no per-source limit");
    let set = service("first_byte_timeout = \"5s\"\nmax_conns_per_source = 20");
    assert_eq!(set.first_byte_timeout, Duration::from_secs(5));
    assert_eq!(set.max_conns_per_source, 20);
    assert_eq!(
        service("first_byte_timeout = \"0s\"").first_byte_timeout,
        Duration::ZERO,
        "zero turns it off"
    );
    assert_error(
        &service_with("first_byte_timeout = \"soon\""),
        5,
        22,
        "invalid first_byte_timeout",
    );
    assert_error(
        &service_with("max_conns_per_source = -1"),
        5,
        24,
        "max_conns_per_source must be between 0 and",
    );
}

#[test]
fn retries_above_16_is_rejected() {
    assert_error(
        &service_with("retries = 17"),
        5,
        11,
        "retries must be between 0 and 16, got 17",
    );
    assert_eq!(
        parse(&service_with("retries = 16"), "t").unwrap().services[0].retries,
        16
    );
    assert_eq!(
        parse(&service_with("retries = 0"), "t").unwrap().services[0].retries,
        0
    );
}

#[test]
fn backlog_outside_1_to_65535_is_rejected() {
    assert_error(
        &service_with("backlog = 0"),
        5,
        11,
        "backlog must be between 1 and 65535",
    );
    assert_error(
        &service_with("backlog = 65536"),
        5,
        11,
        "backlog must be between 1 and 65535",
    );
    assert_eq!(
        parse(&service_with("backlog = 65535"), "t")
            .unwrap()
            .services[0]
            .backlog,
        65535
    );
}

#[test]
fn a_config_without_services_is_rejected_at_line_1() {
    assert_error("", 1, 1, "at least one is required");
    let only_pool = "\n[[pool]]\nname = \"web\"\nbackends = [{ addr = \"10.0.0.1:80\" }]\n";
    assert_error(only_pool, 1, 1, "no [[service]] or [[vrrp]] defined");
}

#[test]
fn timeouts_no_one_means_are_rejected_at_the_value() {
    for (line, fragment) in [
        (
            "connect_timeout = \"1ns\"",
            "connect_timeout \"1ns\" is shorter than the minimum of 1ms",
        ),
        (
            "connect_timeout = \"365d\"",
            "longer than the maximum of 2m",
        ),
        (
            "idle_timeout = \"1ns\"",
            "shorter than the minimum of 100ms",
        ),
        (
            "idle_timeout = \"365d\"",
            "longer than the maximum of 7days",
        ),
    ] {
        let column = line.find('"').unwrap() + 1;
        assert_error(&service_with(line), 5, column, fragment);
    }
    let config = parse(
        &service_with("connect_timeout = \"1ms\"\nidle_timeout = \"7d\""),
        "t",
    )
    .unwrap();
    assert_eq!(config.services[0].connect_timeout, Duration::from_millis(1));
    assert_eq!(
        config.services[0].idle_timeout,
        Duration::from_secs(7 * 24 * 3600)
    );
}

#[test]
fn a_service_listens_on_unicast_or_every_address() {
    for listen in [
        "224.0.0.1:80",
        "239.1.2.3:80",
        "255.255.255.255:80",
        "[ff02::1]:80",
    ] {
        let source = MINIMAL.replace("127.0.0.1:80", listen);
        assert_error(&source, 3, 10, "TCP listens on unicast addresses");
    }
    for listen in ["0.0.0.0:80", "[::]:80"] {
        let source = MINIMAL.replace("127.0.0.1:80", listen);
        let config = parse(&source, "t").unwrap();
        assert!(config.services[0].listen.ip().is_unspecified());
    }
}
