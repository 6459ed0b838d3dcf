//! The node's part in VRRP: the `[[vrrp]]` tables run as a `vrrp::instances::Instances` set
//! (reload by difference, notify scripts, sync groups, the order of a stop), plus what
//! Tandem adds around each instance (see [`inputs`]): pool tracking that lowers its priority,
//! a gateway ping whose failure puts it in FAULT, and the applications bound to it, whose
//! failure does one or the other.

mod inputs;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use healthcheck::monitor::Monitor;
use tokio::sync::watch;
use vrrp::instance::{InstanceConfig, Status};
use vrrp::instances::{InstanceError, InstanceSpec, Instances};
use vrrp::{MachineConfig, Version};

pub use inputs::AppFailure;

use crate::config::{VrrpConfig, VrrpMode};
use crate::health::PoolsHealth;
use crate::tasks::Tasks;

/// The running instances and what Tandem adds to them.
pub struct Failover {
    instances: Instances,
    pools: watch::Receiver<PoolsHealth>,
    /// Pings of each instance's `track_gateway`.
    gateways: Monitor,
    /// What feeds the instances' inputs: the gateway forwarder, the pool trackers and the
    /// application failures. Replaced on every reload.
    feeders: Tasks,
}

impl Failover {
    /// Starts every instance of `configs`; the first that cannot start stops the others.
    pub async fn start(
        configs: &[VrrpConfig],
        pools: watch::Receiver<PoolsHealth>,
        apps: &[AppFailure],
    ) -> Result<Self, InstanceError> {
        let gateways = Monitor::new();
        let (feeders, inputs) = inputs::inputs(configs, &gateways, &pools, apps);
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
    pub async fn apply(
        &mut self,
        configs: &[VrrpConfig],
        apps: &[AppFailure],
    ) -> Vec<InstanceError> {
        let (feeders, inputs) = inputs::inputs(configs, &self.gateways, &self.pools, apps);
        // Dropping the old feeders closes the old channels; the instances follow the new ones.
        self.feeders = feeders;
        self.instances.apply(&specs(configs), inputs).await
    }

    /// Every instance resigns (priority-0 advert, VIPs removed) and its `stop` script runs.
    pub async fn shutdown(&mut self) {
        self.feeders = Tasks::new();
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
