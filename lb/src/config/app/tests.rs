//! `[[app]]`: what a valid table means, and each bad one located.

use std::time::Duration;

use super::super::parse;
use super::super::test_support::*;
use super::{AppConfig, RunOn};

/// A config with one VRRP instance ("front") and `app` as the body of an `[[app]]` table.
fn with_app(app: &str) -> String {
    format!(
        "[[vrrp]]\nname = \"front\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"10.0.0.100/24\"]\n\
         [[app]]\n{app}\n"
    )
}

fn app(source: &str) -> AppConfig {
    let config = parse(source, "t").unwrap();
    assert_eq!(config.apps.len(), 1);
    config.apps[0].clone()
}

#[test]
fn a_mirror_app_parses_with_its_defaults() {
    let a = app(&with_app(
        "name = \"db\"\nstart = [\"/usr/local/bin/db\", \"--serve\"]\ninstance = \"front\"",
    ));
    assert_eq!(a.name, "db");
    assert_eq!(a.start, ["/usr/local/bin/db", "--serve"]);
    assert_eq!(a.stop, None);
    assert_eq!(
        a.run_on,
        RunOn::Primary {
            instance: "front".into()
        }
    );
    assert!(a.checks.is_empty());
    assert_eq!(
        a.restart,
        apps::Policy {
            max_restarts: 3,
            within: Duration::from_secs(300),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            start_timeout: Duration::from_secs(30),
            reset_after: None,
        }
    );
    assert_eq!(a.stop_timeout, Duration::from_secs(10));
    assert_eq!(a.weight, None, "a failure puts the instance in FAULT");
    assert!(!a.restart_on_change);
}

#[test]
fn a_weight_and_restart_on_change_parse() {
    let a = app(&with_app(
        "name = \"db\"\nstart = [\"/bin/db\"]\ninstance = \"front\"\nweight = 60\n\
         restart_on_change = true",
    ));
    assert_eq!(a.weight, Some(60));
    assert!(a.restart_on_change);
}

#[test]
fn a_farm_app_with_checks_and_a_restart_policy_parses() {
    let a = app(&with_app(
        "name = \"worker\"\nstart = [\"sh\", \"-c\", \"exec worker\"]\nrun_on = \"all\"\n\
         checks = [{ kind = \"tcp\", port = 8080, interval = \"1s\", timeout = \"500ms\" }, \
         { kind = \"process\", pidfile = \"/run/worker.pid\" }]\n\
         restart = { max = 5, within = \"10m\", backoff = \"2s\", backoff_max = \"1m\" }\n\
         reset_after = \"30m\"",
    ));
    assert_eq!(a.run_on, RunOn::All);
    assert_eq!(a.checks.len(), 2);
    assert_eq!(a.checks[0].interval, Duration::from_secs(1));
    assert_eq!(a.checks[0].eject_after, 0, "no data plane to eject from");
    assert_eq!(a.restart.max_restarts, 5);
    assert_eq!(a.restart.backoff_max, Duration::from_secs(60));
    assert_eq!(a.restart.reset_after, Some(Duration::from_secs(1800)));
}

#[test]
fn bad_app_tables_are_located() {
    // Lines 1-5: the [[vrrp]] table; 6: [[app]]; 7 on: the app's keys.
    assert_error(
        &with_app("name = \"db\"\nstart = []\ninstance = \"front\""),
        8,
        9,
        "start is empty",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"db-server-nowhere\"]\ninstance = \"front\""),
        8,
        10,
        "not found on PATH",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"bin/db\"]\ninstance = \"front\""),
        8,
        10,
        "not an absolute path",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"/bin/db\"]\ninstance = \"back\""),
        9,
        12,
        "instance \"back\" is not defined; defined: front",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"/bin/db\"]"),
        6,
        1,
        "run_on = \"primary\" needs `instance`",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"/bin/db\"]\nrun_on = \"everywhere\""),
        9,
        10,
        "run_on must be \"primary\" or \"all\"",
    );
    assert_error(
        &with_app(
            "name = \"db\"\nstart = [\"/bin/db\"]\ninstance = \"front\"\n\
             checks = [{ kind = \"tcp\" }]",
        ),
        10,
        11,
        "needs `port`",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"/bin/db\"]\nrun_on = \"all\"\nrestart = { max = 0 }"),
        10,
        19,
        "no peer to take over",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"/bin/db\"]\nrun_on = \"all\"\nweight = 10"),
        10,
        10,
        "weight is for run_on = \"primary\"",
    );
    assert_error(
        &with_app("name = \"db\"\nstart = [\"/bin/db\"]\ninstance = \"front\"\nweight = 0"),
        10,
        10,
        "weight",
    );
    assert_error(
        &with_app("name = \"db\"\ninstance = \"front\""),
        6,
        1,
        "app needs `start`",
    );
}

#[test]
fn app_names_are_unique() {
    let source = format!(
        "{}[[app]]\nname = \"db\"\nstart = [\"/bin/db\"]\ninstance = \"front\"\n",
        with_app("name = \"db\"\nstart = [\"/bin/db\"]\ninstance = \"front\"")
    );
    assert_error(
        &source,
        11,
        8,
        "duplicate app name \"db\"; first defined at line 7",
    );
}

#[test]
fn app_programs_hold_no_nul_and_their_times_are_bounded() {
    assert_error(
        &with_app("name = \"db\"\nstart = [\"/bin/db\", \"a\\u0000\"]\ninstance = \"front\""),
        8,
        21,
        "start holds a NUL byte",
    );
    let base = "name = \"db\"\nstart = [\"/bin/db\"]\ninstance = \"front\"";
    for (line, fragment) in [
        (
            "start_timeout = \"1ns\"",
            "shorter than the minimum of 100ms",
        ),
        ("stop_timeout = \"365d\"", "longer than the maximum of 1h"),
        ("reset_after = \"365d\"", "longer than the maximum of 7days"),
        (
            "restart = { within = \"1ms\" }",
            "restart.within \"1ms\" is shorter than the minimum of 1s",
        ),
    ] {
        let column = line.find('"').unwrap() + 1;
        assert_error(&with_app(&format!("{base}\n{line}")), 10, column, fragment);
    }
}
