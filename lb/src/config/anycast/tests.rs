//! `[[anycast]]`: what a valid table means, and each bad one located.

use std::time::Duration;

use super::super::parse;
use super::super::test_support::*;

/// MINIMAL (a service and pool "web") plus `table` as the body of an `[[anycast]]` table,
/// which starts at line 8.
fn with_anycast(table: &str) -> String {
    format!("{MINIMAL}[[anycast]]\n{table}\n")
}

#[test]
fn an_announcement_parses_with_its_defaults() {
    let config = parse(
        &with_anycast("name = \"front\"\nvips = [\"192.0.2.10\", \"2001:db8::10/128\"]\ntrack = [{ pool = \"web\" }]"),
        "t",
    )
    .unwrap();
    let a = &config.anycast[0];
    assert_eq!(a.name, "front");
    assert_eq!(
        a.vips,
        [addr("192.0.2.10:0").ip(), addr("[2001:db8::10]:0").ip()]
    );
    assert_eq!(a.interface, "lo");
    assert_eq!(a.track[0].pool, "web");
    assert_eq!(a.track[0].min_healthy, 1);
    assert_eq!(a.withdraw_grace, Duration::from_secs(2));
}

#[test]
fn a_service_on_an_anycast_address_binds_it_before_it_is_announced() {
    let source = MINIMAL.replace("127.0.0.1:80", "192.0.2.10:80")
        + "[[anycast]]\nname = \"front\"\nvips = [\"192.0.2.10\"]\n";
    assert!(parse(&source, "t").unwrap().services[0].freebind);
}

#[test]
fn bad_announcements_are_located() {
    // Lines 1-7: MINIMAL; 8: [[anycast]]; 9 on: its keys.
    assert_error(&with_anycast("name = \"a\""), 8, 1, "anycast needs `vips`");
    assert_error(
        &with_anycast("name = \"a\"\nvips = [\"192.0.2.0/24\"]"),
        10,
        9,
        "announced as a host route",
    );
    assert_error(
        &with_anycast("name = \"a\"\nvips = [\"255.255.255.255\"]"),
        10,
        9,
        "broadcast",
    );
    assert_error(
        &with_anycast("name = \"a\"\nvips = [\"224.0.0.1\"]"),
        10,
        9,
        "cannot be a virtual address",
    );
    assert_error(
        &with_anycast("name = \"a\"\nvips = [\"192.0.2.10\", \"192.0.2.10\"]"),
        10,
        23,
        "already announced at line 10",
    );
    assert_error(
        &with_anycast("name = \"a\"\nvips = [\"192.0.2.10\"]\ntrack = [{ pool = \"nope\" }]"),
        11,
        19,
        "track names pool \"nope\"",
    );
    assert_error(
        &with_anycast(
            "name = \"a\"\nvips = [\"192.0.2.10\"]\ntrack = [{ pool = \"web\", min_healthy = 2 }]",
        ),
        11,
        40,
        "min_healthy",
    );
}
