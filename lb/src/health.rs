//! Wiring between the `healthcheck` monitor and the data plane.
//!
//! The monitor decides; this module carries its decisions to the `up` flag of each backend's
//! shared state, which every balancer reads on every pick, so a transition steers the very
//! next connection. It also keeps a per-pool count of usable backends and says so when a pool
//! has none left (the signal the VRRP priority tracking will use).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use healthcheck::check::{CheckSpec, HttpMethod as CheckMethod, ProcessTarget};
use healthcheck::monitor::{Monitor, Target, TargetId};
use healthcheck::status::Thresholds;
use tokio::sync::watch;

use crate::config::{Config, HealthCheck, HealthConfig, HttpMethod};
use crate::registry::Registry;

/// Backends usable right now (up and not drained) and configured, per pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolHealth {
    pub usable: usize,
    pub total: usize,
}

/// Pool name → its health, republished on every change.
pub type PoolsHealth = BTreeMap<String, PoolHealth>;

impl crate::config::TrackPool {
    /// Whether the tracked pool has fewer usable backends than `min_healthy` (an unknown pool
    /// has none): VRRP lowers the priority by `weight`, and `/healthz` reports a fault.
    pub fn starved(&self, pools: &PoolsHealth) -> bool {
        let usable = pools.get(&self.pool).map_or(0, |h| h.usable);
        usable < self.min_healthy as usize
    }
}

/// The monitor targets of `config`: one per backend that has a `health` table.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut targets = Vec::new();
    for pool in &config.pools {
        for backend in &pool.backends {
            if let Some(health) = &backend.health {
                targets.push(target(&pool.name, backend.addr, health));
            }
        }
    }
    targets
}

fn target(pool: &str, addr: std::net::SocketAddr, health: &HealthConfig) -> Target {
    Target {
        id: target_id(pool, addr),
        spec: check_spec(health),
        interval: health.interval,
        timeout: health.timeout,
        thresholds: Thresholds {
            rise: health.rise,
            fall: health.fall,
        },
        start_up: health.start_up,
    }
}

/// What one probe of `health` does, as the `healthcheck` crate runs it.
pub fn check_spec(health: &HealthConfig) -> CheckSpec {
    match &health.check {
        HealthCheck::Tcp { addr, send, expect } => CheckSpec::Tcp {
            addr: *addr,
            send: send.as_ref().map(|s| s.as_bytes().to_vec()),
            expect: expect.as_ref().map(|s| s.as_bytes().to_vec()),
        },
        HealthCheck::Http {
            addr,
            method,
            path,
            host,
            expect,
            body,
        } => CheckSpec::Http {
            addr: *addr,
            method: match method {
                HttpMethod::Get => CheckMethod::Get,
                HttpMethod::Head => CheckMethod::Head,
            },
            path: path.clone(),
            host: host.clone(),
            expect: expect
                .parse()
                .expect("validated config: `expect` parses as a status matcher"),
            body: body.clone(),
        },
        HealthCheck::Udp { addr, send, expect } => CheckSpec::Udp {
            addr: *addr,
            send: send.clone(),
            expect: expect.clone(),
        },
        HealthCheck::Command { argv } => CheckSpec::Command { argv: argv.clone() },
        HealthCheck::Process { name, pidfile } => CheckSpec::Process {
            target: match (name, pidfile) {
                (Some(name), _) => ProcessTarget::Name(name.clone()),
                (None, Some(file)) => ProcessTarget::PidFile(file.clone()),
                (None, None) => unreachable!("validated config: process or pidfile is set"),
            },
        },
    }
}

/// A backend's health target: its pool is its group.
pub fn target_id(pool: &str, addr: std::net::SocketAddr) -> TargetId {
    TargetId::new(pool, addr)
}

/// Makes every checked backend's `up` flag agree with the monitor (after start and reload:
/// a backend new to the registry starts as its `start` setting says, a kept one keeps its
/// health), and every unchecked backend up.
pub fn sync_flags(config: &Config, monitor: &Monitor, registry: &Registry) {
    for pool in &config.pools {
        for backend in &pool.backends {
            let state = registry.backend(&pool.name, backend.addr);
            let up = match &backend.health {
                None => true,
                Some(h) => monitor
                    .status(&target_id(&pool.name, backend.addr))
                    .map_or(h.start_up, |s| s.up),
            };
            state.up.store(up, Relaxed);
        }
    }
}

/// Counts usable backends per pool of `config`.
pub fn pools_health(config: &Config, registry: &Registry) -> PoolsHealth {
    config
        .pools
        .iter()
        .map(|pool| {
            let usable = pool
                .backends
                .iter()
                .filter(|b| {
                    let s = registry.backend(&pool.name, b.addr);
                    s.up.load(Relaxed) && !s.drained.load(Relaxed)
                })
                .count();
            let health = PoolHealth {
                usable,
                total: pool.backends.len(),
            };
            (pool.name.clone(), health)
        })
        .collect()
}

/// Applies the monitor's transitions to backend state until the monitor is dropped, and keeps
/// `pools` current. `config` is the running config, swapped by reloads.
pub fn spawn_applier(
    monitor: &Monitor,
    registry: Arc<Registry>,
    config: watch::Receiver<Arc<Config>>,
    pools: watch::Sender<PoolsHealth>,
) {
    let mut transitions = monitor.subscribe();
    tokio::spawn(async move {
        loop {
            match transitions.recv().await {
                Ok(t) => {
                    if let Some(state) = registry.find_backend(&t.id.group, t.id.addr) {
                        if t.up {
                            // A fresh start: old failures must not eject it at the next one.
                            state.consecutive_failures.store(0, Relaxed);
                        }
                        state.up.store(t.up, Relaxed);
                    }
                }
                // Missed some: the flags are re-read from the monitor's truth below.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            let current = config.borrow().clone();
            publish(&pools, pools_health(&current, &registry));
        }
    });
}

/// Publishes `now` and logs pools that lost their last usable backend or got one back.
pub fn publish(pools: &watch::Sender<PoolsHealth>, now: PoolsHealth) {
    pools.send_if_modified(|before| {
        if *before == now {
            return false;
        }
        for (name, health) in &now {
            let was = before.get(name).map_or(health.total, |h| h.usable);
            if health.usable == 0 && was > 0 {
                tracing::error!(pool = %name, total = health.total,
                    "pool has no usable backend: its clients are refused");
            } else if health.usable > 0 && was == 0 && before.contains_key(name) {
                tracing::info!(pool = %name, usable = health.usable, "pool has usable backends again");
            }
        }
        *before = now;
        true
    });
}
