//! The node's part in VRRP: one `vrrp::Instance` per `[[vrrp]]` table, with what the daemon
//! adds around each — pool tracking that lowers its priority, notify scripts on role changes,
//! and the order of things at shutdown (resign first, so the peer takes over while our own
//! connections drain).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use healthcheck::check::CheckSpec;
use healthcheck::monitor::{Monitor, Target, TargetId};
use healthcheck::status::Thresholds;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use vrrp::instance::{Command, Instance, InstanceConfig, StartError, Status, Transition};
use vrrp::{State, Version};

use crate::config::{Notify, TrackPool, VrrpConfig, VrrpMode};
use crate::health::PoolsHealth;

/// The running instances, by name.
pub struct Failover {
    instances: BTreeMap<String, Running>,
    /// The configured instances (running or not): sync groups are read from here.
    configs: Vec<VrrpConfig>,
    pools: watch::Receiver<PoolsHealth>,
    /// Pings of each instance's `track_gateway`.
    gateways: Monitor,
    /// Turns link and gateway faults into FAULT for the instances they concern (an instance's
    /// own gateway, and every member of a sync group when one member is faulty).
    faults: Option<JoinHandle<()>>,
}

/// How often fault sources are combined: a tenth of a second adds little to the 200 ms link
/// poll and the gateway's own interval.
const FAULT_POLL: Duration = Duration::from_millis(100);

struct Running {
    config: VrrpConfig,
    instance: Instance,
    /// The tracking task: replaced on every reload, aborted on stop.
    tracking: Helpers,
    /// Runs the notify scripts, one transition after another. Kept across reloads that leave
    /// `notify` unchanged, and allowed to finish at stop: aborting it would kill a script
    /// halfway (say, a `master` script setting up routes).
    notify: JoinHandle<()>,
}

/// Tasks that end with their instance.
struct Helpers(Vec<JoinHandle<()>>);

impl Drop for Helpers {
    fn drop(&mut self) {
        for helper in &self.0 {
            helper.abort();
        }
    }
}

/// An instance that could not start.
#[derive(Debug, thiserror::Error)]
#[error("vrrp {name}: {source}")]
pub struct FailoverError {
    pub name: String,
    #[source]
    pub source: StartError,
}

impl Failover {
    /// Starts every instance of `configs`; the first that cannot start stops the others.
    pub async fn start(
        configs: &[VrrpConfig],
        pools: watch::Receiver<PoolsHealth>,
    ) -> Result<Self, FailoverError> {
        let mut failover = Self {
            instances: BTreeMap::new(),
            configs: configs.to_vec(),
            pools,
            gateways: Monitor::new(),
            faults: None,
        };
        for config in configs {
            match failover.start_one(config).await {
                Ok(running) => {
                    failover.instances.insert(config.name.clone(), running);
                }
                Err(e) => {
                    failover.shutdown().await;
                    return Err(e);
                }
            }
        }
        failover.watch_faults();
        Ok(failover)
    }

    /// Applies a reloaded config. An instance whose election settings are unchanged keeps
    /// running, so its role (and the VIPs) stay put; only its tracking and notify settings are
    /// refreshed. Changed instances restart; removed ones resign. Returns the instances that
    /// failed to start.
    pub async fn apply(&mut self, configs: &[VrrpConfig]) -> Vec<FailoverError> {
        let mut errors = Vec::new();
        self.configs = configs.to_vec();
        let mut old = std::mem::take(&mut self.instances);
        for config in configs {
            match old.remove(&config.name) {
                Some(mut running)
                    if instance_config(&running.config) == instance_config(config) =>
                {
                    // Dropping the old tracking task aborts it.
                    running.tracking = self.tracking(config, &running.instance);
                    if running.config.notify != config.notify {
                        // New scripts: the role is unchanged, so the new task hears only
                        // changes from now on.
                        running.notify.abort();
                        running.notify = spawn_notify(config, &running.instance);
                    }
                    running.config = config.clone();
                    self.instances.insert(config.name.clone(), running);
                }
                previous => {
                    if let Some(previous) = previous {
                        tracing::info!(instance = %config.name, "vrrp settings changed: restarting the instance");
                        stop(previous).await;
                    }
                    match self.start_one(config).await {
                        Ok(running) => {
                            self.instances.insert(config.name.clone(), running);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        for (_, removed) in old {
            stop(removed).await;
        }
        self.watch_faults();
        errors
    }

    /// Every instance resigns (priority-0 advert, VIPs removed) and its `stop` script runs.
    pub async fn shutdown(&mut self) {
        if let Some(task) = self.faults.take() {
            task.abort();
        }
        for (_, running) in std::mem::take(&mut self.instances) {
            stop(running).await;
        }
    }

    /// Each instance's status channel, by name.
    pub fn roles(&self) -> BTreeMap<String, watch::Receiver<Status>> {
        self.instances
            .iter()
            .map(|(name, r)| (name.clone(), r.instance.status()))
            .collect()
    }

    /// Asks every master to hand its role to a peer (the admin swap).
    pub fn relinquish(&self) {
        for running in self.instances.values() {
            running.instance.command(Command::Relinquish);
        }
    }

    /// (Re)starts the gateway pings and the task that combines fault sources, for the
    /// instances now running.
    fn watch_faults(&mut self) {
        if let Some(task) = self.faults.take() {
            task.abort();
        }
        let targets = self
            .instances
            .values()
            .filter_map(|r| gateway_target(&r.config))
            .collect();
        self.gateways.set_targets(targets);
        let members: Vec<Member> = self
            .instances
            .values()
            .map(|r| Member {
                name: r.config.name.clone(),
                group: r.config.sync_group.clone(),
                gateway: r
                    .config
                    .track_gateway
                    .as_ref()
                    .map(|_| gateway_id(&r.config)),
                status: r.instance.status(),
                commands: r.instance.commands(),
                sent: None,
            })
            .collect();
        if members
            .iter()
            .all(|m| m.gateway.is_none() && m.group.is_none())
        {
            // Nothing to combine: no poll task waking the thread ten times a second for
            // nothing. Clear a fault a reload may have left behind (its gateway is gone).
            for member in &members {
                let _ = member.commands.send(Command::ExternalFault(false));
            }
            return;
        }
        self.faults = Some(tokio::spawn(combine_faults(members, self.gateways.clone())));
    }

    async fn start_one(&self, config: &VrrpConfig) -> Result<Running, FailoverError> {
        let instance = Instance::start(instance_config(config))
            .await
            .map_err(|source| FailoverError {
                name: config.name.clone(),
                source,
            })?;
        let tracking = self.tracking(config, &instance);
        // The first subscriber hears every transition since the start (INIT -> BACKUP too).
        let notify = spawn_notify(config, &instance);
        Ok(Running {
            config: config.clone(),
            instance,
            tracking,
            notify,
        })
    }

    fn tracking(&self, config: &VrrpConfig, instance: &Instance) -> Helpers {
        let mut helpers = Vec::new();
        // In a sync group every member follows the tracking of all, so they move together.
        let track: Vec<TrackPool> = match &config.sync_group {
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
        };
        if track.is_empty() {
            // A reload may have removed the last track: lift any penalty still in force.
            instance.command(Command::PriorityDelta(0));
        } else {
            helpers.push(tokio::spawn(track_pools(
                track,
                self.pools.clone(),
                instance.commands(),
            )));
        }
        Helpers(helpers)
    }
}

fn spawn_notify(config: &VrrpConfig, instance: &Instance) -> JoinHandle<()> {
    tokio::spawn(notify_on_change(
        config.name.clone(),
        config.notify.clone(),
        instance.transitions(),
    ))
}

async fn stop(running: Running) {
    let Running {
        config,
        instance,
        tracking,
        mut notify,
    } = running;
    drop(tracking);
    instance.shutdown().await;
    // The instance is gone, so its transitions channel is closed: the notify task runs what is
    // still queued (bounded by each script's timeout) and ends.
    let patience = config.notify.timeout.saturating_mul(2);
    if tokio::time::timeout(patience, &mut notify).await.is_err() {
        notify.abort();
    }
    if let Some(argv) = &config.notify.stop {
        run_notify(&config.name, "stop", argv, &config.notify).await;
    }
}

/// One instance as the fault combiner sees it.
struct Member {
    name: String,
    group: Option<String>,
    gateway: Option<TargetId>,
    status: watch::Receiver<Status>,
    commands: mpsc::UnboundedSender<Command>,
    /// The external-fault flag last sent.
    sent: Option<bool>,
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

/// Every [`FAULT_POLL`]: an instance is externally faulty while its gateway is unreachable,
/// or while another member of its sync group is faulty by its own link or gateway.
async fn combine_faults(mut members: Vec<Member>, gateways: Monitor) {
    let mut tick = tokio::time::interval(FAULT_POLL);
    loop {
        tick.tick().await;
        let gateway_down: Vec<bool> = members
            .iter()
            .map(|m| {
                m.gateway
                    .as_ref()
                    .and_then(|id| gateways.status(id))
                    .is_some_and(|s| !s.up)
            })
            .collect();
        // Faulty of its own making: its gateway or its links.
        let own: Vec<bool> = members
            .iter()
            .zip(&gateway_down)
            .map(|(m, &gw)| gw || m.status.borrow().link_fault)
            .collect();
        for i in 0..members.len() {
            let gateway_down = gateway_down[i];
            let group_down = members[i].group.as_ref().is_some_and(|g| {
                members.iter().zip(&own).any(|(m, &down)| {
                    down && m.name != members[i].name && m.group.as_ref() == Some(g)
                })
            });
            let external = gateway_down || group_down;
            let member = &mut members[i];
            if member.sent != Some(external) {
                if member.sent.is_some() || external {
                    tracing::warn!(instance = %member.name, fault = external, gateway_down, group_down,
                        "external fault changed");
                }
                member.sent = Some(external);
                let _ = member.commands.send(Command::ExternalFault(external));
            }
        }
    }
}

/// The `vrrp` crate's view of one `[[vrrp]]` table: what the election itself depends on.
fn instance_config(c: &VrrpConfig) -> InstanceConfig {
    InstanceConfig {
        name: c.name.clone(),
        interface: c.interface.clone(),
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
        vips: c.vips.iter().map(|v| (v.addr, v.prefix)).collect(),
        manage_vips: c.mode == VrrpMode::Vip,
        peers: c.peers.clone(),
        source: c.source,
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

async fn notify_on_change(
    name: String,
    notify: Notify,
    mut transitions: broadcast::Receiver<Transition>,
) {
    loop {
        let state = match transitions.recv().await {
            Ok(t) => t.to,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(instance = %name, missed, "notify scripts skipped for missed role changes");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let argv = match state {
            State::Master => &notify.master,
            State::Backup => &notify.backup,
            State::Fault => &notify.fault,
            State::Initialize => &None,
        };
        if let Some(argv) = argv {
            run_notify(&name, state.as_str(), argv, &notify).await;
        }
    }
}

/// Runs one notify program (no shell), killed with its process group at the timeout.
async fn run_notify(instance: &str, state: &str, argv: &[String], notify: &Notify) {
    let spec = CheckSpec::Command {
        argv: argv.to_vec(),
    };
    match healthcheck::probe(&spec, notify.timeout).await {
        Ok(()) => tracing::info!(instance, state, program = %argv[0], "notify script succeeded"),
        Err(e) => {
            tracing::warn!(instance, state, program = %argv[0], error = %e, "notify script failed");
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
