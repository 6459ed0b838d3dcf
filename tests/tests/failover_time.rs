//! Benchmark, not a test (ignored by default): how long a client is without service when the
//! master goes away, Tandem pair against keepalived pair under the same VRRP settings.
//!
//! ```sh
//! sudo cargo test --release -p tandem-tests --test failover_time -- --ignored --nocapture
//! ```
//!
//! Per run: a rack in fresh namespaces, the master (priority 150) serving, a client in its own
//! namespace opening a connection to VIP:80 every 5 ms (50 ms to connect and 50 ms to read the
//! backend's name: a connection the old master accepted just before it let the VIP go can
//! never answer, and must not hold the probe longer than a failed connect does). The master is
//! stopped (SIGKILL of every process in its namespace, or SIGTERM); the figure is the time from
//! the stop to the first connection served by the backup. For keepalived, each node's VIP is
//! served by a plain backend listening on 0.0.0.0:80 (keepalived moves addresses, it does not
//! proxy). Prints one line per run and the medians.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::keepalived::{self, Keepalived};
use common::netns::{self, in_netns};
use common::rack::Rack;
use common::*;

/// Runs per case; `FAILOVER_RUNS` overrides.
const RUNS: usize = 5;

/// Whether a case is selected: `FAILOVER_ONLY` (e.g. `Tandem Term 100ms`) keeps the cases whose
/// name contains it.
fn selected(case: &str) -> bool {
    std::env::var("FAILOVER_ONLY").map_or(true, |only| case.contains(&only))
}

#[derive(Clone, Copy, Debug)]
enum Impl {
    Tandem,
    Keepalived,
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Kill9,
    Term,
}

/// Signals every process of namespace `ns` (by PID, as `ip netns pids` lists them).
fn signal_namespace(ns: &str, sig: rustix::process::Signal) {
    for pid in netns::ip(&["netns", "pids", ns]).split_whitespace() {
        if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

fn one_run(which: Impl, stop: Stop, interval: (&str, &str), phase: Duration) -> Option<Duration> {
    let rack = Rack::new("failover time")?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut kads: Vec<Keepalived> = Vec::new();
    let mut backends: Vec<Backend> = Vec::new();
    for i in 0..rack.lbs.len() {
        let priority = if i == 0 { 150 } else { 100 };
        match which {
            Impl::Tandem => {
                backends.push(rack.backend(i));
                let extra = format!("advert_interval = \"{}\"", interval.0);
                nodes.push(rack.start(i, priority, &extra));
            }
            Impl::Keepalived => {
                backends.push(rack.wildcard_backend(i));
                kads.push(rack.start_keepalived(i, 3, priority, interval.1));
            }
        }
        if i == 0 {
            // The intended master first, so it is master before the backup starts.
            wait_until("lb1 master", || rack.served_by().as_deref() == Some("lb1"));
        }
    }
    // Settle, then stop at a different point of the advert cycle in each run: a backup's
    // Master_Down_Timer runs from the last advert it heard, so the phase decides up to one
    // interval of the result.
    std::thread::sleep(Duration::from_millis(500) + phase);

    let target = SocketAddr::from((rack.vip, common::rack::PORT));
    let client = rack.client.clone();
    let stopped = Instant::now();
    let probe = std::thread::spawn(move || {
        in_netns(&client, move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let served = which_backend_within(target, Duration::from_millis(50));
                if served.is_ok_and(|name| name == "lb2") {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        })
    });
    let sig = match stop {
        Stop::Kill9 => rustix::process::Signal::KILL,
        Stop::Term => rustix::process::Signal::TERM,
    };
    signal_namespace(&rack.lbs[0], sig);
    let served = probe.join().unwrap();
    if std::env::var_os("FAILOVER_VERBOSE").is_some() {
        for node in &nodes {
            eprintln!("{}", node.log_text());
        }
    }
    drop(nodes);
    drop(kads);
    drop(backends);
    served.map(|at| at.duration_since(stopped))
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture (needs root and keepalived)"]
fn failover_time_tandem_and_keepalived() {
    if !keepalived::available("failover time") {
        return;
    }
    for interval in [("1s", "1"), ("100ms", "0.1"), ("20ms", "0.02")] {
        for stop in [Stop::Kill9, Stop::Term] {
            for which in [Impl::Tandem, Impl::Keepalived] {
                if !selected(&format!("{which:?} {stop:?} {}", interval.0)) {
                    continue;
                }
                let runs = std::env::var("FAILOVER_RUNS")
                    .ok()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(RUNS);
                let mut times = Vec::new();
                for run in 0..runs {
                    let cycle = humantime::parse_duration(interval.0).unwrap();
                    let phase = cycle.mul_f64(run as f64 / runs as f64);
                    match one_run(which, stop, interval, phase) {
                        Some(t) => {
                            eprintln!("{which:?} {stop:?} advert {}: run {run}: {t:?}", interval.0);
                            times.push(t);
                        }
                        None => eprintln!(
                            "{which:?} {stop:?} advert {}: run {run}: no failover",
                            interval.0
                        ),
                    }
                }
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                let all: Vec<String> = times.iter().map(|t| format!("{:.0}", ms(*t))).collect();
                println!(
                    "RESULT {which:?} {stop:?} advert_interval={}: median {:.0} ms over {} runs (ms: {})",
                    interval.0,
                    median(times.clone()).map_or(f64::NAN, ms),
                    times.len(),
                    all.join(" ")
                );
            }
        }
    }
}
