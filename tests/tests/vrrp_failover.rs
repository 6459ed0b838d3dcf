//! VRRP failover between two real Tandem nodes, each in its own network namespace on a bridge
//! the test builds: the master holds the VIP and serves it; the backup takes over when the
//! master dies, stops or loses its backends.
//!
//! Each node has a backend of its own on its namespace's loopback, named after the node, so a
//! client connection to VIP:80 says which node holds the VIP. All traffic stays on the test's
//! bridge (see `common::netns`).

mod common;

use std::time::Duration;

use common::netns::{self, has_addr, has_addr6, mac_of, neighbour_mac};
use common::rack::Rack;
use common::*;

#[test]
fn the_backup_takes_over_when_the_master_is_killed_and_clients_follow_the_gratuitous_arp() {
    let Some(rack) = Rack::new("vrrp kill -9") else {
        return;
    };
    let _backends = rack.backends();
    let [mut lb1, lb2] = rack.start_pair(["", ""]);
    assert_eq!(
        neighbour_mac(&rack.client, rack.vip).as_deref(),
        Some(mac_of(&rack.lbs[0]).as_str())
    );

    // kill -9: no priority-0 advert, no cleanup. The backup waits Master_Down_Interval.
    lb1.signal(rustix::process::Signal::KILL);
    lb1.wait_exit();
    wait_until(&format!("lb2 serves the VIP\n{}", lb2.log_text()), || {
        rack.served_by().as_deref() == Some("lb2")
    });
    assert!(has_addr(&rack.lbs[1], rack.vip));
    // The client learnt the new owner from lb2's gratuitous ARP (the dead lb1 still has the
    // address configured, and would answer ARP requests for it itself).
    assert_eq!(
        neighbour_mac(&rack.client, rack.vip).as_deref(),
        Some(mac_of(&rack.lbs[1]).as_str())
    );
    let log = lb2.log_text();
    assert!(log.contains("BACKUP -> MASTER"), "{log}");
    drop(lb2);
    drop(rack);
}

#[test]
fn sigterm_hands_over_and_a_returning_master_takes_back_only_with_preempt() {
    let Some(rack) = Rack::new("vrrp sigterm + preempt") else {
        return;
    };
    let _backends = rack.backends();

    // preempt (default): the higher-priority node takes the VIP back when it returns.
    let [mut lb1, lb2] = rack.start_pair(["", ""]);
    lb1.signal(rustix::process::Signal::TERM);
    lb1.wait_exit();
    assert!(
        !has_addr(&rack.lbs[0], rack.vip),
        "a stopped master removes its VIP"
    );
    rack.wait_master(1, &[&lb2]);
    let lb1 = rack.start(0, 150, "");
    rack.wait_master(0, &[&lb1, &lb2]);
    drop((lb1, lb2));

    // nopreempt: the returning node stays backup.
    let [mut lb1, lb2] = rack.start_pair(["preempt = false", "preempt = false"]);
    lb1.signal(rustix::process::Signal::TERM);
    lb1.wait_exit();
    rack.wait_master(1, &[&lb2]);
    let lb1 = rack.start(0, 150, "preempt = false");
    lb1.wait_log("INIT -> BACKUP", 1);
    // Several Master_Down_Intervals (~0.35 s each): lb1 would have taken over by now.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(rack.vip_only_on(1));
    assert_eq!(rack.served_by().as_deref(), Some("lb2"));
    drop((lb1, lb2));
}

#[test]
fn a_master_whose_backends_all_died_hands_the_vip_to_the_node_that_still_has_them() {
    let Some(rack) = Rack::new("vrrp pool tracking") else {
        return;
    };
    let [mut b1, _b2] = rack.backends();
    let track = r#"track = [{ pool = "web", min_healthy = 1, weight = 60 }]"#;
    let [lb1, lb2] = rack.start_pair([track, track]);

    // lb1's only web backend dies: 150 - 60 = 90 < 100, so lb2 preempts.
    b1.stop();
    rack.wait_master(1, &[&lb1, &lb2]);
    assert!(
        lb1.log_text().contains("MASTER -> BACKUP"),
        "{}",
        lb1.log_text()
    );

    // It recovers: lb1 is back at 150 and takes over again.
    let _b1 = rack.backend(0);
    rack.wait_master(0, &[&lb1, &lb2]);
    drop((lb1, lb2));
}

#[test]
fn notify_scripts_follow_the_role_and_a_lost_link_puts_the_node_in_fault() {
    let Some(rack) = Rack::new("vrrp notify + link fault") else {
        return;
    };
    let _backends = rack.backends();
    let dir = TempDir::create();
    let events = dir.path().join("events");
    // A program and its arguments, run without a shell: `sh` is only the program chosen here.
    let script = |state: &str| {
        format!(
            r#"["/bin/sh", "-c", "echo {state} >> {}"]"#,
            events.display()
        )
    };
    let notify = format!(
        "notify = {{ master = {}, backup = {}, fault = {}, stop = {} }}",
        script("master"),
        script("backup"),
        script("fault"),
        script("stop")
    );
    let [mut lb1, lb2] = rack.start_pair([&notify, ""]);
    let read = || std::fs::read_to_string(&events).unwrap_or_default();
    wait_until("the master script ran", || {
        read().lines().any(|l| l == "master")
    });

    // lb1's cable is pulled: FAULT (no VIP, no adverts), and lb2 takes over.
    rack.set_link(0, false);
    wait_until(&format!("lb1 in FAULT\n{}", lb1.log_text()), || {
        lb1.log_text().contains("MASTER -> FAULT")
    });
    assert!(
        !has_addr(&rack.lbs[0], rack.vip),
        "a node in FAULT holds no VIP"
    );
    wait_until("lb2 takes the VIP", || has_addr(&rack.lbs[1], rack.vip));

    // Cable back: BACKUP, then MASTER again (preempt).
    rack.set_link(0, true);
    rack.wait_master(0, &[&lb1, &lb2]);
    // SIGTERM: the instance resigns and the `stop` script runs before the process exits.
    lb1.signal(rustix::process::Signal::TERM);
    lb1.wait_exit();
    // One script per transition, in order.
    let lines: Vec<String> = read().lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        ["backup", "master", "fault", "backup", "master", "stop"]
    );
}

#[test]
fn a_reload_that_keeps_the_instance_keeps_the_role_and_the_vip() {
    let Some(rack) = Rack::new("vrrp reload keeps role") else {
        return;
    };
    let _backends = rack.backends();
    let [lb1, lb2] = rack.start_pair(["", ""]);

    // Tracking and notify change; the election settings do not.
    let changed = rack.config(
        "lb1",
        150,
        "track = [{ pool = \"web\", weight = 10 }]\nnotify = { master = [\"/bin/true\"] }",
    );
    lb1.reload(&changed);
    lb1.wait_log("configuration reloaded", 1);
    for _ in 0..20 {
        assert!(has_addr(&rack.lbs[0], rack.vip), "{}", lb1.log_text());
        assert!(!has_addr(&rack.lbs[1], rack.vip), "{}", lb2.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        lb1.log_text().matches("-> MASTER").count(),
        1,
        "{}",
        lb1.log_text()
    );
    assert!(!lb1.log_text().contains("MASTER ->"), "{}", lb1.log_text());
}

#[test]
fn unicast_peers_elect_and_fail_over_without_multicast() {
    let Some(rack) = Rack::new("vrrp unicast") else {
        return;
    };
    let _backends = rack.backends();
    let peer = |i: usize| format!("peers = [\"{}\"]", rack.lb_ip(1 - i));
    let [mut lb1, lb2] = rack.start_pair([&peer(0), &peer(1)]);
    lb1.signal(rustix::process::Signal::KILL);
    lb1.wait_exit();
    wait_until(&format!("lb2 serves the VIP\n{}", lb2.log_text()), || {
        rack.served_by().as_deref() == Some("lb2")
    });
}

#[test]
fn a_partitioned_node_that_cannot_reach_its_gateway_goes_to_fault_instead_of_claiming_the_vip() {
    let Some(mut rack) = Rack::new("vrrp gateway track") else {
        return;
    };
    let _gateway = rack.add_host("gw", 254);
    let _backends = rack.backends();
    let track = format!(
        r#"track_gateway = {{ addr = "{}", interval = "100ms", timeout = "80ms", rise = 1, fall = 2 }}"#,
        rack.addr(254)
    );
    let [lb1, lb2] = rack.start_pair([&track, &track]);

    // lb1 is cut off, its link still up: it hears no adverts, but cannot ping the gateway
    // either, so it gives the VIP up instead of holding it beside lb2.
    rack.isolate(0, true);
    wait_until(&format!("lb1 in FAULT\n{}", lb1.log_text()), || {
        lb1.log_text().contains("MASTER -> FAULT")
    });
    wait_until("the VIP on lb2 only", || rack.vip_only_on(1));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has_addr(&rack.lbs[0], rack.vip), "{}", lb1.log_text());

    // The partition heals: lb1 reaches the gateway again and takes its VIP back (preempt).
    rack.isolate(0, false);
    rack.wait_master(0, &[&lb1, &lb2]);
}

/// `rack.config(..)` plus a second instance "app" (vrid 52, VIP .101) in sync group "front".
fn synced_config(rack: &Rack, node: &str, priority: u8, extra_app: &str) -> String {
    let first = rack.config(
        node,
        priority,
        "sync_group = \"front\"\ntrack = [{ pool = \"web\", min_healthy = 1, weight = 60 }]",
    );
    format!(
        "{first}\n[[vrrp]]\nname = \"app\"\ninterface = \"eth0\"\nvrid = 52\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvips = [\"{}/24\"]\nsync_group = \"front\"\n{extra_app}\n",
        rack.addr(101)
    )
}

#[test]
fn a_sync_group_fails_over_together_on_a_fault_and_on_tracking() {
    let Some(rack) = Rack::new("vrrp sync group") else {
        return;
    };
    let app_vip = rack.addr(101);
    let [mut b1, _b2] = rack.backends();
    // lb1's "app" instance also tracks a second link, dum0 (a veth pair inside lb1's namespace:
    // taking its peer down takes dum0's carrier away, as an unplugged uplink would).
    let ip = common::netns::ip;
    ip(&[
        "-n",
        &rack.lbs[0],
        "link",
        "add",
        "dum0",
        "type",
        "veth",
        "peer",
        "name",
        "dum1",
    ]);
    ip(&["-n", &rack.lbs[0], "link", "set", "dum0", "up"]);
    ip(&["-n", &rack.lbs[0], "link", "set", "dum1", "up"]);
    let lb1 = rack.start_config(
        0,
        &synced_config(&rack, "lb1", 150, "track_interfaces = [\"dum0\"]"),
    );
    let lb2 = rack.start_config(1, &synced_config(&rack, "lb2", 100, ""));
    rack.wait_master(0, &[&lb1, &lb2]);
    wait_until("app VIP on lb1", || has_addr(&rack.lbs[0], app_vip));
    let both_on = |i: usize| {
        has_addr(&rack.lbs[i], rack.vip)
            && has_addr(&rack.lbs[i], app_vip)
            && !has_addr(&rack.lbs[1 - i], rack.vip)
            && !has_addr(&rack.lbs[1 - i], app_vip)
    };

    // dum0 loses its carrier: "app" is in FAULT, and "front" follows it although its own link is fine.
    ip(&["-n", &rack.lbs[0], "link", "set", "dum1", "down"]);
    wait_until(&format!("both VIPs on lb2\n{}", lb1.log_text()), || {
        both_on(1)
    });
    ip(&["-n", &rack.lbs[0], "link", "set", "dum1", "up"]);
    wait_until(
        &format!("both VIPs back on lb1\n{}", lb1.log_text()),
        || both_on(0),
    );

    // lb1's web backend dies: "front" tracks it, and "app" shares the group's tracking.
    b1.stop();
    wait_until(
        &format!("both VIPs on lb2 again\n{}", lb1.log_text()),
        || both_on(1),
    );
}

#[test]
fn vrrpv3_over_ipv6_moves_the_vip_and_clients_follow_the_neighbour_advertisement() {
    let Some(rack) = Rack::new("vrrp ipv6") else {
        return;
    };
    let vip = rack.addr6(0x100);
    let _backends = rack.backends();
    // The rack's IPv4 config, with the service and the instance moved to the IPv6 VIP.
    let config = |node: &str, priority: u8| {
        rack.config(node, priority, "")
            .replace(
                &format!("listen = \"{}:80\"", rack.vip),
                &format!("listen = \"[{vip}]:80\""),
            )
            .replace(
                &format!("vips = [\"{}/24\"]", rack.vip),
                &format!("vips = [\"{vip}/64\"]"),
            )
    };
    let mut lb1 = rack.start_config(0, &config("lb1", 150));
    let lb2 = rack.start_config(1, &config("lb2", 100));
    let served_by = || rack.served_by_at(std::net::SocketAddr::from((vip, 80)));
    let logs = || logs_of(&[&lb1, &lb2]);
    wait_until(&format!("lb1 serves the IPv6 VIP\n{}", logs()), || {
        served_by().as_deref() == Some("lb1")
    });
    assert!(
        has_addr6(&rack.lbs[0], vip) && !has_addr6(&rack.lbs[1], vip),
        "{}",
        logs()
    );

    lb1.signal(rustix::process::Signal::KILL);
    lb1.wait_exit();
    wait_until(
        &format!("lb2 serves the IPv6 VIP\n{}", lb2.log_text()),
        || served_by().as_deref() == Some("lb2"),
    );
    assert!(has_addr6(&rack.lbs[1], vip));
}

#[test]
fn a_reload_does_not_cut_a_running_notify_script_short() {
    let Some(rack) = Rack::new("vrrp reload keeps notify") else {
        return;
    };
    let _b1 = rack.backend(0);
    let dir = TempDir::create();
    let done = dir.path().join("done");
    let notify = format!(
        r#"notify = {{ master = ["/bin/sh", "-c", "sleep 1; echo done >> {}"], timeout = "5s" }}"#,
        done.display()
    );
    let lb1 = rack.start(0, 150, &notify);
    lb1.wait_log("BACKUP -> MASTER", 1);
    // While the master script sleeps, a reload changes tracking only: the instance and its
    // notify task stay, and the script finishes.
    let changed = rack.config(
        "lb1",
        150,
        &format!("{notify}\ntrack = [{{ pool = \"web\", weight = 10 }}]"),
    );
    lb1.reload(&changed);
    lb1.wait_log("configuration reloaded", 1);
    wait_until(
        &format!("the master script finished\n{}", lb1.log_text()),
        || std::fs::read_to_string(&done).is_ok_and(|t| t.trim() == "done"),
    );
}

/// Tandem as a keepalived replacement: no `[[service]]`, only the instance and its VIP.
#[test]
fn a_node_with_only_vrrp_elects_and_moves_its_vip() {
    let Some(rack) = Rack::new("vrrp only") else {
        return;
    };
    let mut lb1 = rack.start_config(0, &rack.vrrp_only_config("lb1", 150, ""));
    lb1.wait_log("BACKUP -> MASTER", 1);
    let lb2 = rack.start_config(1, &rack.vrrp_only_config("lb2", 100, ""));
    lb2.wait_log("INIT -> BACKUP", 1);
    // The election has a thread of its own, which no other work can hold up.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", lb2.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|comm| comm.trim_end().to_owned())
        .collect();
    assert!(threads.iter().any(|t| t == "tandem-vrrp"), "{threads:?}");
    wait_until(&format!("VIP on lb1 only\n{}", lb1.log_text()), || {
        rack.vip_only_on(0)
    });

    lb1.signal(rustix::process::Signal::KILL);
    lb1.wait_exit();
    wait_until(&format!("lb2 holds the VIP\n{}", lb2.log_text()), || {
        has_addr(&rack.lbs[1], rack.vip)
    });
    let log = lb2.log_text();
    assert!(log.contains("BACKUP -> MASTER"), "{log}");
    assert!(log.contains("0 services"), "{log}");
}

/// A backup whose process is held up (SIGSTOP) well past its Master_Down_Interval while the
/// master keeps advertising must not take over when it resumes: the adverts waiting in its
/// socket say the master is alive. (keepalived's users see such false takeovers on busy
/// machines; here both the overdue timer and the waiting adverts are ready at once.)
#[test]
fn a_backup_held_up_past_master_down_does_not_take_over_when_it_resumes() {
    let Some(rack) = Rack::new("vrrp stalled backup") else {
        return;
    };
    let _backends = rack.backends();
    let [lb1, lb2] = rack.start_pair(["", ""]);
    // Master_Down_Interval here is about 0.36 s (100 ms adverts); each stall is twice that.
    // Several stalls: which of two ready events a runtime serves first can be chance. The
    // first starts as lb2 enters Backup, most often before it heard the master: its first
    // timer, not one an advert started, runs out with the adverts waiting.
    lb2.wait_log("INIT -> BACKUP", 1);
    for _ in 0..6 {
        lb2.signal(rustix::process::Signal::STOP);
        std::thread::sleep(Duration::from_millis(800));
        lb2.signal(rustix::process::Signal::CONT);
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = lb2.log_text();
    assert!(!log.contains("-> MASTER"), "a false takeover\n{log}");
    assert!(rack.vip_only_on(0), "{}", logs_of(&[&lb1, &lb2]));
}

/// A backup held up (SIGSTOP) while its master's adverts kept arriving and then the master
/// died takes over once it resumes: the adverts waiting in its socket hold it one more
/// Master_Down_Interval from the read (restarting the timer from the read leaves a loaded
/// backup the slack of its read delay: see ARCHITECTURE.md), and no longer.
#[test]
fn a_backup_held_up_while_its_master_died_takes_over_within_a_master_down_interval_of_resuming() {
    let Some(rack) = Rack::new("vrrp stalled backup, dead master") else {
        return;
    };
    let _backends = rack.backends();
    // Master_Down_Interval: 3 * 500 ms + 156/256 * 500 ms, about 1.8 s.
    let slow = "advert_interval = \"500ms\"";
    let [mut lb1, lb2] = rack.start_pair([slow, slow]);
    // lb2 runs its election and has heard the master.
    lb2.wait_log("INIT -> BACKUP", 1);
    std::thread::sleep(Duration::from_millis(600));
    lb2.signal(rustix::process::Signal::STOP);
    // Three adverts wait in lb2's socket; then the master dies, and lb2 stays stopped for
    // more than a Master_Down_Interval after the last of them.
    std::thread::sleep(Duration::from_millis(1_600));
    lb1.signal(rustix::process::Signal::KILL);
    lb1.wait_exit();
    std::thread::sleep(Duration::from_millis(2_500));
    lb2.signal(rustix::process::Signal::CONT);
    let resumed = std::time::Instant::now();
    while !has_addr(&rack.lbs[1], rack.vip) {
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "no takeover\n{}",
            lb2.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = resumed.elapsed();
    // One Master_Down_Interval (1.8 s) and the address change, with room for a busy runner.
    assert!(
        took < Duration::from_millis(2_600),
        "the VIP came {took:?} after lb2 resumed\n{}",
        lb2.log_text()
    );
}

/// `realtime_priority` puts the election thread under SCHED_RR, as keepalived's
/// `vrrp_rt_priority` does its VRRP process, and `lock_memory` locks the process's memory, as
/// keepalived does (the tests run as root, who may do both).
#[test]
fn the_election_thread_runs_at_the_realtime_priority_asked_for_with_memory_locked() {
    let Some(rack) = Rack::new("vrrp realtime") else {
        return;
    };
    let config = rack.vrrp_only_config("lb1", 150, "").replacen(
        "drain_timeout = \"1s\"\n",
        "drain_timeout = \"1s\"\nrealtime_priority = 10\nlock_memory = true\n",
        1,
    );
    let lb1 = rack.start_config(0, &config);
    lb1.wait_log("real-time priority 10 (SCHED_RR)", 1);
    lb1.wait_log("memory locked", 1);
    // Every page is locked: VmLck (kB) is the whole resident size, and more than nothing.
    let status = std::fs::read_to_string(format!("/proc/{}/status", lb1.pid())).unwrap();
    let kb = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    eprintln!(
        "locked: VmLck {} kB, VmRSS {} kB",
        kb("VmLck:"),
        kb("VmRSS:")
    );
    assert!(
        kb("VmLck:") > 0 && kb("VmLck:") >= kb("VmRSS:") / 2,
        "{status}"
    );
    // Field 41 of a thread's stat is its policy: 2 is SCHED_RR.
    let policies: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{}/task", lb1.pid()))
        .unwrap()
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let policy = stat.rsplit(')').next()?.split_whitespace().nth(41 - 3)?;
            Some((comm.trim_end().to_owned(), policy.to_owned()))
        })
        .collect();
    for (thread, policy) in &policies {
        let expected = if thread == "tandem-vrrp" { "2" } else { "0" };
        assert_eq!(policy, expected, "{thread}: {policies:?}");
    }
    assert!(
        policies.iter().any(|(t, _)| t == "tandem-vrrp"),
        "{policies:?}"
    );
}

#[test]
fn udp_on_the_vip_fails_over_with_it() {
    use common::netns::in_netns;
    use common::udp::{UdpBackend, UdpClient};
    let Some(rack) = Rack::new("vrrp udp") else {
        return;
    };
    let _backends = rack.backends();
    // Each node's DNS-like backend, named after it, on its namespace's loopback.
    let _udp: Vec<UdpBackend> = (0..2)
        .map(|i| {
            let socket = in_netns(&rack.lbs[i], || {
                std::net::UdpSocket::bind("127.0.0.1:9053").expect("bind")
            });
            UdpBackend::from_socket(&rack.name(i), socket)
        })
        .collect();
    let udp_service = format!(
        "[[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"{}:53\"\npool = \"dns\"\n\
         responses = 1\n\n[[pool]]\nname = \"dns\"\nbackends = [{{ addr = \"127.0.0.1:9053\" }}]\n\n\
         [[vrrp]]",
        rack.vip
    );
    let config = |i: usize, priority: u8| {
        rack.config(&rack.name(i), priority, "")
            .replacen("[[vrrp]]", &udp_service, 1)
    };
    let lb1 = rack.start_config(0, &config(0, 150));
    lb1.wait_log("BACKUP -> MASTER", 1);
    // The backup binds the VIP's UDP port too (freebind), before it holds the address.
    let lb2 = rack.start_config(1, &config(1, 100));
    rack.wait_master(0, &[&lb1, &lb2]);
    let vip = std::net::SocketAddr::from((rack.vip, 53));
    let ask = || {
        in_netns(&rack.client, move || {
            UdpClient::from(std::net::Ipv4Addr::UNSPECIFIED, vip).which(b"query", 2)
        })
    };
    assert_eq!(ask().as_deref(), Some("lb1"));
    let mut lb1 = lb1;
    lb1.signal(rustix::process::Signal::KILL);
    lb1.wait_exit();
    wait_until(
        &format!("lb2 answers UDP on the VIP\n{}", lb2.log_text()),
        || ask().as_deref() == Some("lb2"),
    );
    drop(lb2);
    drop(rack);
}

/// A node that may not change addresses (no CAP_NET_ADMIN) or open raw sockets (no
/// CAP_NET_RAW) is in FAULT from the start and stays there, saying why once, instead of
/// claiming the VIP every Master_Down_Interval and failing (BACKUP -> MASTER -> FAULT every
/// 3.6 s at a 1 s advert interval, before). With a higher priority and preempt, each such claim
/// would also have made the real master step down.
#[test]
fn without_its_capabilities_a_node_stays_in_fault_says_why_once_and_leaves_the_master_alone() {
    let Some(rack) = Rack::new("vrrp without CAP_NET_ADMIN / CAP_NET_RAW") else {
        return;
    };
    let _backends = rack.backends();
    let lb2 = rack.start(1, 100, "");
    rack.wait_master(1, &[&lb2]);
    let lb2_transitions = netns::first_instance_status(&rack.lbs[1], "transitions");
    assert_eq!(lb2_transitions, 2, "INIT -> BACKUP -> MASTER");

    for (caps, needs) in [
        (&["net_admin"][..], "CAP_NET_ADMIN"),
        (&["net_admin", "net_raw"][..], "CAP_NET_RAW"),
    ] {
        let config = rack.config("lb1", 150, "");
        let Some(lb1) = Node::start_in_netns_without_caps(&rack.lbs[0], caps, &config) else {
            return;
        };
        wait_until(&format!("lb1 in FAULT\n{}", lb1.log_text()), || {
            netns::first_instance_status(&rack.lbs[0], "state") == "FAULT"
        });
        // 30 advert intervals, and retries after 1 s and 3 s.
        std::thread::sleep(Duration::from_secs(3) + Duration::from_millis(500));
        let log = lb1.log_text();
        assert_eq!(
            netns::first_instance_status(&rack.lbs[0], "state"),
            "FAULT",
            "{caps:?}\n{log}"
        );
        assert_eq!(
            netns::first_instance_status(&rack.lbs[0], "transitions"),
            1,
            "{caps:?}: INIT -> FAULT and nothing since\n{log}"
        );
        let cause = netns::first_instance_status(&rack.lbs[0], "host_fault");
        assert!(
            cause.as_str().is_some_and(|c| c.contains(needs)),
            "{caps:?}: /status says why: {cause}"
        );
        assert_eq!(
            log.matches("was refused").count(),
            1,
            "{caps:?}: one error, not one per retry\n{log}"
        );
        assert!(
            log.contains(&format!("lacks {needs}")) && log.contains("AmbientCapabilities"),
            "{caps:?}: the error names the capability and what to do\n{log}"
        );
        assert!(!log.contains("-> MASTER"), "{caps:?}: never claimed\n{log}");
        assert!(!log.contains("-> BACKUP"), "{caps:?}\n{log}");
        // The master was never challenged.
        assert_eq!(
            netns::first_instance_status(&rack.lbs[1], "transitions"),
            lb2_transitions
        );
        assert!(rack.vip_only_on(1));
        assert_eq!(rack.served_by().as_deref(), Some("lb2"));
        drop(lb1);
    }
}
