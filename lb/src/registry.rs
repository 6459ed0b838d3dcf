//! Keeps the mutable state of backends and services across config generations.
//!
//! Only the control plane (start-up and reload) touches the maps; the data plane holds the
//! `Arc`s they hand out, so the mutex is never on the hot path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::pool::BackendState;
use crate::stats::ServiceStats;

#[derive(Debug, Default)]
pub struct Registry {
    backends: Mutex<HashMap<(String, SocketAddr), Arc<BackendState>>>,
    services: Mutex<HashMap<String, Arc<ServiceStats>>>,
}

impl Registry {
    /// The state of backend `addr` in pool `pool`, created on first use.
    pub fn backend(&self, pool: &str, addr: SocketAddr) -> Arc<BackendState> {
        let mut map = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((pool.to_owned(), addr))
            .or_insert_with(|| Arc::new(BackendState::new(addr)))
            .clone()
    }

    /// The state of backend `addr` in pool `pool`, if it is known.
    pub fn find_backend(&self, pool: &str, addr: SocketAddr) -> Option<Arc<BackendState>> {
        let map = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(pool.to_owned(), addr)).cloned()
    }

    /// The counters of service `name`, created on first use.
    pub fn service(&self, name: &str) -> Arc<ServiceStats> {
        let mut map = self.services.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Forgets backends and services that `config` no longer has, once no open connection
    /// holds them: a backend or service removed and added back while its old connections are
    /// still open must find its live counters again, or `max_conns` would be overshot.
    pub fn retain(&self, config: &Config) {
        let backends: HashSet<(&str, SocketAddr)> = config
            .pools
            .iter()
            .flat_map(|p| p.backends.iter().map(|b| (p.name.as_str(), b.addr)))
            .collect();
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(pool, addr), state| {
                backends.contains(&(pool.as_str(), *addr)) || Arc::strong_count(state) > 1
            });
        let services: HashSet<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, stats| services.contains(name.as_str()) || Arc::strong_count(stats) > 1);
    }
}
