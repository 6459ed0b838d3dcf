//! Tests of the `[[pool]]` tables: unique names, a non-empty list of unique concrete backends,
//! and each backend's settings.

use crate::config::parse;
use crate::config::test_support::{MINIMAL, assert_error, backends};

#[test]
fn backends_may_be_written_as_an_array_of_tables() {
    let source = "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\n\
                  [[pool]]\nname = \"p\"\n[[pool.backends]]\naddr = \"10.0.0.1:80\"\n\
                  [[pool.backends]]\naddr = \"10.0.0.2:80\"\nweight = 5\n";
    let config = parse(source, "t.toml").unwrap();
    assert_eq!(config.pools[0].backends.len(), 2);
    assert_eq!(config.pools[0].backends[1].weight, 5);
}

#[test]
fn a_pool_used_by_no_service_is_not_an_error() {
    let source =
        format!("{MINIMAL}[[pool]]\nname = \"spare\"\nbackends = [{{ addr = \"10.0.0.9:80\" }}]\n");
    let config = parse(&source, "t.toml").unwrap();
    assert_eq!(config.pools.len(), 2);
}

#[test]
fn unknown_key_in_an_inline_backend_is_reported_at_the_key() {
    let source = backends("[{ addr = \"10.0.0.1:80\", wieght = 2 }]");
    assert_error(&source, 7, 37, "unknown field `wieght`");
}

#[test]
fn duplicate_pool_names_point_at_the_second_and_name_the_first_line() {
    let source =
        format!("{MINIMAL}[[pool]]\nname = \"web\"\nbackends = [{{ addr = \"10.0.0.2:80\" }}]\n");
    assert_error(
        &source,
        9,
        8,
        "duplicate pool name \"web\"; first defined at line 6",
    );
}

#[test]
fn pool_with_an_empty_backend_list_is_rejected_at_the_list() {
    assert_error(&backends("[]"), 7, 12, "pool \"web\" has no backends");
}

#[test]
fn pool_without_a_backends_key_is_rejected_at_its_header() {
    let source = "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n\
                  [[pool]]\nname = \"web\"\n";
    assert_error(source, 5, 1, "has no backends");
}

#[test]
fn duplicate_backend_addr_within_a_pool_is_rejected() {
    let source =
        backends("[\n  { addr = \"10.0.0.1:80\" },\n  { addr = \"10.0.0.1:80\", weight = 2 },\n]");
    assert_error(
        &source,
        9,
        12,
        "duplicate backend 10.0.0.1:80 in pool \"web\"; first listed at line 8, column 12",
    );
}

#[test]
fn the_same_backend_in_two_pools_is_allowed() {
    let source =
        format!("{MINIMAL}[[pool]]\nname = \"other\"\nbackends = [{{ addr = \"10.0.0.1:80\" }}]\n");
    assert!(parse(&source, "t.toml").is_ok());
}

#[test]
fn unparsable_backend_address_says_what_was_expected() {
    assert_error(
        &backends("[{ addr = \"::1:80\" }]"),
        7,
        22,
        "expected IP:PORT",
    );
    assert_error(
        &backends("[{ addr = \"10.0.0.1\" }]"),
        7,
        22,
        "expected IP:PORT",
    );
}

#[test]
fn unspecified_backend_address_is_rejected() {
    assert_error(
        &backends("[{ addr = \"0.0.0.0:80\" }]"),
        7,
        22,
        "unspecified",
    );
}

#[test]
fn weight_zero_suggests_draining_instead() {
    let source = backends("[{ addr = \"10.0.0.1:80\", weight = 0 }]");
    assert_error(
        &source,
        7,
        46,
        "to stop traffic to a backend, drain it or remove it",
    );
}

#[test]
fn weight_above_256_is_rejected_and_256_is_accepted() {
    let source = backends("[{ addr = \"10.0.0.1:80\", weight = 257 }]");
    assert_error(&source, 7, 46, "weight must be between 1 and 256, got 257");
    let source = backends("[{ addr = \"10.0.0.1:80\", weight = 256 }]");
    assert_eq!(
        parse(&source, "t").unwrap().pools[0].backends[0].weight,
        256
    );
}

#[test]
fn unchecked_backends_are_ejected_after_three_failures_by_default_and_a_pool_may_say_otherwise() {
    let config = parse(MINIMAL, "t.toml").unwrap();
    let e = config.pools[0].ejection;
    assert_eq!(
        (e.after, e.time, e.time_max),
        (
            3,
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(300)
        )
    );
    let off = format!("{MINIMAL}eject_after = 0\n");
    assert_eq!(parse(&off, "t.toml").unwrap().pools[0].ejection.after, 0);
}

#[test]
fn a_pool_with_health_checks_takes_eject_after_in_its_health_table() {
    let source = format!("{MINIMAL}health = {{ kind = \"tcp\" }}\neject_after = 2\n");
    let line = source.lines().count();
    assert_error(&source, line, 15, "set `eject_after` in the health table");
    let short = format!("{MINIMAL}eject_time = \"1m\"\neject_time_max = \"10s\"\n");
    let line = short.lines().count();
    assert_error(
        &short,
        line,
        18,
        "eject_time_max is shorter than eject_time",
    );
}

#[test]
fn multicast_and_broadcast_backends_are_rejected() {
    for (addr, fragment) in [
        ("224.0.0.1:80", "multicast"),
        ("255.255.255.255:80", "broadcast"),
        ("[ff02::1]:80", "multicast"),
        ("[::]:80", "unspecified"),
    ] {
        assert_error(
            &backends(&format!("[{{ addr = \"{addr}\" }}]")),
            7,
            22,
            fragment,
        );
    }
}

#[test]
fn ejection_times_are_10ms_to_an_hour() {
    let source = format!("{MINIMAL}eject_time = \"1ns\"\n");
    assert_error(&source, 8, 14, "shorter than the minimum of 10ms");
    let source = format!("{MINIMAL}eject_time_max = \"365d\"\n");
    assert_error(&source, 8, 18, "longer than the maximum of 1h");
}
