//! One immutable generation of the running configuration, as the data plane sees it.
//!
//! A reload builds a complete new [`ServiceGeneration`] per service off the hot path and then
//! swaps it into the service's listener in one atomic store; a connection holds the generation
//! it started with until it ends.

use std::collections::HashMap;
use std::sync::Arc;

use healthcheck::monitor::Monitor;

use crate::config::{Config, PoolConfig, ServiceConfig};
use crate::pool::Pool;
use crate::registry::Registry;
use crate::stats::ServiceStats;

/// Everything a new connection of one service needs.
#[derive(Debug)]
pub struct ServiceGeneration {
    pub config: ServiceConfig,
    pub stats: Arc<ServiceStats>,
    pub pool: Pool,
    /// Where the data plane reports backends to eject (passive health).
    pub monitor: Monitor,
}

/// Builds the generation of every service of `config`, in config order. Each service gets its own
/// balancer (two services may share a pool with different algorithms); backend state is shared
/// through the registry.
pub fn build(
    config: &Config,
    registry: &Registry,
    monitor: &Monitor,
) -> Vec<Arc<ServiceGeneration>> {
    // By name, so that building is linear in the number of services and pools.
    let pools: HashMap<&str, &PoolConfig> =
        config.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    config
        .services
        .iter()
        .map(|service| {
            let pool_config = *pools
                .get(service.pool.as_str())
                .expect("validated config: every service names an existing pool");
            let pool = Pool::build(pool_config, service.balance, |addr| {
                registry.backend(&pool_config.name, addr)
            });
            Arc::new(ServiceGeneration {
                config: service.clone(),
                stats: registry.service(&service.name),
                pool,
                monitor: monitor.clone(),
            })
        })
        .collect()
}
