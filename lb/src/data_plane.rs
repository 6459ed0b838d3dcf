//! The data plane: the listeners, the generation of services they serve, and the sessions
//! they started.
//!
//! Applying a config is all-or-nothing. Every new listener is bound first, and only then is
//! anything changed: kept listeners get the new generation in one atomic store, new ones
//! start accepting, removed ones stop. Any failure before that point leaves the running
//! data plane exactly as it was.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use healthcheck::monitor::Monitor;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Protocol};
use crate::generation::{self, ServiceGeneration};
use crate::health::{self, PoolsHealth};
use crate::proxy::listener::{self, Listener};
use crate::registry::Registry;
use crate::udp::listener::{self as udp_listener, UdpListener};

/// A listen address of the new config could not be bound: nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("service {service}: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub service: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// An operator named a backend the running config does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBackend {
    pub pool: String,
    pub addr: SocketAddr,
}

/// What a successful reload changed, for the log line.
#[derive(Debug, Default)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub kept: usize,
    pub summary: String,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; services kept {}", self.summary, self.kept)?;
        if !self.added.is_empty() {
            write!(f, ", added {}", self.added.join(" "))?;
        }
        if !self.removed.is_empty() {
            write!(f, ", removed {}", self.removed.join(" "))?;
        }
        Ok(())
    }
}

/// The listeners and the generation of services they serve; reload swaps the generation in
/// place, binds what is new and stops what is gone.
pub struct DataPlane {
    config: Config,
    registry: Arc<Registry>,
    listeners: HashMap<SocketAddr, Listener>,
    /// The UDP services' sockets and workers, by address (a TCP service may share it).
    udp: HashMap<SocketAddr, UdpListener>,
    /// The data runtimes: every listening address gets one socket on each.
    runtimes: Vec<tokio::runtime::Handle>,
    sessions: TaskTracker,
    monitor: Monitor,
    /// The running config, for tasks that need it between reloads.
    running: watch::Sender<Arc<Config>>,
    pools: watch::Sender<PoolsHealth>,
}

impl DataPlane {
    /// Binds every service of `config` and starts accepting on each of `runtimes` (the data
    /// runtimes, see [`crate::data_threads::DataThreads::runtimes`]). Must run inside the control runtime.
    pub fn start(config: Config, runtimes: Vec<tokio::runtime::Handle>) -> Result<Self, BindError> {
        let empty = Config {
            node: config.node.clone(),
            services: Vec::new(),
            pools: Vec::new(),
            vrrp: Vec::new(),
            apps: Vec::new(),
            anycast: Vec::new(),
        };
        let registry = Arc::new(Registry::default());
        let monitor = Monitor::new();
        let (running, running_rx) = watch::channel(Arc::new(empty.clone()));
        let (pools, _) = watch::channel(PoolsHealth::new());
        health::spawn_applier(&monitor, registry.clone(), running_rx, pools.clone());
        let mut data_plane = Self {
            config: empty,
            registry,
            listeners: HashMap::new(),
            udp: HashMap::new(),
            runtimes,
            sessions: TaskTracker::new(),
            monitor,
            running,
            pools,
        };
        data_plane.apply(config)?;
        Ok(data_plane)
    }

    /// The config being served.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The health checker of this node's backends.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The backend and service state shared across generations.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The running config, replaced on every successful reload.
    pub fn running_config(&self) -> watch::Receiver<Arc<Config>> {
        self.running.subscribe()
    }

    /// Drains a backend (no new connections; open ones finish) or enables it again. Kept
    /// across reloads for as long as the backend stays in the pool.
    pub fn set_drained(
        &self,
        pool: &str,
        addr: SocketAddr,
        drained: bool,
    ) -> Result<(), UnknownBackend> {
        let known = self
            .config
            .pool(pool)
            .is_some_and(|p| p.backends.iter().any(|b| b.addr == addr));
        let state = self.registry.find_backend(pool, addr).filter(|_| known);
        let Some(state) = state else {
            return Err(UnknownBackend {
                pool: pool.to_owned(),
                addr,
            });
        };
        let was = state
            .drained
            .swap(drained, std::sync::atomic::Ordering::Relaxed);
        if was != drained {
            tracing::info!(pool, backend = %addr, drained, "backend {} by the admin API",
                if drained { "drained" } else { "enabled" });
        }
        health::publish(
            &self.pools,
            health::pools_health(&self.config, &self.registry),
        );
        Ok(())
    }

    /// Usable backends per pool, updated on every health transition.
    pub fn pools_health(&self) -> watch::Receiver<PoolsHealth> {
        self.pools.subscribe()
    }

    /// Client connections open right now, across all services.
    pub fn open_connections(&self) -> usize {
        self.sessions.len()
    }

    /// Makes `config` the running configuration, or changes nothing and says why.
    pub fn apply(&mut self, config: Config) -> Result<ReloadSummary, BindError> {
        if config.node.threads != self.config.node.threads {
            tracing::warn!(
                running = self.config.node.threads,
                configured = config.node.threads,
                "node.threads changes take effect at the next restart"
            );
        }
        if config.node.realtime_priority != self.config.node.realtime_priority {
            tracing::warn!(
                running = self.config.node.realtime_priority,
                configured = config.node.realtime_priority,
                "node.realtime_priority changes take effect at the next restart"
            );
        }
        if config.node.lock_memory != self.config.node.lock_memory {
            tracing::warn!(
                running = self.config.node.lock_memory,
                configured = config.node.lock_memory,
                "node.lock_memory changes take effect at the next restart"
            );
        }
        if config.node.io != self.config.node.io {
            tracing::warn!(
                running = ?self.config.node.io,
                configured = ?config.node.io,
                "node.io changes take effect at the next restart"
            );
        }
        let services = generation::build(&config, &self.registry, &self.monitor);

        // Phase 1: bind what is new. Nothing running is touched, so a failure here simply
        // drops the new sockets. A kept address keeps its socket whatever else changed: closing
        // a listening socket resets the clients in its queue. (IP_FREEBIND only matters at
        // bind time, and the backlog is changed in place below.)
        let mut fresh = Vec::new();
        let mut fresh_udp = Vec::new();
        for service in &services {
            let c = &service.config;
            if c.protocol == Protocol::Udp {
                if !self.udp.contains_key(&c.listen) {
                    let bound = udp_listener::bind(c.listen, c.freebind, &self.runtimes).map_err(
                        |source| BindError {
                            service: c.name.clone(),
                            addr: c.listen,
                            source,
                        },
                    )?;
                    fresh_udp.push((service.clone(), bound));
                }
                continue;
            }
            if !self.listeners.contains_key(&c.listen) {
                let bound = listener::bind(c.listen, c.backlog, c.freebind, &self.runtimes)
                    .map_err(|source| BindError {
                        service: c.name.clone(),
                        addr: c.listen,
                        source,
                    })?;
                fresh.push((service.clone(), bound));
            }
        }

        // Phase 2: commit. Health first, so the new generation's first pick sees it: kept
        // backends keep their state, new ones start as their `start` setting says.
        self.monitor.set_targets(health::targets(&config));
        health::sync_flags(&config, &self.monitor, &self.registry);
        let mut summary = ReloadSummary {
            summary: config.summary(),
            ..ReloadSummary::default()
        };
        let by_addr: HashMap<SocketAddr, &Arc<ServiceGeneration>> = services
            .iter()
            .filter(|s| s.config.protocol == Protocol::Tcp)
            .map(|s| (s.config.listen, s))
            .collect();
        let udp_by_addr: HashMap<SocketAddr, &Arc<ServiceGeneration>> = services
            .iter()
            .filter(|s| s.config.protocol == Protocol::Udp)
            .map(|s| (s.config.listen, s))
            .collect();
        let old_names: HashMap<SocketAddr, String> = self
            .listeners
            .iter()
            .map(|(a, l)| (*a, l.generation.load().config.name.clone()))
            .collect();
        for (addr, listener) in &mut self.listeners {
            if let Some(service) = by_addr.get(addr) {
                listener.generation.store(Arc::clone(service));
                summary.kept += 1;
                if let Err(e) = listener.set_backlog(service.config.backlog) {
                    tracing::warn!(service = %service.config.name, error = %e,
                        "new backlog not applied; the old one stays");
                }
            }
        }
        for (service, bound) in fresh {
            let addr = service.config.listen;
            summary.added.push(service.config.name.clone());
            let listener = Listener::start(bound, service, self.sessions.clone());
            self.listeners.insert(addr, listener);
        }
        let mut retired = Vec::new();
        let gone: Vec<SocketAddr> = self
            .listeners
            .keys()
            .filter(|a| !by_addr.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(listener) = self.listeners.remove(&addr) {
                summary
                    .removed
                    .push(old_names.get(&addr).cloned().unwrap_or_default());
                retired.push(listener);
            }
        }
        for listener in retired {
            tokio::spawn(listener.stop());
        }
        // UDP: kept addresses get the new generation (new flows use it; open flows keep
        // theirs), new ones start, removed ones drain their flows and close.
        for (addr, listener) in &mut self.udp {
            if let Some(service) = udp_by_addr.get(addr) {
                listener.generation.store(Arc::clone(service));
                summary.kept += 1;
            }
        }
        for (service, bound) in fresh_udp {
            summary.added.push(service.config.name.clone());
            let listener = UdpListener::start(bound, service.clone(), &self.sessions);
            self.udp.insert(service.config.listen, listener);
        }
        let gone: Vec<SocketAddr> = self
            .udp
            .keys()
            .filter(|a| !udp_by_addr.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(listener) = self.udp.remove(&addr) {
                summary
                    .removed
                    .push(listener.generation.load().config.name.clone());
                listener.stop();
            }
        }
        self.registry.retain(&config);
        health::publish(&self.pools, health::pools_health(&config, &self.registry));
        self.running.send_replace(Arc::new(config.clone()));
        self.config = config;
        Ok(summary)
    }

    /// Stops accepting everywhere (UDP: starting flows), then waits up to `deadline` for open
    /// connections and flows to end. Returns how many TCP connections and UDP workers were
    /// still open when it gave up.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        for (_, listener) in self.udp {
            listener.stop();
        }
        // All at once: each takes RETIRE_GRACE to close without resetting a client.
        for listener in self.listeners.values() {
            listener.stop_accepting();
        }
        for (_, listener) in self.listeners {
            listener.stop().await;
        }
        self.sessions.close();
        let open = self.sessions.len();
        if open > 0 {
            tracing::info!(open, deadline = %humantime::format_duration(deadline),
                "draining open connections");
        }
        match tokio::time::timeout(deadline, self.sessions.wait()).await {
            Ok(()) => 0,
            Err(_) => {
                // The runtime drops what is left when it shuts down; make those drops resets.
                crate::proxy::session::abandon_open_sessions();
                self.sessions.len()
            }
        }
    }
}
