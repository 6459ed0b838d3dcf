//! The node's part in VRRP: one `vrrp::Instance` per `[[vrrp]]` table, with what the daemon
//! adds around each — pool tracking that lowers its priority, notify scripts on role changes,
//! and the order of things at shutdown (resign first, so the peer takes over while our own
//! connections drain).

use std::collections::BTreeMap;

use healthcheck::check::CheckSpec;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use vrrp::instance::{Command, Instance, InstanceConfig, StartError, Status, Transition};
use vrrp::{State, Version};

use crate::config::{Notify, TrackPool, VrrpConfig, VrrpMode};
use crate::health::PoolsHealth;

/// The running instances, by name.
pub struct Failover {
    instances: BTreeMap<String, Running>,
    pools: watch::Receiver<PoolsHealth>,
}

struct Running {
    config: VrrpConfig,
    instance: Instance,
    /// Tracking and notify tasks: replaced on reload, aborted on stop.
    helpers: Helpers,
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
            pools,
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
        Ok(failover)
    }

    /// Applies a reloaded config. An instance whose election settings are unchanged keeps
    /// running, so its role (and the VIPs) stay put; only its tracking and notify settings are
    /// refreshed. Changed instances restart; removed ones resign. Returns the instances that
    /// failed to start.
    pub async fn apply(&mut self, configs: &[VrrpConfig]) -> Vec<FailoverError> {
        let mut errors = Vec::new();
        let mut old = std::mem::take(&mut self.instances);
        for config in configs {
            match old.remove(&config.name) {
                Some(mut running)
                    if instance_config(&running.config) == instance_config(config) =>
                {
                    running.config = config.clone();
                    // Dropping the old helpers aborts them. The role is unchanged: the new notify
                    // task hears only changes from now on.
                    running.helpers = self.helpers(config, &running.instance);
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
        errors
    }

    /// Every instance resigns (priority-0 advert, VIPs removed) and its `stop` script runs.
    pub async fn shutdown(&mut self) {
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

    async fn start_one(&self, config: &VrrpConfig) -> Result<Running, FailoverError> {
        let instance = Instance::start(instance_config(config))
            .await
            .map_err(|source| FailoverError {
                name: config.name.clone(),
                source,
            })?;
        let helpers = self.helpers(config, &instance);
        Ok(Running {
            config: config.clone(),
            instance,
            helpers,
        })
    }

    fn helpers(&self, config: &VrrpConfig, instance: &Instance) -> Helpers {
        let mut helpers = Vec::new();
        if !config.track.is_empty() {
            helpers.push(tokio::spawn(track_pools(
                config.track.clone(),
                self.pools.clone(),
                instance.commands(),
            )));
        }
        helpers.push(tokio::spawn(notify_on_change(
            config.name.clone(),
            config.notify.clone(),
            instance.transitions(),
        )));
        Helpers(helpers)
    }
}

async fn stop(running: Running) {
    let Running {
        config,
        instance,
        helpers,
    } = running;
    drop(helpers);
    instance.shutdown().await;
    if let Some(argv) = &config.notify.stop {
        run_notify(&config.name, "stop", argv, &config.notify).await;
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
        .filter(|t| {
            let usable = health.get(&t.pool).map_or(0, |h| h.usable);
            usable < t.min_healthy as usize
        })
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
