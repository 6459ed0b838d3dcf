//! The node's part in VRRP: the `[[vrrp]]` tables run as a `vrrp::instances::Instances` set
//! (reload by difference, notify scripts, sync groups, the order of a stop), plus what
//! Tandem adds around each instance: pool tracking that lowers its priority, and a gateway
//! ping whose failure puts it in FAULT.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use healthcheck::check::CheckSpec;
use healthcheck::monitor::{Monitor, Target, TargetId};
use healthcheck::status::Thresholds;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use vrrp::instance::{InstanceConfig, Status};
use vrrp::instances::{Inputs, InstanceError, InstanceInputs, InstanceSpec, Instances};
use vrrp::{MachineConfig, Version};

use crate::config::{TrackPool, VrrpConfig, VrrpMode};
use crate::health::PoolsHealth;

/// The running instances and what Tandem adds to them.
pub struct Failover {
    instances: Instances,
    pools: watch::Receiver<PoolsHealth>,
    /// Pings of each instance's `track_gateway`.
    gateways: Monitor,
    /// What feeds the instances' inputs: the gateway forwarder and the pool trackers.
    /// Replaced on every reload.
    feeders: Tasks,
}

/// Tasks that end when this is dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Failover {
    /// Starts every instance of `configs`; the first that cannot start stops the others.
    pub async fn start(
        configs: &[VrrpConfig],
        pools: watch::Receiver<PoolsHealth>,
    ) -> Result<Self, InstanceError> {
        let gateways = Monitor::new();
        let (feeders, inputs) = inputs(configs, &gateways, &pools);
        let instances = Instances::start(&specs(configs), inputs).await?;
        Ok(Self {
            instances,
            pools,
            gateways,
            feeders,
        })
    }

    /// Applies a reloaded config: see [`Instances::apply`]; tracking and gateways are
    /// refreshed for every instance. Returns the instances that failed to start.
    pub async fn apply(&mut self, configs: &[VrrpConfig]) -> Vec<InstanceError> {
        let (feeders, inputs) = inputs(configs, &self.gateways, &self.pools);
        // Dropping the old feeders closes the old channels; the instances follow the new ones.
        self.feeders = feeders;
        self.instances.apply(&specs(configs), inputs).await
    }

    /// Every instance resigns (priority-0 advert, VIPs removed) and its `stop` script runs.
    pub async fn shutdown(&mut self) {
        self.feeders = Tasks(Vec::new());
        self.instances.shutdown().await;
    }

    /// Each instance's status channel, by name.
    pub fn instance_statuses(&self) -> BTreeMap<String, watch::Receiver<Status>> {
        self.instances.statuses()
    }

    /// Asks every master to hand its role to a peer (the admin swap).
    pub fn relinquish(&self) {
        self.instances.relinquish();
    }
}

/// What Tandem feeds each instance of `configs`: the priority delta of the pools it tracks,
/// and whether its gateway is down; with the tasks that keep them current.
fn inputs(
    configs: &[VrrpConfig],
    gateways: &Monitor,
    pools: &watch::Receiver<PoolsHealth>,
) -> (Tasks, InstanceInputs) {
    let (mut tasks, faults) = watch_gateways(configs, gateways);
    let mut inputs = InstanceInputs::new();
    for config in configs {
        let track = tracked_pools(config, configs);
        let priority_delta = if track.is_empty() {
            None
        } else {
            let (task, delta) = track_pools(track, pools.clone());
            tasks.push(task);
            Some(delta)
        };
        inputs.insert(
            config.name.clone(),
            Inputs {
                fault: faults.get(&config.name).cloned(),
                priority_delta,
            },
        );
    }
    (Tasks(tasks), inputs)
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

fn specs(configs: &[VrrpConfig]) -> Vec<InstanceSpec> {
    configs
        .iter()
        .map(|c| InstanceSpec {
            config: instance_config(c),
            notify: c.notify.clone(),
            sync_group: c.sync_group.clone(),
        })
        .collect()
}

/// Pings every `track_gateway` of `configs` and returns a fault channel per instance that has
/// one (true while its gateway is down), with the task that feeds them from the pings'
/// transitions.
fn watch_gateways(
    configs: &[VrrpConfig],
    gateways: &Monitor,
) -> (Vec<JoinHandle<()>>, BTreeMap<String, watch::Receiver<bool>>) {
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
        return (Vec::new(), faults);
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
    (vec![task], faults)
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

/// The `vrrp` crate's view of one `[[vrrp]]` table: what the election itself depends on.
fn instance_config(c: &VrrpConfig) -> InstanceConfig {
    // Without `source`, the interface's own address of the instance's family (that of its
    // VIPs, or in cloud mode of its peers; validation keeps them to one family).
    let v6 = c
        .vips
        .first()
        .map(|v| v.addr.is_ipv6())
        .or(c.peers.first().map(IpAddr::is_ipv6))
        .unwrap_or(false);
    let any = if v6 {
        IpAddr::from(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::from(Ipv4Addr::UNSPECIFIED)
    };
    InstanceConfig {
        name: c.name.clone(),
        interface: c.interface.clone(),
        election: MachineConfig {
            version: if c.version == 2 {
                Version::V2
            } else {
                Version::V3
            },
            vrid: c.vrid,
            priority: c.priority,
            advert_interval: c.advert_interval,
            preempt: c.preempt,
            preempt_delay: c.preempt_delay,
            // The master's services answer on the VIPs (RFC 5798 §6.1 Accept_Mode).
            accept_mode: true,
            primary_address: c.source.unwrap_or(any),
        },
        vips: c.vips.iter().map(|v| (v.addr, v.prefix)).collect(),
        manage_vips: c.mode == VrrpMode::Vip,
        peers: c.peers.clone(),
        track_interfaces: c.track_interfaces.clone(),
        garp_repeat: c.garp_repeat,
        garp_interval: c.garp_interval,
        garp_refresh: c.garp_refresh,
    }
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
