//! Tests of the `[[vrrp]]` tables: defaults, the ranges the RFCs fix, address families,
//! tracking, cloud mode and notify commands.

use std::time::Duration;

use crate::config::test_support::{MINIMAL, assert_error, errors};
use crate::config::{TrackGateway, TrackPool, Vip, VrrpMode, parse};

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
fn a_node_with_vrrp_and_no_services_is_valid() {
    // keepalived's job alone: hold a VIP, or say which node is primary for an application that
    // serves its own traffic.
    let config = parse(
        &format!("[[vrrp]]\n{VRRP_BASE}\nvips = [\"10.0.0.100/24\"]\n"),
        "t",
    )
    .unwrap();
    assert!(config.services.is_empty() && config.pools.is_empty());
    assert_eq!(config.vrrp.len(), 1);
    // Tracking still needs a pool to track.
    let tracking = format!(
        "[[vrrp]]\n{VRRP_BASE}\nvips = [\"10.0.0.100/24\"]\ntrack = [{{ pool = \"web\", weight = 10 }}]\n"
    );
    assert_error(&tracking, 6, 19, "not defined");
}

#[test]
fn an_unspecified_source_is_rejected_at_the_value() {
    for any in ["0.0.0.0", "::"] {
        let vips = if any == "::" {
            "fd00::1/64"
        } else {
            "10.0.0.100/24"
        };
        assert_error(
            &with_vrrp(&format!(
                "{VRRP_BASE}\nvips = [\"{vips}\"]\nsource = \"{any}\""
            )),
            13,
            10,
            "no address to send adverts from",
        );
    }
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

#[test]
fn addresses_that_are_no_hosts_are_no_vips() {
    for (vip, fragment) in [
        ("255.255.255.255/32", "broadcast address"),
        ("10.0.0.255/24", "broadcast address of its /24"),
        ("224.0.0.18", "multicast"),
        ("0.0.0.0/0", "prefix length"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3/8", "this network"),
        ("240.0.0.1/24", "reserved"),
        ("127.0.0.2/8", "loopback"),
        ("ff02::1/64", "multicast"),
        ("::/64", "unspecified"),
    ] {
        assert_error(
            &with_vrrp(&format!("{VRRP_BASE}\nvips = [\"{vip}\"]")),
            12,
            9,
            fragment,
        );
    }
    // Neither /31 nor /32 has a broadcast address (RFC 3021).
    for vip in ["10.0.0.255/32", "10.0.0.255/31", "10.0.0.254/24"] {
        parse(&with_vrrp(&format!("{VRRP_BASE}\nvips = [\"{vip}\"]")), "t")
            .unwrap_or_else(|e| panic!("{vip}: {e}"));
    }
}

#[test]
fn a_vip_belongs_to_one_instance() {
    let one = format!("{VRRP_BASE}\nvips = [\"10.0.0.100/24\"]");
    let source = format!(
        "{MINIMAL}[[vrrp]]\n{one}\n[[vrrp]]\nname = \"back\"\ninterface = \"eth1\"\nvrid = 52\nvips = [\"10.0.0.100/24\"]\n"
    );
    assert_error(
        &source,
        17,
        9,
        "vip 10.0.0.100 is already held by vrrp \"front\" (line 12)",
    );
    let twice = with_vrrp(&format!(
        "{VRRP_BASE}\nvips = [\"10.0.0.100/24\", \"10.0.0.100/32\"]"
    ));
    assert_error(&twice, 12, 26, "listed twice (first at line 12)");
}

#[test]
fn peers_and_gateways_are_unicast_hosts() {
    let vips = "vips = [\"10.0.0.100/24\"]";
    for (peer, fragment) in [
        ("224.0.0.18", "leave `peers` out"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
    ] {
        assert_error(
            &with_vrrp(&format!("{VRRP_BASE}\n{vips}\npeers = [\"{peer}\"]")),
            13,
            10,
            fragment,
        );
    }
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\n{vips}\ntrack_gateway = {{ addr = \"255.255.255.255\" }}"
        )),
        13,
        26,
        "broadcast",
    );
}

#[test]
fn notify_programs_hold_no_nul_byte() {
    assert_error(
        &with_vrrp(&format!(
            "{VRRP_BASE}\nvips = [\"10.0.0.100/24\"]\nnotify = {{ master = [\"/bin/x\", \"a\\u0000\"] }}"
        )),
        13,
        21,
        "NUL",
    );
}
