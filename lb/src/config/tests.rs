//! Whole-file tests: the documented and shipped example configs, syntax errors, checks shared
//! by several sections (names, addresses, durations), errors reported together in document
//! order, `load`, and property tests that parsing never panics. Each section's own tests live
//! beside it, in `<section>/tests.rs`.

use std::time::Duration;

use proptest::prelude::*;

use super::error::{LineIndex, position};
use super::test_support::*;
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
eject_after = 5
eject_time = "2s"
"#;

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
            healthz_listen: None,
            realtime_priority: 0,
            lock_memory: false,
            peer_admin: vec![],
        },
        services: vec![ServiceConfig {
            name: "web".into(),
            protocol: Protocol::Tcp,
            listen: addr("127.0.0.1:8080"),
            pool: "web".into(),
            balance: Balance::LeastConn,
            retries: 2,
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            first_byte_timeout: Duration::from_secs(30),
            max_conns: 10000,
            max_conns_per_source: 0,
            proxy_protocol: Some(ProxyProtocol::V2),
            backlog: 4096,
            freebind: true,
            responses: 0,
            max_flows: 0,
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
            ejection: Ejection {
                after: 5,
                time: Duration::from_secs(2),
                time_max: Duration::from_secs(300),
            },
        }],
        vrrp: vec![],
        apps: vec![],
        anycast: vec![],
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
    // They read the token from /etc/tandem/admin-token, where the install steps put it: here,
    // from a file of this test's.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
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
        assert!(source.contains("admin_token_file = \"/etc/tandem/admin-token\""));
        let source = source.replace("/etc/tandem/admin-token", token.to_str().unwrap());
        let config = parse(&source, file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config.vrrp[0].mode, VrrpMode::Cloud, "{file}");
        assert!(config.vrrp[0].vips.is_empty() && !config.vrrp[0].peers.is_empty());
        assert!(config.node.admin.is_some_and(|a| a.ip().is_unspecified()));
        assert!(config.node.healthz_listen.is_some_and(|a| a.port() == 9091));
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
            healthz_listen: None,
            realtime_priority: 0,
            lock_memory: false,
            peer_admin: vec![],
        }
    );
    let service = &config.services[0];
    assert_eq!(service.balance, Balance::RoundRobin);
    assert_eq!(service.retries, 2);
    assert_eq!(service.connect_timeout, Duration::from_secs(3));
    assert_eq!(service.idle_timeout, Duration::from_secs(300));
    assert_eq!(service.first_byte_timeout, Duration::from_secs(30));
    assert_eq!(service.max_conns_per_source, 0);
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
fn unknown_top_level_table_is_reported_with_its_line() {
    let source = format!("{MINIMAL}[[services]]\nname = \"x\"\n");
    assert_error(&source, 8, 3, "unknown field `services`");
}

#[test]
fn unknown_enum_value_lists_the_valid_ones() {
    assert_error(&service_with("balance = \"random\""), 5, 11, "`maglev`");
    assert_error(&service_with("proxy_protocol = \"v3\""), 5, 18, "`v2`");
    let source = backends("[{ addr = \"10.0.0.1:80\", role = \"standby\" }]");
    assert_error(&source, 7, 44, "`backup`");
}

#[test]
fn serde_errors_carry_only_the_message_not_a_snippet() {
    let error = single_error(&service_with("bogus = 1"));
    assert!(error.message.starts_with("unknown field `bogus`"));
    assert!(!error.message.contains('\n'));
    assert!(!error.message.contains("TOML parse error"));
}

#[test]
fn port_zero_is_rejected_in_listen_and_backend_addresses() {
    let source = MINIMAL.replace("127.0.0.1:80", "127.0.0.1:0");
    assert_error(&source, 3, 10, "port 0");
    assert_error(&backends("[{ addr = \"10.0.0.1:0\" }]"), 7, 22, "port 0");
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

/// The position as the scan from the start of the file computes it.
fn naive_position(source: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = &source[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[test]
fn positions_on_long_lines_of_multibyte_text_count_characters() {
    // Blocks of the index end inside characters and inside lines.
    let line = "é😀a".repeat(700);
    let source = format!("{line}\n{line}\nx");
    let index = LineIndex::new(&source);
    for offset in (0..=source.len() + 3).step_by(7) {
        assert_eq!(
            index.position(offset),
            naive_position(&source, offset),
            "offset {offset}"
        );
    }
    assert_eq!(index.position(source.len()), (3, 2));
}

#[test]
fn a_file_with_thousands_of_errors_reports_the_first_ones_and_counts_the_rest() {
    let list: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "{{ addr = \"10.0.{}.{}:80\", weight = 0 }}",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let source = backends(&format!("[\n{}\n]", list.join(",\n")));
    let errors = parse(&source, "t.toml").unwrap_err();
    assert_eq!(errors.shown.len(), MAX_REPORTED);
    assert_eq!(errors.more, 2000 - MAX_REPORTED);
    assert_eq!(errors.total(), 2000);
    // The first ones, in document order: line 8 holds the first backend.
    let lines: Vec<usize> = errors.shown.iter().map(|e| e.line).collect();
    assert_eq!(lines, (8..8 + MAX_REPORTED).collect::<Vec<_>>());
    let text = errors.to_string();
    assert_eq!(text.lines().count(), MAX_REPORTED + 1);
    assert!(text.ends_with("\n... and 1950 more errors"), "{text}");
}

#[test]
fn a_reference_to_a_missing_pool_lists_at_most_ten_names() {
    let mut source = MINIMAL.replace("pool = \"web\"", "pool = \"nope\"");
    for i in 0..25 {
        source.push_str(&format!(
            "[[pool]]\nname = \"p{i}\"\nbackends = [{{ addr = \"10.0.0.1:80\" }}]\n"
        ));
    }
    let error = single_error(&source);
    assert!(
        error
            .message
            .ends_with("defined pools: \"web\", \"p0\", \"p1\", \"p2\", \"p3\", \"p4\", \"p5\", \"p6\", \"p7\", \"p8\" and 16 more"),
        "{}",
        error.message
    );
}

#[test]
fn invalid_utf8_is_reported_at_the_line_and_column_of_the_first_bad_byte() {
    let mut bytes = MINIMAL.as_bytes().to_vec();
    // Line 2 is `name = "web"`: the 'w' (column 9) becomes "é" (two bytes), the 'e' after it
    // (column 10) a byte that no UTF-8 text holds.
    let at = MINIMAL.find("web").unwrap();
    bytes.splice(at..at + 1, "é".bytes());
    bytes[at + "é".len()] = 0xff;
    let error = parse_bytes(&bytes, "t.toml").unwrap_err();
    assert_eq!(error.total(), 1);
    let error = &error.shown[0];
    assert_eq!((error.line, error.column), (2, 10), "{error}");
    assert!(error.message.contains("UTF-8"), "{error}");
    assert!(error.message.contains("0xff"), "{error}");
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
    let errors = load(path).unwrap_err().shown;
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
        assert!(!errors.shown.is_empty());
        let lines = source.split('\n').count();
        for error in &errors.shown {
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
    fn the_line_index_agrees_with_a_scan_from_the_start(
        source in "[a\\né😀\\r]{0,3000}",
        offsets in prop::collection::vec(0usize..3100, 1..20),
    ) {
        let index = LineIndex::new(&source);
        for offset in offsets {
            prop_assert_eq!(index.position(offset), naive_position(&source, offset));
        }
    }

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
            prop_assert!(!config.services.is_empty() || !config.vrrp.is_empty());
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
    assert_eq!(errors.shown.len(), 1, "{errors}");
    assert_eq!(errors.shown[0].line, 5, "{errors}");
    assert!(errors.shown[0].message.contains("idle_timeout"), "{errors}");
}
