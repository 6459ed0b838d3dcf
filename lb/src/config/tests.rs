use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::error::position;
use super::*;

/// The example from the operator docs; line numbers below refer to it.
const FULL: &str = r#"[node]
name = "lb1"
threads = 2
drain_timeout = "30s"

[[service]]
name = "web"
listen = "127.0.0.1:8080"
pool = "web"
balance = "least_conn"
retries = 2
connect_timeout = "2s"
idle_timeout = "5m"
max_conns = 10000
proxy_protocol = "v2"
backlog = 4096
freebind = true

[[pool]]
name = "web"
backends = [{ addr = "127.0.0.1:9001", weight = 3 }, { addr = "127.0.0.1:9002", role = "backup", max_conns = 100 }]
"#;

/// The smallest valid config; the service is on lines 1-4, the pool on 5-7.
const MINIMAL: &str = r#"[[service]]
name = "web"
listen = "127.0.0.1:80"
pool = "web"
[[pool]]
name = "web"
backends = [{ addr = "10.0.0.1:80" }]
"#;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn errors(source: &str) -> Vec<ConfigError> {
    match parse(source, "tandem.toml") {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors.0,
    }
}

/// Asserts exactly one error and returns it.
fn single_error(source: &str) -> ConfigError {
    let mut all = errors(source);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

fn assert_error(source: &str, line: usize, column: usize, fragment: &str) {
    let error = single_error(source);
    assert_eq!(
        (error.line, error.column),
        (line, column),
        "wrong position for {error}"
    );
    assert!(
        error.message.contains(fragment),
        "{:?} does not mention {fragment:?}",
        error.message
    );
    assert_eq!(error.file, "tandem.toml");
}

/// MINIMAL with `extra` appended to the service table (after line 4).
fn service_with(extra: &str) -> String {
    format!(
        "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n{extra}\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ addr = \"10.0.0.1:80\" }}]\n"
    )
}

/// MINIMAL with the backends list replaced; the list is on line 7.
fn backends(list: &str) -> String {
    format!(
        "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n\
         [[pool]]\nname = \"web\"\nbackends = {list}\n"
    )
}

/// MINIMAL with `extra` in a `[node]` table on lines 1-2.
fn node_with(extra: &str) -> String {
    format!("[node]\n{extra}\n{MINIMAL}")
}

#[test]
fn full_example_parses_into_the_expected_struct() {
    let config = parse(FULL, "full.toml").unwrap();
    let expected = Config {
        node: NodeConfig {
            name: "lb1".into(),
            threads: 2,
            io: IoMode::Auto,
            drain_timeout: Duration::from_secs(30),
            admin: Some(addr("127.0.0.1:9090")),
            admin_token: None,
            healthz_path: "/healthz".into(),
        },
        services: vec![ServiceConfig {
            name: "web".into(),
            listen: addr("127.0.0.1:8080"),
            pool: "web".into(),
            balance: Balance::LeastConn,
            retries: 2,
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            max_conns: 10000,
            proxy_protocol: Some(ProxyProtocol::V2),
            backlog: 4096,
            freebind: true,
        }],
        pools: vec![PoolConfig {
            name: "web".into(),
            backends: vec![
                BackendConfig {
                    addr: addr("127.0.0.1:9001"),
                    weight: 3,
                    role: Role::Primary,
                    max_conns: 0,
                    health: None,
                },
                BackendConfig {
                    addr: addr("127.0.0.1:9002"),
                    weight: 1,
                    role: Role::Backup,
                    max_conns: 100,
                    health: None,
                },
            ],
        }],
        vrrp: vec![],
    };
    assert_eq!(config, expected);
}

#[test]
fn the_shipped_example_config_is_valid() {
    let source = include_str!("../../../configs/tandem.toml");
    let config = parse(source, "configs/tandem.toml").unwrap();
    assert_eq!(
        config.summary(),
        "node lb1: 2 services, 2 pools, 5 backends"
    );
}

#[test]
fn the_shipped_rack_pair_configs_are_valid_and_differ_only_in_name_and_priority() {
    let lb1 = parse(
        include_str!("../../../configs/rack-lb1.toml"),
        "rack-lb1.toml",
    )
    .unwrap();
    let lb2 = parse(
        include_str!("../../../configs/rack-lb2.toml"),
        "rack-lb2.toml",
    )
    .unwrap();
    assert_eq!((lb1.vrrp[0].priority, lb2.vrrp[0].priority), (150, 100));
    assert!(
        lb1.services.iter().all(|s| s.freebind),
        "services on the VIP bind it anywhere"
    );
    let mut same = lb2.clone();
    same.node.name = lb1.node.name.clone();
    same.vrrp[0].priority = 150;
    assert_eq!(same, lb1);
}

#[test]
fn the_shipped_cloud_pair_configs_are_valid_and_move_no_address() {
    for (file, source) in [
        (
            "cloud-lb1.toml",
            include_str!("../../../configs/cloud-lb1.toml"),
        ),
        (
            "cloud-lb2.toml",
            include_str!("../../../configs/cloud-lb2.toml"),
        ),
    ] {
        let config = parse(source, file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config.vrrp[0].mode, VrrpMode::Cloud, "{file}");
        assert!(config.vrrp[0].vips.is_empty() && !config.vrrp[0].peers.is_empty());
        assert!(config.node.admin.is_some_and(|a| a.ip().is_unspecified()));
    }
}

#[test]
fn omitted_keys_take_their_documented_defaults() {
    let config = parse(MINIMAL, "t.toml").unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        config.node,
        NodeConfig {
            name: "tandem".into(),
            threads: cpus,
            io: IoMode::Auto,
            drain_timeout: Duration::from_secs(30),
            admin: Some(addr("127.0.0.1:9090")),
            admin_token: None,
            healthz_path: "/healthz".into(),
        }
    );
    let service = &config.services[0];
    assert_eq!(service.balance, Balance::RoundRobin);
    assert_eq!(service.retries, 2);
    assert_eq!(service.connect_timeout, Duration::from_secs(3));
    assert_eq!(service.idle_timeout, Duration::from_secs(300));
    assert_eq!(service.max_conns, 0);
    assert_eq!(service.proxy_protocol, None);
    assert_eq!(service.backlog, 1024);
    assert!(!service.freebind);
    assert_eq!(
        config.pools[0].backends[0],
        BackendConfig {
            addr: addr("10.0.0.1:80"),
            weight: 1,
            role: Role::Primary,
            max_conns: 0,
            health: None,
        }
    );
}

#[test]
fn ipv6_listen_and_backend_addresses_are_accepted() {
    let source = MINIMAL
        .replace("127.0.0.1:80", "[::1]:80")
        .replace("10.0.0.1:80", "[2001:db8::7]:8080");
    let config = parse(&source, "t.toml").unwrap();
    assert_eq!(config.services[0].listen, addr("[::1]:80"));
    assert_eq!(config.pools[0].backends[0].addr, addr("[2001:db8::7]:8080"));
}

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
fn every_enum_spelling_parses_back_to_its_variant() {
    for balance in [
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::P2c,
        Balance::Maglev,
    ] {
        let source = service_with(&format!("balance = \"{balance}\""));
        let config = parse(&source, "t.toml").unwrap();
        assert_eq!(config.services[0].balance, balance);
    }
    for proxy in [ProxyProtocol::V1, ProxyProtocol::V2] {
        let source = service_with(&format!("proxy_protocol = \"{}\"", proxy.as_str()));
        let config = parse(&source, "t.toml").unwrap();
        assert_eq!(config.services[0].proxy_protocol, Some(proxy));
    }
    for role in [Role::Primary, Role::Backup] {
        let source = backends(&format!(
            "[{{ addr = \"10.0.0.1:80\", role = \"{}\" }}]",
            role.as_str()
        ));
        let config = parse(&source, "t.toml").unwrap();
        assert_eq!(config.pools[0].backends[0].role, role);
    }
}

#[test]
fn pool_lookup_and_summary_describe_the_config() {
    let config = parse(FULL, "t.toml").unwrap();
    assert_eq!(config.pool("web").unwrap().backends.len(), 2);
    assert!(config.pool("api").is_none());
    assert_eq!(config.summary(), "node lb1: 1 service, 1 pool, 2 backends");

    let two = format!(
        "{MINIMAL}[[service]]\nname = \"api\"\nlisten = \"127.0.0.1:81\"\npool = \"api\"\n\
         [[pool]]\nname = \"api\"\nbackends = [{{ addr = \"10.0.0.2:80\" }}, \
         {{ addr = \"10.0.0.3:80\" }}, {{ addr = \"10.0.0.4:80\" }}, {{ addr = \"10.0.0.5:80\" }}]\n"
    );
    let config = parse(&two, "t.toml").unwrap();
    assert_eq!(
        config.summary(),
        "node tandem: 2 services, 2 pools, 5 backends"
    );
}

#[test]
fn a_pool_used_by_no_service_is_not_an_error() {
    let source =
        format!("{MINIMAL}[[pool]]\nname = \"spare\"\nbackends = [{{ addr = \"10.0.0.9:80\" }}]\n");
    let config = parse(&source, "t.toml").unwrap();
    assert_eq!(config.pools.len(), 2);
}

#[test]
fn syntax_error_is_reported_with_line_and_column() {
    let source = "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\npool = \"web\"\n";
    let error = single_error(source);
    assert_eq!(error.line, 3);
    assert!(!error.message.contains('\n'), "{:?}", error.message);
}

#[test]
fn unclosed_table_header_is_reported_on_its_line() {
    let error = single_error("[node]\nname = \"a\"\n[[service]\n");
    assert_eq!((error.line, error.column), (3, 11));
    assert!(error.message.contains("unclosed"), "{}", error.message);
}

#[test]
fn unknown_key_is_reported_with_its_line() {
    assert_error(&service_with("retry = 3"), 5, 1, "unknown field `retry`");
}

#[test]
fn unknown_top_level_table_is_reported_with_its_line() {
    let source = format!("{MINIMAL}[[services]]\nname = \"x\"\n");
    assert_error(&source, 8, 3, "unknown field `services`");
}

#[test]
fn unknown_key_in_an_inline_backend_is_reported_at_the_key() {
    let source = backends("[{ addr = \"10.0.0.1:80\", wieght = 2 }]");
    assert_error(&source, 7, 37, "unknown field `wieght`");
}

#[test]
fn unknown_key_in_node_is_reported_with_its_line() {
    assert_error(&node_with("workers = 4"), 2, 1, "unknown field `workers`");
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
fn unknown_enum_value_lists_the_valid_ones() {
    assert_error(&service_with("balance = \"random\""), 5, 11, "`maglev`");
    assert_error(&service_with("proxy_protocol = \"v3\""), 5, 18, "`v2`");
    let source = backends("[{ addr = \"10.0.0.1:80\", role = \"standby\" }]");
    assert_error(&source, 7, 44, "`backup`");
}

#[test]
fn missing_required_key_points_at_the_table_header() {
    let source = "[[service]]\nname = \"web\"\npool = \"web\"\n";
    assert_error(source, 1, 1, "missing field `listen`");
}

#[test]
fn serde_errors_carry_only_the_message_not_a_snippet() {
    let error = single_error(&service_with("bogus = 1"));
    assert!(error.message.starts_with("unknown field `bogus`"));
    assert!(!error.message.contains('\n'));
    assert!(!error.message.contains("TOML parse error"));
}

#[test]
fn duplicate_service_names_point_at_the_second_and_name_the_first_line() {
    let source = format!(
        "{MINIMAL}[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:81\"\npool = \"web\"\n"
    );
    assert_error(&source, 9, 8, "first defined at line 2");
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
fn port_zero_is_rejected_in_listen_and_backend_addresses() {
    let source = MINIMAL.replace("127.0.0.1:80", "127.0.0.1:0");
    assert_error(&source, 3, 10, "port 0");
    assert_error(&backends("[{ addr = \"10.0.0.1:0\" }]"), 7, 22, "port 0");
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
fn negative_or_oversized_max_conns_is_rejected() {
    assert_error(
        &service_with("max_conns = -1"),
        5,
        13,
        "max_conns must be between 0 and 4294967295",
    );
    let source = backends("[{ addr = \"10.0.0.1:80\", max_conns = 4294967296 }]");
    assert_error(&source, 7, 49, "max_conns must be between 0 and 4294967295");
}

#[test]
fn bad_duration_is_rejected_with_an_example() {
    assert_error(
        &service_with("connect_timeout = \"2 parsecs\""),
        5,
        19,
        "invalid connect_timeout",
    );
    assert_error(&service_with("idle_timeout = \"soon\""), 5, 16, "\"500ms\"");
    assert_error(
        &node_with("drain_timeout = \"-1s\""),
        2,
        17,
        "invalid drain_timeout",
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
fn zero_drain_timeout_means_close_immediately() {
    let config = parse(&node_with("drain_timeout = \"0s\""), "t").unwrap();
    assert_eq!(config.node.drain_timeout, Duration::ZERO);
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
fn empty_names_are_rejected() {
    let source = MINIMAL.replacen("name = \"web\"", "name = \"\"", 1);
    assert_error(&source, 2, 8, "service name must not be empty");
    assert_error(
        &node_with("name = \"\""),
        2,
        8,
        "node name must not be empty",
    );
}

#[test]
fn names_outside_the_label_safe_alphabet_are_rejected() {
    let source = MINIMAL
        .replace("name = \"web\"\nbackends", "name = \"web pool\"\nbackends")
        .replace("pool = \"web\"", "pool = \"web pool\"");
    assert_error(&source, 6, 8, "pool name \"web pool\" contains ' '");
    let source = MINIMAL.replacen("name = \"web\"", "name = \"web/v1\"", 1);
    assert_error(&source, 2, 8, "service name \"web/v1\" contains '/'");
    assert_error(&node_with("name = \"lb:1\""), 2, 8, "metrics labels");
    let ok = MINIMAL.replacen("name = \"web\"", "name = \"Web_v1.2-b\"", 1);
    assert!(parse(&ok, "t").is_ok());
}

#[test]
fn a_config_without_services_is_rejected_at_line_1() {
    assert_error("", 1, 1, "at least one is required");
    let only_pool = "\n[[pool]]\nname = \"web\"\nbackends = [{ addr = \"10.0.0.1:80\" }]\n";
    assert_error(only_pool, 1, 1, "no [[service]] defined");
}

#[test]
fn all_semantic_errors_are_reported_together_in_document_order() {
    let source = r#"[node]
threads = 0
drain_timeout = "forever"

[[service]]
name = "web"
listen = "127.0.0.1:80"
pool = "nope"
retries = 17

[[service]]
name = "web"
listen = "127.0.0.1:80"
pool = "web"
connect_timeout = "0s"
backlog = 0

[[pool]]
name = "web"
backends = [{ addr = "10.0.0.1:80", weight = 0 }, { addr = "10.0.0.1:80" }, { addr = "nowhere" }]

[[pool]]
name = "empty!"
backends = []
"#;
    let found: Vec<(usize, usize)> = errors(source).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        found,
        vec![
            (2, 11),  // threads = 0
            (3, 17),  // bad duration
            (8, 8),   // dangling pool
            (9, 11),  // retries > 16
            (12, 8),  // duplicate service name
            (13, 10), // duplicate listen
            (15, 19), // zero connect_timeout
            (16, 11), // backlog 0
            (20, 46), // weight 0
            (20, 60), // duplicate backend
            (20, 86), // unparsable backend
            (23, 8),  // bad pool name
            (24, 12), // empty pool
        ]
    );
}

#[test]
fn errors_display_as_file_line_column_message_one_per_line() {
    let source = service_with("retries = 17\nbacklog = 0");
    let errors = parse(&source, "/etc/tandem.toml").unwrap_err();
    assert_eq!(
        errors.to_string(),
        "/etc/tandem.toml:5:11: retries must be between 0 and 16, got 17\n\
         /etc/tandem.toml:6:11: backlog must be between 1 and 65535, got 0"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(position("", 0), (1, 1));
    assert_eq!(position("ab\ncd", 3), (2, 1));
    assert_eq!(position("ab\ncd", 4), (2, 2));
    // 'é' is two bytes; the offset after it is column 2.
    assert_eq!(position("é=1", 2), (1, 2));
    // Offsets inside a character or past the end are clamped.
    assert_eq!(position("é=1", 1), (1, 1));
    assert_eq!(position("a\n", 99), (2, 1));

    // Byte offset 36, character column 36: the 'é' before it is one column.
    let found: Vec<(usize, usize)> = errors(&backends("[{ addr = \"é\", weight = 0 }]"))
        .iter()
        .map(|e| (e.line, e.column))
        .collect();
    assert_eq!(found, vec![(7, 22), (7, 36)]);
}

#[test]
fn load_reads_and_validates_a_file() {
    let path = std::env::temp_dir().join(format!("tandem-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, FULL).unwrap();
    let loaded = load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap(), parse(FULL, "x").unwrap());
}

#[test]
fn load_reports_an_unreadable_file_at_line_0_with_the_os_error() {
    let path = std::path::Path::new("/nonexistent/tandem.toml");
    let errors = load(path).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    let error = &errors[0];
    assert_eq!(error.file, "/nonexistent/tandem.toml");
    assert_eq!((error.line, error.column), (0, 0));
    assert!(
        error.message.contains("No such file or directory"),
        "{}",
        error.message
    );
}

/// Every reported position must exist in the source, so editors can jump to it.
fn assert_positions_in_bounds(source: &str, result: &Result<Config, ConfigErrors>) {
    if let Err(errors) = result {
        assert!(!errors.0.is_empty());
        let lines = source.split('\n').count();
        for error in &errors.0 {
            assert!(
                error.line >= 1 && error.line <= lines,
                "{error} in {source:?}"
            );
            assert!(error.column >= 1, "{error}");
            assert!(!error.message.contains('\n'), "multi-line message: {error}");
        }
    }
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_input(source in "\\PC*") {
        let result = parse(&source, "fuzz.toml");
        assert_positions_in_bounds(&source, &result);
    }

    #[test]
    fn parse_never_panics_on_mutations_of_a_valid_config(
        edits in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = FULL.as_bytes().to_vec();
        for (insert, index, byte) in edits {
            if insert {
                let at = index.index(bytes.len() + 1);
                bytes.insert(at, byte);
            } else if !bytes.is_empty() {
                let at = index.index(bytes.len());
                bytes.remove(at);
            }
        }
        let source = String::from_utf8_lossy(&bytes);
        let result = parse(&source, "fuzz.toml");
        assert_positions_in_bounds(&source, &result);
        if let Ok(config) = result {
            prop_assert!(!config.services.is_empty());
            for service in &config.services {
                prop_assert!(config.pool(&service.pool).is_some());
            }
        }
    }
}

#[test]
fn durations_longer_than_a_year_are_rejected_with_their_line() {
    let src = "[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:80\"\npool = \"p\"\nidle_timeout = \"300000000000y\"\n\n[[pool]]\nname = \"p\"\nbackends = [{ addr = \"127.0.0.1:81\" }]\n";
    let errors = parse(src, "t.toml").unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].line, 5, "{errors}");
    assert!(errors.0[0].message.contains("idle_timeout"), "{errors}");
}

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

/// MINIMAL plus one `[[vrrp]]` table (from line 8) holding `body`.
fn with_vrrp(body: &str) -> String {
    format!("{MINIMAL}[[vrrp]]\n{body}\n")
}

const VRRP_BASE: &str = "name = \"front\"\ninterface = \"eth0\"\nvrid = 51";

#[test]
fn a_vrrp_instance_parses_with_its_defaults() {
    let config = parse(
        &with_vrrp(&format!(
            "{VRRP_BASE}\nvips = [\"10.0.0.100/24\", \"10.0.0.101\"]"
        )),
        "t",
    )
    .unwrap();
    let v = &config.vrrp[0];
    assert_eq!(
        (v.name.as_str(), v.interface.as_str(), v.vrid),
        ("front", "eth0", 51)
    );
    assert_eq!(
        (v.priority, v.version, v.advert_interval),
        (100, 3, Duration::from_secs(1))
    );
    assert_eq!(v.mode, VrrpMode::Vip);
    assert_eq!(
        v.vips,
        vec![
            Vip {
                addr: "10.0.0.100".parse().unwrap(),
                prefix: 24
            },
            Vip {
                addr: "10.0.0.101".parse().unwrap(),
                prefix: 32
            },
        ]
    );
    assert!(v.preempt && v.peers.is_empty() && v.track.is_empty());
    assert_eq!(
        (v.garp_repeat, v.garp_interval, v.garp_refresh),
        (5, Duration::from_millis(200), None)
    );
}

#[test]
fn a_service_listening_on_a_vip_binds_it_without_holding_it() {
    let source = MINIMAL.replace("127.0.0.1:80", "10.0.0.100:80");
    let config = parse(
        &format!("{source}[[vrrp]]\n{VRRP_BASE}\nvips = [\"10.0.0.100/24\"]\n"),
        "t",
    )
    .unwrap();
    assert!(config.services[0].freebind, "freebind is implied on a VIP");
}

#[test]
fn vrrp_ranges_follow_the_rfcs() {
    let vips = "vips = [\"10.0.0.100/24\"]";
    let vrid0 = with_vrrp(&format!(
        "name = \"f\"\ninterface = \"eth0\"\nvrid = 0\n{vips}"
    ));
    assert_error(&vrid0, 11, 8, "vrid must be between 1 and 255");
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\n{vips}\npriority = 0")),
        13,
        12,
        "priority must be between 1 and 255",
    );
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\n{vips}\nadvert_interval = \"15ms\"")),
        13,
        19,
        "multiple of 10ms",
    );
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\n{vips}\nadvert_interval = \"41s\"")),
        13,
        19,
        "40.95s",
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\nversion = 2\nadvert_interval = \"500ms\""
        )),
        14,
        19,
        "whole seconds",
    );
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\n{vips}\nversion = 4")),
        13,
        11,
        "version must be between 2 and 3",
    );
}

#[test]
fn vrrp_address_errors_point_at_the_value() {
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\nvips = [\"10.0.0.300/24\"]")),
        12,
        9,
        "invalid vip",
    );
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\nvips = [\"10.0.0.100/33\"]")),
        12,
        9,
        "prefix length must be 1 to 32",
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\nvips = [\"10.0.0.100/24\", \"fd00::1/64\"]"
        )),
        12,
        26,
        "address family",
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\nvips = [\"fd00::1/64\"]\nversion = 2"
        )),
        13,
        11,
        "VRRPv2 is IPv4 only",
    );
    assert_error(&with_vrrp(VRRP_BASE), 8, 1, "needs `vips`");
}

#[test]
fn vrrp_track_must_name_a_pool_and_an_owner_cannot_track() {
    let vips = "vips = [\"10.0.0.100/24\"]";
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\ntrack = [{{ pool = \"app\", weight = 60 }}]"
        )),
        13,
        19,
        "pool \"app\", which is not defined",
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\ntrack = [{{ pool = \"web\", weight = 255 }}]"
        )),
        13,
        35,
        "weight must be between 1 and 254",
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\npriority = 255\ntrack = [{{ pool = \"web\", weight = 60 }}]"
        )),
        14,
        10,
        "address owner",
    );
    let ok = parse(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\ntrack = [{{ pool = \"web\", min_healthy = 1, weight = 60 }}]"
        )),
        "t",
    )
    .unwrap();
    assert_eq!(
        ok.vrrp[0].track,
        vec![TrackPool {
            pool: "web".into(),
            min_healthy: 1,
            weight: 60
        }]
    );
}

#[test]
fn two_instances_on_one_link_need_distinct_vrids() {
    let one = format!("{VRRP_BASE}\nvips = [\"10.0.0.100/24\"]");
    let source = format!(
        "{MINIMAL}[[vrrp]]\n{one}\n[[vrrp]]\nname = \"back\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"10.0.0.101/24\"]\n"
    );
    assert_error(&source, 16, 8, "already used by vrrp \"front\"");
}

#[test]
fn cloud_mode_needs_peers_and_no_vips() {
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\nmode = \"cloud\"")),
        8,
        1,
        "needs unicast `peers`",
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\nmode = \"cloud\"\npeers = [\"10.0.0.2\"]\nvips = [\"10.0.0.100\"]"
        )),
        14,
        9,
        "remove `vips`",
    );
    let ok = parse(
        &with_vrrp(&format!(
            "{VRRP_BASE}\nmode = \"cloud\"\npeers = [\"10.0.0.2\"]"
        )),
        "t",
    )
    .unwrap();
    assert_eq!(ok.vrrp[0].mode, VrrpMode::Cloud);
}

#[test]
fn an_empty_notify_command_is_rejected() {
    let vips = "vips = [\"10.0.0.100/24\"]";
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\n{vips}\nnotify = {{ master = [] }}")),
        13,
        21,
        "notify.master must name a program",
    );
}

#[test]
fn track_gateway_parses_with_defaults_and_rejects_ipv6_and_long_timeouts() {
    let vips = "vips = [\"10.0.0.100/24\"]";
    let ok = parse(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\ntrack_gateway = {{ addr = \"10.0.0.254\" }}"
        )),
        "t",
    )
    .unwrap();
    assert_eq!(
        ok.vrrp[0].track_gateway,
        Some(TrackGateway {
            addr: "10.0.0.254".parse().unwrap(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        })
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\ntrack_gateway = {{ addr = \"fd00::1\" }}"
        )),
        13,
        26,
        "IPv4 addresses only",
    );
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\ntrack_gateway = {{ addr = \"10.0.0.254\", interval = \"1s\", timeout = \"2s\" }}"
        )),
        13,
        67,
        "timeout is longer than interval",
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
fn ipv6_peers_must_be_link_local_and_limits_hold() {
    let v6 = "vips = [\"fd00::100/64\"]";
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\n{v6}\npeers = [\"fd00::2\"]")),
        13,
        10,
        "link-local",
    );
    assert!(
        parse(
            &with_vrrp(&format!("{VRRP_BASE}\n{v6}\npeers = [\"fe80::2\"]")),
            "t"
        )
        .is_ok()
    );
    let v4 = "vips = [\"10.0.0.100/24\"]";
    assert_error(
        &with_vrrp(&format!("{VRRP_BASE}\n{v4}\npreempt_delay = \"1001s\"")),
        13,
        17,
        "at most 1000s",
    );
    let many: Vec<String> = (0..256)
        .map(|i| format!("\"10.0.{}.{}\"", i / 200, i % 200 + 1))
        .collect();
    let errors = errors(&with_vrrp(&format!(
        "{VRRP_BASE}\nvips = [{}]",
        many.join(", ")
    )));
    assert!(
        errors.iter().any(|e| e.message.contains("at most 255")),
        "{errors:?}"
    );
}
