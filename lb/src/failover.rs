//! The node's part in VRRP: the `[[vrrp]]` tables run as a `vrrp::instances::Instances` set
//! (reload by difference, notify scripts, sync groups, the order of a stop), plus what
//! Tandem adds around each instance: pool tracking that lowers its priority, and a gateway
//! ping whose failure puts it in FAULT.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use healthcheck::check::CheckSpec;
use healthcheck::monitor::{Monitor, Target, TargetId};
use healthcheck::status::Thresholds;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use vrrp::instance::{Command, InstanceConfig, Status};
use vrrp::instances::{ExternalFaults, InstanceError, InstanceSpec, Instances};
use vrrp::{MachineConfig, Version};

use crate::config::{TrackPool, VrrpConfig, VrrpMode};
use crate::health::PoolsHealth;

/// The running instances and what Tandem adds to them.
pub struct Failover {
    instances: Instances,
    /// The configured instances (running or not): sync groups are read from here.
    configs: Vec<VrrpConfig>,
    pools: watch::Receiver<PoolsHealth>,
    /// Pings of each instance's `track_gateway`.
    gateways: Monitor,
    /// Passes gateway transitions on to the instances' external-fault channels.
    gateway_faults: Option<Tasks>,
    /// Pool tracking, one task per instance that tracks pools; replaced on every reload.
    tracking: Tasks,
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
        let (gateway_faults, external) = watch_gateways(configs, &gateways);
        let instances = Instances::start(&specs(configs), external).await?;
        let mut failover = Self {
            instances,
            configs: configs.to_vec(),
            pools,
            gateways,
            gateway_faults,
            tracking: Tasks(Vec::new()),
        };
        failover.track();
        Ok(failover)
    }

    /// Applies a reloaded config: see [`Instances::apply`]; tracking and gateways are
    /// refreshed for every instance. Returns the instances that failed to start.
    pub async fn apply(&mut self, configs: &[VrrpConfig]) -> Vec<InstanceError> {
        self.configs = configs.to_vec();
        // Dropping the old forwarder closes the old channels; the new set gets new ones.
        let (gateway_faults, external) = watch_gateways(configs, &self.gateways);
        self.gateway_faults = gateway_faults;
        let errors = self.instances.apply(&specs(configs), external).await;
        self.track();
        errors
    }

    /// Every instance resigns (priority-0 advert, VIPs removed) and its `stop` script runs.
    pub async fn shutdown(&mut self) {
        self.tracking = Tasks(Vec::new());
        self.gateway_faults = None;
        self.instances.shutdown().await;
    }

    /// Each instance's status channel, by name.
    pub fn statuses(&self) -> BTreeMap<String, watch::Receiver<Status>> {
        self.instances.statuses()
    }

    /// Asks every master to hand its role to a peer (the admin swap).
    pub fn relinquish(&self) {
        self.instances.relinquish();
    }

    /// (Re)starts pool tracking for every running instance.
    fn track(&mut self) {
        let mut tasks = Vec::new();
        for (name, commands) in self.instances.commands() {
            let Some(config) = self.configs.iter().find(|c| c.name == name) else {
                continue;
            };
            let track = self.tracked_pools(config);
            if track.is_empty() {
                // A reload may have removed the last track: lift any penalty still in force.
                let _ = commands.send(Command::PriorityDelta(0));
            } else {
                tasks.push(tokio::spawn(track_pools(
                    track,
                    self.pools.clone(),
                    commands,
                )));
            }
        }
        // Dropping the old tasks aborts them.
        self.tracking = Tasks(tasks);
    }

    /// The pools `config` follows: in a sync group every member follows the tracking of all,
    /// so they move together.
    fn tracked_pools(&self, config: &VrrpConfig) -> Vec<TrackPool> {
        match &config.sync_group {
            None => config.track.clone(),
            Some(group) => self
                .configs
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

/// Pings every `track_gateway` of `configs` and returns an external-fault channel per
/// instance that has one (true while its gateway is down), with the task that feeds them from
/// the pings' transitions.
fn watch_gateways(configs: &[VrrpConfig], gateways: &Monitor) -> (Option<Tasks>, ExternalFaults) {
    gateways.set_targets(configs.iter().filter_map(gateway_target).collect());
    // Subscribed before the current states are read, so no transition falls in between.
    let mut events = gateways.subscribe();
    let down = |id: &TargetId| gateways.status(id).is_some_and(|s| !s.up);
    let mut senders: BTreeMap<TargetId, watch::Sender<bool>> = BTreeMap::new();
    let mut faults = ExternalFaults::new();
    for config in configs.iter().filter(|c| c.track_gateway.is_some()) {
        let id = gateway_id(config);
        let (tx, rx) = watch::channel(down(&id));
        senders.insert(id, tx);
        faults.insert(config.name.clone(), rx);
    }
    if senders.is_empty() {
        return (None, faults);
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
    (Some(Tasks(vec![task])), faults)
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

async fn track_pools(
    track: Vec<TrackPool>,
    mut pools: watch::Receiver<PoolsHealth>,
    commands: mpsc::UnboundedSender<Command>,
) {
    let mut last = None;
    loop {
        let delta = track_delta(&track, &pools.borrow_and_update());
        if last != Some(delta) {
            last = Some(delta);
            if commands.send(Command::PriorityDelta(delta)).is_err() {
                return;
            }
        }
        if pools.changed().await.is_err() {
            return;
        }
    }
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
