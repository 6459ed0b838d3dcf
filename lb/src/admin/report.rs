//! What the read endpoints say: `/healthz`'s verdict, `/status` as JSON (a
//! [`contract::Status`]), `/metrics` as OpenMetrics text. Each reads the shared state once, at
//! the time of the request.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use tokio::time::Instant;
use vrrp::State;

use super::healthz::{self, Verdict};
use super::{AdminContext, contract};
use crate::health::target_id;
use crate::stats::{DropReason, FlowEnd};

pub(super) fn healthz(context: &AdminContext) -> Verdict {
    if context.stopping.load(Relaxed) {
        return Verdict::Stopping;
    }
    let config = context.config.borrow().clone();
    let statuses = context.instance_statuses.borrow().clone();
    let states: Vec<_> = config
        .vrrp
        .iter()
        .map(|v| {
            // An instance the daemon has not started (yet) counts as not master.
            let state = statuses
                .get(&v.name)
                .map_or(State::Initialize, |r| r.borrow().state);
            (state, v.track.as_slice())
        })
        .collect();
    let app_statuses = context.apps.borrow().clone();
    let mirror_apps: Vec<apps::State> = config
        .apps
        .iter()
        .filter(|a| crate::applications::instance_of(a).is_some())
        .map(|a| {
            app_statuses
                .get(&a.name)
                .map_or(apps::State::Stopped, |s| s.borrow().state)
        })
        .collect();
    healthz::verdict(&states, &context.pools.borrow(), &mirror_apps)
}

/// Each configured application, as `/status` shows it.
fn apps(
    context: &AdminContext,
    config: &crate::config::Config,
    now: Instant,
) -> Vec<contract::App> {
    let statuses = context.apps.borrow().clone();
    config
        .apps
        .iter()
        .map(|a| {
            let status = statuses.get(&a.name).map(|s| s.borrow().clone());
            let instance = crate::applications::instance_of(a).map(str::to_owned);
            contract::App {
                disabled: status.as_ref().is_some_and(|s| s.disabled),
                last_error: status.as_ref().and_then(|s| s.last_error.clone()),
                name: a.name.clone(),
                pid: status.as_ref().and_then(|s| s.pid),
                restarts: status.as_ref().map_or(0, |s| s.restarts),
                restarts_total: status.as_ref().map_or(0, |s| s.restarts_total),
                run_on: if instance.is_some() { "primary" } else { "all" }.to_owned(),
                instance,
                seconds_in_state: status
                    .as_ref()
                    .map_or(0.0, |s| now.duration_since(s.since).as_secs_f64()),
                state: status
                    .as_ref()
                    .map_or(apps::State::Stopped, |s| s.state)
                    .as_str()
                    .to_owned(),
            }
        })
        .collect()
}

pub(super) fn status_json(context: &AdminContext) -> String {
    let mut text =
        serde_json::to_string_pretty(&status(context)).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// The `/status` document, read from the shared state.
pub(super) fn status(context: &AdminContext) -> contract::Status {
    let config = context.config.borrow().clone();
    let statuses = context.instance_statuses.borrow().clone();
    let now = Instant::now();
    let vrrp = config
        .vrrp
        .iter()
        .map(|v| {
            let Some(status) = statuses.get(&v.name).map(|r| r.borrow().clone()) else {
                return contract::VrrpInstance::NotRunning(contract::IdleInstance::new(
                    v.name.clone(),
                ));
            };
            contract::VrrpInstance::Running(Box::new(contract::RunningInstance {
                adverts_dropped: status
                    .dropped
                    .iter()
                    .map(|(reason, n)| ((*reason).to_owned(), *n))
                    .collect(),
                adverts_received: status.adverts_received,
                adverts_sent: status.adverts_sent,
                effective_priority: status.effective_priority,
                host_fault: status.host_fault.clone(),
                interface: v.interface.clone(),
                master: status.master,
                mode: if v.mode == crate::config::VrrpMode::Cloud {
                    "cloud"
                } else {
                    "vip"
                }
                .to_owned(),
                name: v.name.clone(),
                previous_state: status.previous.as_str().to_owned(),
                priority: status.priority,
                running: true,
                seconds_in_state: now.duration_since(status.since).as_secs_f64(),
                source: status.source,
                state: status.state.as_str().to_owned(),
                transitions: status.transitions,
                vips: v
                    .vips
                    .iter()
                    .map(|x| format!("{}/{}", x.addr, x.prefix))
                    .collect(),
                vrid: v.vrid,
                why: status.why.map(|w| w.describe().to_owned()),
                worst_margin_ms: status.timing.worst_margin(now).map(millis),
                worst_send_lateness_ms: status.timing.worst_send_lateness(now).map(millis),
            }))
        })
        .collect();
    let services = config
        .services
        .iter()
        .map(|s| {
            let stats = context.registry.service(&s.name);
            let udp = s.protocol == crate::config::Protocol::Udp;
            contract::Service {
                accepted: stats.accepted.load(Relaxed),
                active: stats.active.load(Relaxed),
                balance: s.balance.as_str().to_owned(),
                bytes_in: stats.bytes_in.load(Relaxed),
                bytes_out: stats.bytes_out.load(Relaxed),
                datagrams_in: stats.datagrams_in.load(Relaxed),
                datagrams_out: stats.datagrams_out.load(Relaxed),
                drops: if udp {
                    DropReason::ALL
                        .iter()
                        .map(|r| (r.as_str().to_owned(), stats.drops.get(r.index())))
                        .collect()
                } else {
                    Default::default()
                },
                first_byte_timeouts: stats.first_byte_timeouts.load(Relaxed),
                flow_ends: if udp {
                    FlowEnd::ALL
                        .iter()
                        .map(|r| (r.as_str().to_owned(), stats.flow_ends.get(r.index())))
                        .collect()
                } else {
                    Default::default()
                },
                protocol: s.protocol.as_str().to_owned(),
                idle_timeouts: stats.idle_timeouts.load(Relaxed),
                listen: s.listen,
                name: s.name.clone(),
                pool: s.pool.clone(),
                refused: stats.refused.load(Relaxed),
                rejected_per_source: stats.rejected_per_source.load(Relaxed),
                retries: stats.retries.load(Relaxed),
            }
        })
        .collect();
    let pools_health = context.pools.borrow().clone();
    let pools = config
        .pools
        .iter()
        .map(|p| {
            let backends = p
                .backends
                .iter()
                .map(|b| {
                    let state = context.registry.backend(&p.name, b.addr);
                    let health = b.health.as_ref().and(
                        context
                            .monitor
                            .status(&target_id(&p.name, b.addr))
                            .map(|h| contract::Health {
                                checks: h.checks,
                                last_error: h.last_error,
                                seconds_since_change: h
                                    .last_change
                                    .map(|t| now.duration_since(t).as_secs_f64()),
                            }),
                    );
                    contract::Backend {
                        active: state.active.load(Relaxed),
                        addr: b.addr,
                        bytes_in: state.bytes_in.load(Relaxed),
                        bytes_out: state.bytes_out.load(Relaxed),
                        connect_failures: state.connect_failures.load(Relaxed),
                        datagrams_in: state.datagrams_in.load(Relaxed),
                        datagrams_out: state.datagrams_out.load(Relaxed),
                        drained: state.drained.load(Relaxed),
                        ejected: state.ejected(),
                        health,
                        role: b.role.as_str().to_owned(),
                        total: state.total.load(Relaxed),
                        up: state.up.load(Relaxed),
                        weight: b.weight,
                    }
                })
                .collect();
            let h = pools_health.get(&p.name).copied().unwrap_or_default();
            contract::Pool {
                backends,
                name: p.name.clone(),
                total: h.total,
                usable: h.usable,
            }
        })
        .collect();
    let announcements = context.anycast.borrow().clone();
    let anycast = config
        .anycast
        .iter()
        .map(|a| {
            let status = announcements.get(&a.name).map(|s| s.borrow().clone());
            contract::Announcement {
                announced: status.as_ref().is_some_and(|s| s.announced),
                error: status.as_ref().and_then(|s| s.error.clone()),
                name: a.name.clone(),
                seconds_in_state: status
                    .as_ref()
                    .map_or(0.0, |s| now.duration_since(s.since).as_secs_f64()),
                vips: a.vips.clone(),
                why: status
                    .as_ref()
                    .map_or_else(|| "not started".to_owned(), |s| s.why.clone()),
                withdrawals: status.as_ref().map_or(0, |s| s.withdrawals),
            }
        })
        .collect();
    contract::Status {
        anycast,
        apps: apps(context, &config, now),
        data_threads: context
            .data_threads
            .iter()
            .enumerate()
            .map(|(i, t)| contract::DataThread {
                io: t.kind.as_str().to_owned(),
                thread: i,
                why: t.why.clone(),
            })
            .collect(),
        health_transitions: context.monitor.transitions_total(),
        healthz: healthz(context).body().to_owned(),
        io: crate::data_threads::IoSummary::of(&context.data_threads)
            .as_str()
            .to_owned(),
        node: config.node.name.clone(),
        pools,
        reloads: contract::Reloads {
            failed: context.reloads.failed.load(Relaxed),
            ok: context.reloads.ok.load(Relaxed),
        },
        services,
        threads: context.data_threads.len(),
        vrrp,
    }
}

fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

type Labels = Vec<(String, String)>;

/// Histograms kept elsewhere (an instance's fixed buckets, [`vrrp::timing::Histogram`]), one
/// per label set, encoded as one OpenMetrics histogram family: prometheus-client's own
/// `Histogram` can only be observed into, not read from counts already kept.
#[derive(Debug, Default)]
struct Histograms(Vec<(Labels, vrrp::timing::Histogram)>);

impl TypedMetric for Histograms {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, histogram) in &self.0 {
            let buckets: Vec<(f64, u64)> = histogram
                .buckets()
                .map(|(bound, n)| (bound.map_or(f64::INFINITY, |b| b.as_secs_f64()), n))
                .collect();
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    histogram.sum().as_secs_f64(),
                    histogram.count(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A counter family registered under `name` (prometheus-client appends `_total`).
fn counters(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauges(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn metrics(context: &AdminContext) -> String {
    let config = context.config.borrow().clone();
    let statuses = context.instance_statuses.borrow().clone();
    let mut r = Registry::with_prefix("tandem");

    let connections = counters(&mut r, "service_connections", "Client connections accepted");
    let active = gauges(
        &mut r,
        "service_active_connections",
        "Client connections open now",
    );
    let bytes = counters(&mut r, "service_bytes", "Bytes relayed (in: from clients)");
    let refused = counters(
        &mut r,
        "service_refused",
        "Clients refused: no usable backend",
    );
    let retries = counters(
        &mut r,
        "service_retries",
        "Connects retried on another backend",
    );
    let datagrams = counters(
        &mut r,
        "service_datagrams",
        "UDP datagrams relayed (in: from clients)",
    );
    let flows = counters(&mut r, "service_flows", "UDP flows started");
    let active_flows = gauges(&mut r, "service_active_flows", "UDP flows open now");
    let drops = counters(
        &mut r,
        "service_datagrams_dropped",
        "UDP datagrams dropped, by reason",
    );
    let flow_ends = counters(&mut r, "service_flow_ends", "UDP flows ended, by why");
    for s in config
        .services
        .iter()
        .filter(|s| s.protocol == crate::config::Protocol::Udp)
    {
        let st = context.registry.service(&s.name);
        let l = labels(&[("service", &s.name)]);
        flows.get_or_create(&l).inc_by(st.accepted.load(Relaxed));
        active_flows
            .get_or_create(&l)
            .set(gauge_value(st.active.load(Relaxed)));
        for (direction, v) in [("in", &st.datagrams_in), ("out", &st.datagrams_out)] {
            let l = labels(&[("service", &s.name), ("direction", direction)]);
            datagrams.get_or_create(&l).inc_by(v.load(Relaxed));
        }
        for reason in DropReason::ALL {
            let l = labels(&[("service", &s.name), ("reason", reason.as_str())]);
            drops.get_or_create(&l).inc_by(st.drops.get(reason.index()));
        }
        for why in FlowEnd::ALL {
            let l = labels(&[("service", &s.name), ("reason", why.as_str())]);
            flow_ends
                .get_or_create(&l)
                .inc_by(st.flow_ends.get(why.index()));
        }
    }
    for s in config
        .services
        .iter()
        .filter(|s| s.protocol == crate::config::Protocol::Tcp)
    {
        let st = context.registry.service(&s.name);
        let l = labels(&[("service", &s.name)]);
        connections
            .get_or_create(&l)
            .inc_by(st.accepted.load(Relaxed));
        active
            .get_or_create(&l)
            .set(gauge_value(st.active.load(Relaxed)));
        refused.get_or_create(&l).inc_by(st.refused.load(Relaxed));
        retries.get_or_create(&l).inc_by(st.retries.load(Relaxed));
        for (direction, v) in [("in", &st.bytes_in), ("out", &st.bytes_out)] {
            let l = labels(&[("service", &s.name), ("direction", direction)]);
            bytes.get_or_create(&l).inc_by(v.load(Relaxed));
        }
    }

    let b_conn = counters(
        &mut r,
        "backend_connections",
        "Connections established to the backend",
    );
    let b_active = gauges(
        &mut r,
        "backend_active_connections",
        "Connections open to the backend",
    );
    let b_fail = counters(
        &mut r,
        "backend_connect_failures",
        "Connects to the backend that failed",
    );
    let b_up = gauges(
        &mut r,
        "backend_up",
        "1 when health checks find the backend up",
    );
    let b_drained = gauges(
        &mut r,
        "backend_drained",
        "1 when an operator drained the backend",
    );
    let b_ejections = counters(
        &mut r,
        "backend_ejections",
        "Times the backend (without health checks) was ejected after failed connects",
    );
    let b_bytes = counters(
        &mut r,
        "backend_bytes",
        "Bytes relayed (in: to the backend)",
    );
    let b_datagrams = counters(
        &mut r,
        "backend_datagrams",
        "UDP datagrams relayed (in: to the backend)",
    );
    let b_checks = counters(
        &mut r,
        "backend_checks",
        "Health probes run against the backend",
    );
    let b_latency = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    r.register_with_unit(
        "backend_check_duration",
        "How long the last health probe took",
        Unit::Seconds,
        b_latency.clone(),
    );
    for p in &config.pools {
        for b in &p.backends {
            let st = context.registry.backend(&p.name, b.addr);
            let addr = b.addr.to_string();
            let l = labels(&[("pool", &p.name), ("backend", &addr)]);
            b_conn.get_or_create(&l).inc_by(st.total.load(Relaxed));
            b_active
                .get_or_create(&l)
                .set(gauge_value(st.active.load(Relaxed)));
            b_fail
                .get_or_create(&l)
                .inc_by(st.connect_failures.load(Relaxed));
            b_up.get_or_create(&l).set(i64::from(st.up.load(Relaxed)));
            b_drained
                .get_or_create(&l)
                .set(i64::from(st.drained.load(Relaxed)));
            b_ejections
                .get_or_create(&l)
                .inc_by(st.ejections.load(Relaxed));
            if let Some(h) = context.monitor.status(&target_id(&p.name, b.addr)) {
                b_checks.get_or_create(&l).inc_by(h.checks);
                if let Some(took) = h.last_duration {
                    b_latency.get_or_create(&l).set(took.as_secs_f64());
                }
            }
            for (direction, v) in [("in", &st.bytes_in), ("out", &st.bytes_out)] {
                let l = labels(&[
                    ("pool", &p.name),
                    ("backend", &addr),
                    ("direction", direction),
                ]);
                b_bytes.get_or_create(&l).inc_by(v.load(Relaxed));
            }
            for (direction, v) in [("in", &st.datagrams_in), ("out", &st.datagrams_out)] {
                let l = labels(&[
                    ("pool", &p.name),
                    ("backend", &addr),
                    ("direction", direction),
                ]);
                b_datagrams.get_or_create(&l).inc_by(v.load(Relaxed));
            }
        }
    }
    let thread_io = gauges(
        &mut r,
        "data_thread_io",
        "1 for how each data thread moves bytes (chosen at start)",
    );
    let wake_probe = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    r.register_with_unit(
        "data_thread_wake_probe",
        "Median round trip of the start-up probe of each ring a data thread tried",
        Unit::Seconds,
        wake_probe.clone(),
    );
    for (i, t) in context.data_threads.iter().enumerate() {
        let thread = i.to_string();
        let l = labels(&[("thread", &thread), ("io", t.kind.as_str())]);
        thread_io.get_or_create(&l).set(1);
        for (ring, median) in &t.probes {
            let l = labels(&[("thread", &thread), ("ring", ring.as_str())]);
            wake_probe.get_or_create(&l).set(median.as_secs_f64());
        }
    }

    let transitions = counters(&mut r, "health_transitions", "Backend up/down transitions");
    transitions
        .get_or_create(&Labels::new())
        .inc_by(context.monitor.transitions_total());
    let host_faults = counters(
        &mut r,
        "health_host_faults",
        "Health probes that failed for want of this host's resources (descriptors, memory, ports), not counted against the backend",
    );
    host_faults
        .get_or_create(&Labels::new())
        .inc_by(context.monitor.host_faults_total());

    let v_state = gauges(
        &mut r,
        "vrrp_state",
        "1 for the state each VRRP instance is in",
    );
    let v_prio = gauges(&mut r, "vrrp_effective_priority", "Priority after tracking");
    let v_trans = counters(&mut r, "vrrp_transitions", "VRRP state changes");
    let v_sent = counters(&mut r, "vrrp_adverts_sent", "VRRP advertisements sent");
    let v_recv = counters(
        &mut r,
        "vrrp_adverts_received",
        "VRRP advertisements accepted",
    );
    let v_drop = counters(
        &mut r,
        "vrrp_adverts_dropped",
        "VRRP packets dropped, by reason",
    );
    let v_held = counters(
        &mut r,
        "vrrp_held_up_graces",
        "As backup: Master_Down_Timers served so late (this node's threads were held up) that it listened as long again before taking over",
    );
    let mut lateness = Histograms::default();
    let mut margin = Histograms::default();
    for (name, status) in &statuses {
        let s = status.borrow().clone();
        lateness
            .0
            .push((labels(&[("instance", name)]), s.timing.send_lateness));
        margin
            .0
            .push((labels(&[("instance", name)]), s.timing.master_down_margin));
        for state in [
            State::Initialize,
            State::Backup,
            State::Master,
            State::Fault,
        ] {
            let l = labels(&[("instance", name), ("state", state.as_str())]);
            v_state.get_or_create(&l).set(i64::from(s.state == state));
        }
        let l = labels(&[("instance", name)]);
        v_prio
            .get_or_create(&l)
            .set(i64::from(s.effective_priority));
        v_trans.get_or_create(&l).inc_by(s.transitions);
        v_sent.get_or_create(&l).inc_by(s.adverts_sent);
        v_recv.get_or_create(&l).inc_by(s.adverts_received);
        v_held.get_or_create(&l).inc_by(s.timing.held_up_graces);
        for (reason, n) in &s.dropped {
            let l = labels(&[("instance", name), ("reason", reason)]);
            v_drop.get_or_create(&l).inc_by(*n);
        }
    }
    r.register_with_unit(
        "vrrp_advert_send_lateness",
        "As master: how long after it fell due each periodic advert was sent",
        Unit::Seconds,
        lateness,
    );
    r.register_with_unit(
        "vrrp_master_down_margin",
        "As backup: how much of Master_Down_Interval was left when the master's next advert \
         arrived (kernel receive time); 0 is a takeover",
        Unit::Seconds,
        margin,
    );
    let a_state = gauges(
        &mut r,
        "app_state",
        "1 for the state each application is in on this node",
    );
    let a_restarts = counters(&mut r, "app_restarts", "Application restarts since start");
    for (name, status) in context.apps.borrow().iter() {
        let s = status.borrow().clone();
        for state in [
            apps::State::Stopped,
            apps::State::Starting,
            apps::State::Running,
            apps::State::Restarting,
            apps::State::Failed,
        ] {
            let l = labels(&[("app", name), ("state", state.as_str())]);
            a_state.get_or_create(&l).set(i64::from(s.state == state));
        }
        a_restarts
            .get_or_create(&labels(&[("app", name)]))
            .inc_by(s.restarts_total);
    }
    let announced = gauges(
        &mut r,
        "anycast_announced",
        "1 while the announcement's addresses are announced (the router sends their traffic here)",
    );
    let withdrawals = counters(&mut r, "anycast_withdrawals", "Withdrawals since start");
    for (name, status) in context.anycast.borrow().iter() {
        let s = status.borrow().clone();
        let l = labels(&[("anycast", name)]);
        announced.get_or_create(&l).set(i64::from(s.announced));
        withdrawals.get_or_create(&l).inc_by(s.withdrawals);
    }
    shedding(&mut r, context, &config);
    let reloads = counters(&mut r, "reloads", "Configuration reloads, by result");
    for (result, v) in [
        ("ok", &context.reloads.ok),
        ("failed", &context.reloads.failed),
    ] {
        reloads
            .get_or_create(&labels(&[("result", result)]))
            .inc_by(v.load(Relaxed));
    }

    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &r).is_err() {
        return "# EOF\n".to_owned();
    }
    text
}

/// What the node closes or turns away on purpose: data-plane clients by a timeout or a limit,
/// admin connections by the admin listeners' deadlines and caps.
fn shedding(r: &mut Registry, context: &AdminContext, config: &crate::config::Config) {
    let timeouts = counters(
        r,
        "service_timeouts",
        "Client connections closed by a timeout: idle (nothing moved for idle_timeout) or first_byte (no byte either way within first_byte_timeout)",
    );
    let rejected = counters(
        r,
        "service_rejected",
        "Clients reset at accept by a limit: max_conns_per_source",
    );
    for s in &config.services {
        let st = context.registry.service(&s.name);
        for (reason, v) in [
            ("idle", &st.idle_timeouts),
            ("first_byte", &st.first_byte_timeouts),
        ] {
            let l = labels(&[("service", &s.name), ("reason", reason)]);
            timeouts.get_or_create(&l).inc_by(v.load(Relaxed));
        }
        let l = labels(&[("service", &s.name), ("reason", "max_conns_per_source")]);
        rejected
            .get_or_create(&l)
            .inc_by(st.rejected_per_source.load(Relaxed));
    }
    let accepted = counters(
        r,
        "admin_connections",
        "Connections accepted by the admin listeners",
    );
    let shed = counters(
        r,
        "admin_connections_shed",
        "Admin connections closed by the listener: evicted (the oldest waiting one, at a cap), refused (at a cap, every connection busy), head_timeout (no whole request in time)",
    );
    let rejected = counters(
        r,
        "admin_requests_rejected",
        "Admin requests answered with a refusal: bad_token (401), no_token (403, mutations off), not_found (404), method (405), malformed (400), too_large (413, 431), body_timeout (408), busy (503, too many /status and /metrics at once)",
    );
    let mut endpoints = vec![super::Endpoint::Admin];
    if config.node.healthz_listen.is_some() {
        endpoints.push(super::Endpoint::Healthz);
    }
    for endpoint in endpoints {
        let c = context.listeners.counts(endpoint);
        let listener = endpoint.as_str();
        accepted
            .get_or_create(&labels(&[("listener", listener)]))
            .inc_by(c.accepted.load(Relaxed));
        for (reason, v) in [
            ("evicted", &c.evicted),
            ("refused", &c.refused),
            ("head_timeout", &c.head_timeouts),
        ] {
            let l = labels(&[("listener", listener), ("reason", reason)]);
            shed.get_or_create(&l).inc_by(v.load(Relaxed));
        }
        for why in super::Rejection::ALL {
            let l = labels(&[("listener", listener), ("reason", why.as_str())]);
            rejected.get_or_create(&l).inc_by(c.rejected.count(why));
        }
    }
    let streams = &context.event_streams;
    let open = Gauge::<i64>::default();
    open.set(i64::try_from(streams.open.load(Relaxed)).unwrap_or(i64::MAX));
    r.register(
        "admin_event_streams",
        "Event streams (/events) open now",
        open,
    );
    let closed = counters(
        r,
        "admin_event_streams_closed",
        "Event streams closed or turned away by the node: dropped (the client read too slowly), refused (too many open)",
    );
    for (reason, v) in [("dropped", &streams.dropped), ("refused", &streams.refused)] {
        closed
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(v.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Kept counts come out as an OpenMetrics histogram: cumulative buckets ending in +Inf, the
    /// sum in seconds and the count, under the instance's label.
    #[test]
    fn kept_histograms_are_encoded_as_openmetrics_histograms() {
        let mut backup = vrrp::timing::Histogram::default();
        backup.record(Duration::from_millis(3));
        backup.record(Duration::from_millis(25));
        backup.record(Duration::from_millis(26));
        let mut r = Registry::with_prefix("tandem");
        r.register_with_unit(
            "vrrp_master_down_margin",
            "margin",
            Unit::Seconds,
            Histograms(vec![
                (labels(&[("instance", "front")]), backup),
                (labels(&[("instance", "idle")]), Default::default()),
            ]),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        let has = |line: &str| text.lines().any(|l| l == line);
        let name = "tandem_vrrp_master_down_margin_seconds";
        assert!(has(&format!("# TYPE {name} histogram")), "{text}");
        assert!(
            has(&format!("{name}_count{{instance=\"front\"}} 3")),
            "{text}"
        );
        assert!(
            has(&format!("{name}_sum{{instance=\"front\"}} 0.054")),
            "{text}"
        );
        for (le, n) in [
            ("0.002", 0),
            ("0.005", 1),
            ("0.02", 1),
            ("0.05", 3),
            ("+Inf", 3),
        ] {
            let line = format!("{name}_bucket{{le=\"{le}\",instance=\"front\"}} {n}");
            assert!(has(&line), "{line} in\n{text}");
        }
        assert!(
            has(&format!("{name}_count{{instance=\"idle\"}} 0")),
            "{text}"
        );
        let buckets = text
            .lines()
            .filter(|l| l.contains("_bucket") && l.contains("\"front\""))
            .count();
        assert_eq!(buckets, vrrp::timing::BUCKETS.len() + 1);
    }
}
