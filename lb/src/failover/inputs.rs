//! What Tandem feeds each VRRP instance from outside the election: a FAULT while its gateway
//! does not answer or an application bound to it has failed here, and a priority delta from
//! the pools it tracks and the failed applications that carry a `weight`. Each input is a
//! watch channel kept current by tasks, recomputed from all its sources on any change.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use healthcheck::check::CheckSpec;
use healthcheck::monitor::{Monitor, Target, TargetId};
use healthcheck::status::Thresholds;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use vrrp::instances::{Inputs, InstanceInputs};

use crate::config::{TrackPool, VrrpConfig};
use crate::health::PoolsHealth;
use crate::tasks::Tasks;

/// An application bound to an instance (`run_on = "primary"`), as the election sees it.
#[derive(Debug, Clone)]
pub struct AppFailure {
    pub app: String,
    pub instance: String,
    /// `None`: its failure puts the instance in FAULT; else lowers its priority by this.
    pub weight: Option<u8>,
    /// `true` while the application is failed here.
    pub failed: watch::Receiver<bool>,
}

/// What Tandem feeds each instance of `configs`, with the tasks that keep it current.
pub(super) fn inputs(
    configs: &[VrrpConfig],
    gateways: &Monitor,
    pools: &watch::Receiver<PoolsHealth>,
    apps: &[AppFailure],
) -> (Tasks, InstanceInputs) {
    let (gateway_task, gateway_down) = watch_gateways(configs, gateways);
    let mut tasks = Tasks::new();
    tasks.extend(gateway_task);
    let mut inputs = InstanceInputs::new();
    for config in configs {
        let bound: Vec<&AppFailure> = apps
            .iter()
            .filter(|a| same_group(config, &a.instance, configs))
            .collect();

        let mut fault_sources: Vec<watch::Receiver<bool>> = gateway_down
            .get(&config.name)
            .cloned()
            .into_iter()
            .collect();
        fault_sources.extend(
            bound
                .iter()
                .filter(|a| a.weight.is_none())
                .map(|a| a.failed.clone()),
        );
        let fault = (!fault_sources.is_empty()).then(|| {
            let sources = fault_sources.clone();
            let mut any = Combined::new(move || sources.iter().any(|s| *s.borrow()));
            for source in fault_sources {
                any.on_change(source);
            }
            any.finish(&mut tasks)
        });

        let track = tracked_pools(config, configs);
        let pools_delta = (!track.is_empty()).then(|| {
            let (task, delta) = track_pools(track, pools.clone());
            tasks.push(task);
            delta
        });
        let weighted: Vec<(watch::Receiver<bool>, u8)> = bound
            .iter()
            .filter_map(|a| a.weight.map(|w| (a.failed.clone(), w)))
            .collect();
        let priority_delta = if weighted.is_empty() {
            pools_delta
        } else {
            let (pools, apps) = (pools_delta.clone(), weighted.clone());
            let mut sum = Combined::new(move || {
                let from_pools = pools.as_ref().map_or(0, |p| *p.borrow());
                let from_apps: i32 = apps
                    .iter()
                    .filter(|(failed, _)| *failed.borrow())
                    .map(|(_, weight)| -i32::from(*weight))
                    .sum();
                from_pools + from_apps
            });
            if let Some(p) = pools_delta {
                sum.on_change(p);
            }
            for (failed, _) in weighted {
                sum.on_change(failed);
            }
            Some(sum.finish(&mut tasks))
        };
        inputs.insert(
            config.name.clone(),
            Inputs {
                fault,
                priority_delta,
            },
        );
    }
    (tasks, inputs)
}

/// Whether `instance` is `config`'s, or a member of its sync group: the members of a group
/// move together, so what takes one down weighs on all.
fn same_group(config: &VrrpConfig, instance: &str, configs: &[VrrpConfig]) -> bool {
    config.name == instance
        || config.sync_group.as_ref().is_some_and(|group| {
            configs
                .iter()
                .any(|c| c.name == instance && c.sync_group.as_ref() == Some(group))
        })
}

/// A watch channel whose value is `compute` of its sources, recomputed on any change of one.
struct Combined<U> {
    tx: Arc<watch::Sender<U>>,
    rx: watch::Receiver<U>,
    compute: Arc<dyn Fn() -> U + Send + Sync>,
    tasks: Vec<JoinHandle<()>>,
}

impl<U: PartialEq + Send + Sync + 'static> Combined<U> {
    /// `compute` reads the sources (clones of the receivers it is given with `on_change`).
    fn new(compute: impl Fn() -> U + Send + Sync + 'static) -> Self {
        let (tx, rx) = watch::channel(compute());
        Self {
            tx: Arc::new(tx),
            rx,
            compute: Arc::new(compute),
            tasks: Vec::new(),
        }
    }

    /// Recomputes whenever `source` changes.
    fn on_change<T: Send + Sync + 'static>(&mut self, mut source: watch::Receiver<T>) {
        let (tx, compute) = (self.tx.clone(), self.compute.clone());
        self.tasks.push(tokio::spawn(async move {
            while source.changed().await.is_ok() {
                let value = compute();
                tx.send_if_modified(|old| {
                    let changed = *old != value;
                    if changed {
                        *old = value;
                    }
                    changed
                });
            }
        }));
    }

    fn finish(self, tasks: &mut Tasks) -> watch::Receiver<U> {
        for task in self.tasks {
            tasks.push(task);
        }
        self.rx
    }
}

/// The pools `config` follows: in a sync group every member follows the tracking of all, so
/// they move together.
fn tracked_pools(config: &VrrpConfig, configs: &[VrrpConfig]) -> Vec<TrackPool> {
    match &config.sync_group {
        None => config.track.clone(),
        Some(group) => configs
            .iter()
            .filter(|c| c.sync_group.as_ref() == Some(group))
            .flat_map(|c| c.track.iter().cloned())
            .fold(Vec::new(), |mut all, t| {
                // A pool tracked by several members counts once.
                if !all.contains(&t) {
                    all.push(t);
                }
                all
            }),
    }
}

/// Pings every `track_gateway` of `configs` and returns a fault channel per instance that has
/// one (true while its gateway is down), with the task that feeds them from the pings'
/// transitions.
fn watch_gateways(
    configs: &[VrrpConfig],
    gateways: &Monitor,
) -> (Tasks, BTreeMap<String, watch::Receiver<bool>>) {
    gateways.set_targets(configs.iter().filter_map(gateway_target).collect());
    // Subscribed before the current states are read, so no transition falls in between.
    let mut events = gateways.subscribe();
    let down = |id: &TargetId| gateways.status(id).is_some_and(|s| !s.up);
    let mut senders: BTreeMap<TargetId, watch::Sender<bool>> = BTreeMap::new();
    let mut faults = BTreeMap::new();
    for config in configs.iter().filter(|c| c.track_gateway.is_some()) {
        let id = gateway_id(config);
        let (tx, rx) = watch::channel(down(&id));
        senders.insert(id, tx);
        faults.insert(config.name.clone(), rx);
    }
    if senders.is_empty() {
        return (Tasks::new(), faults);
    }
    let monitor = gateways.clone();
    let task = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(transition) => {
                    if let Some(tx) = senders.get(&transition.id) {
                        tx.send_replace(!transition.up);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for (id, tx) in &senders {
                        tx.send_replace(monitor.status(id).is_some_and(|s| !s.up));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut tasks = Tasks::new();
    tasks.push(task);
    (tasks, faults)
}

fn gateway_id(config: &VrrpConfig) -> TargetId {
    let addr = config
        .track_gateway
        .as_ref()
        .map_or(IpAddr::from([0, 0, 0, 0]), |g| g.addr);
    TargetId::new(
        format!("vrrp/{}/gateway", config.name),
        SocketAddr::new(addr, 0),
    )
}

fn gateway_target(config: &VrrpConfig) -> Option<Target> {
    let g = config.track_gateway.as_ref()?;
    Some(Target {
        id: gateway_id(config),
        spec: CheckSpec::Icmp { addr: g.addr },
        interval: g.interval,
        timeout: g.timeout,
        thresholds: Thresholds {
            rise: g.rise,
            fall: g.fall,
        },
        // Down until proven reachable: a node that boots cut off must not claim the VIP in
        // the seconds before its first failed pings add up to `fall`.
        start_up: false,
    })
}

/// The priority delta that pool tracking imposes: minus the weight of every tracked pool with
/// fewer than `min_healthy` usable backends.
pub fn track_delta(track: &[TrackPool], health: &PoolsHealth) -> i32 {
    track
        .iter()
        .filter(|t| t.starved(health))
        .map(|t| -i32::from(t.weight))
        .sum()
}

/// The priority delta of `track` (see [`track_delta`]), kept current by the returned task as
/// pool health changes.
fn track_pools(
    track: Vec<TrackPool>,
    mut pools: watch::Receiver<PoolsHealth>,
) -> (JoinHandle<()>, watch::Receiver<i32>) {
    let (tx, rx) = watch::channel(track_delta(&track, &pools.borrow_and_update()));
    let task = tokio::spawn(async move {
        while pools.changed().await.is_ok() {
            let delta = track_delta(&track, &pools.borrow_and_update());
            tx.send_if_modified(|last| std::mem::replace(last, delta) != delta);
        }
    });
    (task, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::PoolHealth;

    fn health(pools: &[(&str, usize, usize)]) -> PoolsHealth {
        pools
            .iter()
            .map(|&(name, usable, total)| (name.to_owned(), PoolHealth { usable, total }))
            .collect()
    }

    fn track(pool: &str, min_healthy: u32, weight: u8) -> TrackPool {
        TrackPool {
            pool: pool.into(),
            min_healthy,
            weight,
        }
    }

    #[test]
    fn a_tracked_pool_below_min_healthy_lowers_priority_by_its_weight() {
        let t = [track("web", 1, 60), track("app", 2, 30)];
        assert_eq!(track_delta(&t, &health(&[("web", 2, 2), ("app", 2, 3)])), 0);
        assert_eq!(
            track_delta(&t, &health(&[("web", 0, 2), ("app", 2, 3)])),
            -60
        );
        assert_eq!(
            track_delta(&t, &health(&[("web", 0, 2), ("app", 1, 3)])),
            -90
        );
        assert_eq!(
            track_delta(&t, &health(&[])),
            -90,
            "an unknown pool counts as empty"
        );
    }
}
