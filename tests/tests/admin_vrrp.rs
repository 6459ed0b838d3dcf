//! The admin API of VRRP nodes, in network namespaces the test builds: `/healthz` follows the
//! role (the cloud-mode contract with a target group), and `swap` moves the master role — and
//! with it the VIP and the traffic — to the peer.

mod common;

use std::time::Duration;

use common::netns::{self, admin_in, first_instance_status, has_addr};
use common::rack::Rack;
use common::*;

fn healthz(ns: &str) -> Option<(u16, String)> {
    admin_in(ns, "GET", "/healthz")
}

/// The value of the sample `name{labels}` in the `/metrics` of the node in `ns`.
fn metric(ns: &str, sample: &str) -> Option<f64> {
    let (_, body) = admin_in(ns, "GET", "/metrics")?;
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

const TOKEN_LINE: &str = "admin_token = \"test-token-0123456789\"";

#[test]
fn cloud_mode_healthz_follows_the_role_and_swap_hands_it_over() {
    let Some(rack) = Rack::new("cloud mode healthz") else {
        return;
    };
    let _backends = rack.backends();
    // Each node serves on its own address; only the role moves.
    let config = |i: usize, priority: u8| {
        let me = rack.lb_ip(i);
        format!(
            r#"[node]
name = "lb{n}"
threads = 1
drain_timeout = "1s"
{TOKEN_LINE}

[[service]]
name = "web"
listen = "{me}:80"
pool = "web"

[[pool]]
name = "web"
backends = [{{ addr = "127.0.0.1:9000" }}]

{cloud}"#,
            n = i + 1,
            cloud = rack.cloud_instance(i, priority)
        )
    };
    let lb1 = rack.start_config(0, &config(0, 150));
    let mut lb2 = rack.start_config(1, &config(1, 100));
    let roles = |a: &str, b: &str| {
        healthz(&rack.lbs[0]).is_some_and(|(_, body)| body.trim() == a)
            && healthz(&rack.lbs[1]).is_some_and(|(_, body)| body.trim() == b)
    };
    let logs = || logs_of(&[&lb1, &lb2]);
    wait_until(&format!("lb1 primary, lb2 secondary\n{}", logs()), || {
        roles("primary", "secondary")
    });
    assert_eq!(healthz(&rack.lbs[0]).unwrap().0, 200);
    assert_eq!(healthz(&rack.lbs[1]).unwrap().0, 503);
    assert!(!has_addr(&rack.lbs[0], rack.vip) && !has_addr(&rack.lbs[1], rack.vip));

    // How close the pair runs to a flap: the master measures how late its adverts leave, the
    // backup how much of Master_Down_Interval (about 360 ms here) was left when each came.
    let lateness = "tandem_vrrp_advert_send_lateness_seconds";
    let margin = "tandem_vrrp_master_down_margin_seconds";
    let count =
        |ns: &str, family: &str| metric(ns, &format!("{family}_count{{instance=\"front\"}}"));
    wait_until(&format!("histograms filled\n{}", logs()), || {
        count(&rack.lbs[0], lateness).is_some_and(|n| n >= 3.0)
            && count(&rack.lbs[1], margin).is_some_and(|n| n >= 3.0)
    });
    let inf = |family: &str| format!("{family}_bucket{{le=\"+Inf\",instance=\"front\"}}");
    assert_eq!(
        metric(&rack.lbs[1], &inf(lateness)),
        Some(0.0),
        "a backup sends none"
    );
    let margins = count(&rack.lbs[1], margin).unwrap();
    let sum = metric(&rack.lbs[1], &format!("{margin}_sum{{instance=\"front\"}}")).unwrap();
    // Normally Master_Down_Interval less one interval: 260 ms, give or take scheduling.
    let mean = sum / margins;
    assert!((0.15..0.36).contains(&mean), "mean margin {mean} s");
    let worst_margin = first_instance_status(&rack.lbs[1], "worst_margin_ms");
    assert!(
        worst_margin
            .as_f64()
            .is_some_and(|ms| ms > 0.0 && ms < 360.0),
        "{worst_margin}"
    );
    assert_eq!(
        first_instance_status(&rack.lbs[1], "worst_send_lateness_ms"),
        serde_json::Value::Null
    );
    let worst_lateness = first_instance_status(&rack.lbs[0], "worst_send_lateness_ms");
    assert!(
        worst_lateness
            .as_f64()
            .is_some_and(|ms| (0.0..100.0).contains(&ms)),
        "{worst_lateness}"
    );
    assert_eq!(
        first_instance_status(&rack.lbs[0], "worst_margin_ms"),
        serde_json::Value::Null
    );

    // Swap: lb2 becomes primary, and lb1 does not take the role back by preemption.
    let (code, body) = admin_in(&rack.lbs[0], "POST", "/swap").unwrap();
    assert_eq!(code, 200, "{body}");
    wait_until(&format!("lb2 primary after swap\n{}", logs()), || {
        roles("secondary", "primary")
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert!(roles("secondary", "primary"), "{}", logs());

    // lb2 stops: lb1 is primary again.
    lb2.signal(rustix::process::Signal::TERM);
    lb2.wait_exit();
    wait_until(&format!("lb1 primary again\n{}", lb1.log_text()), || {
        healthz(&rack.lbs[0]).is_some_and(|(code, _)| code == 200)
    });
}

#[test]
fn swap_moves_the_vip_and_the_traffic_to_the_peer() {
    let Some(rack) = Rack::new("vip swap") else {
        return;
    };
    let _backends = rack.backends();
    let with_token = |c: String| {
        c.replace(
            "drain_timeout = \"1s\"",
            &format!("drain_timeout = \"1s\"\n{TOKEN_LINE}"),
        )
    };
    let lb1 = rack.start_config(0, &with_token(rack.config("lb1", 150, "")));
    let lb2 = rack.start_config(1, &with_token(rack.config("lb2", 100, "")));
    rack.wait_master(0, &[&lb1, &lb2]);
    let code = |i: usize| healthz(&rack.lbs[i]).map(|(c, _)| c);
    wait_until("healthz 200 on the master, 503 on the backup", || {
        code(0) == Some(200) && code(1) == Some(503)
    });

    // `tandem swap`, run on the master's host with its config (address and token from there).
    let out = netns::exec(&rack.lbs[0], tandem_bin())
        .args(["swap", "-c"])
        .arg(lb1.dir.join("tandem.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("handing 1 instance(s) over"), "{said}");
    rack.wait_master(1, &[&lb1, &lb2]);
    wait_until("healthz follows the swap", || {
        code(0) == Some(503) && code(1) == Some(200)
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        rack.served_by().as_deref(),
        Some("lb2"),
        "{}",
        lb1.log_text()
    );
    assert!(!has_addr(&rack.lbs[0], rack.vip));
}
