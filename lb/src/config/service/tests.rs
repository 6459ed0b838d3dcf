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

/// MINIMAL's service as UDP, with `extra` keys after line 5.
fn udp_service_with(extra: &str) -> String {
    format!(
        "[[service]]\nname = \"dns\"\nlisten = \"127.0.0.1:53\"\npool = \"web\"\n\
         protocol = \"udp\"\n{extra}\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ addr = \"10.0.0.1:53\" }}]\n"
    )
}

#[test]
fn a_udp_service_reads_its_keys_and_idles_out_after_30s_by_default() {
    let config = parse(
        &udp_service_with("responses = 1\nmax_flows = 5000"),
        "tandem.toml",
    )
    .unwrap();
    let s = &config.services[0];
    assert_eq!(s.protocol, crate::config::Protocol::Udp);
    assert_eq!(s.idle_timeout, Duration::from_secs(30));
    assert_eq!((s.responses, s.max_flows), (1, 5000));
    let tcp = parse(MINIMAL, "tandem.toml").unwrap();
    assert_eq!(tcp.services[0].protocol, crate::config::Protocol::Tcp);
    assert_eq!(tcp.services[0].idle_timeout, Duration::from_secs(300));
    let set = parse(&udp_service_with("idle_timeout = \"2s\""), "tandem.toml").unwrap();
    assert_eq!(set.services[0].idle_timeout, Duration::from_secs(2));
}

#[test]
fn an_unknown_protocol_is_an_error_at_its_value() {
    assert_error(
        &service_with("protocol = \"sctp\""),
        5,
        12,
        "unknown variant `sctp`",
    );
}

#[test]
fn tcp_only_keys_on_a_udp_service_are_errors_at_the_key() {
    for key in [
        "retries = 1",
        "connect_timeout = \"1s\"",
        "first_byte_timeout = \"1s\"",
        "max_conns = 5",
        "max_conns_per_source = 5",
        "backlog = 5",
    ] {
        let name = key.split(' ').next().unwrap();
        let value_column = name.len() + 4;
        assert_error(
            &udp_service_with(key),
            6,
            value_column,
            &format!("`{name}` applies to TCP services only; this one is udp"),
        );
    }
}

#[test]
fn udp_only_keys_on_a_tcp_service_are_errors_at_the_key() {
    assert_error(
        &service_with("responses = 1"),
        5,
        13,
        "`responses` applies to UDP services only",
    );
    assert_error(
        &service_with("max_flows = 1"),
        5,
        13,
        "`max_flows` applies to UDP services only",
    );
}

#[test]
fn responses_and_max_flows_have_ranges() {
    assert_error(
        &udp_service_with("responses = 1001"),
        6,
        13,
        "responses must be between 0 and 1000",
    );
    assert_error(
        &udp_service_with("max_flows = -1"),
        6,
        13,
        "max_flows must be between 0",
    );
}

#[test]
fn a_udp_service_sends_proxy_protocol_v2_only() {
    assert_error(
        &udp_service_with("proxy_protocol = \"v1\""),
        6,
        18,
        "v1 has no form for datagrams",
    );
    let config = parse(&udp_service_with("proxy_protocol = \"v2\""), "tandem.toml").unwrap();
    assert_eq!(
        config.services[0].proxy_protocol,
        Some(crate::config::ProxyProtocol::V2)
    );
}

#[test]
fn a_udp_service_on_the_unspecified_address_is_an_error() {
    let source = udp_service_with("").replace("127.0.0.1:53", "0.0.0.0:53");
    assert_error(&source, 3, 10, "a UDP service listens on one address");
}

#[test]
fn a_tcp_and_a_udp_service_may_share_an_address_but_two_udp_services_may_not() {
    let both = format!(
        "{MINIMAL}[[service]]\nname = \"web-udp\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n\
         protocol = \"udp\"\n"
    );
    let config = parse(&both, "tandem.toml").unwrap();
    assert_eq!(config.services.len(), 2);
    let twice = format!(
        "{both}[[service]]\nname = \"web-udp2\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n\
         protocol = \"udp\"\n"
    );
    assert_error(
        &twice,
        15,
        10,
        "udp listen address 127.0.0.1:80 is already used by service \"web-udp\" at line 10",
    );
}
