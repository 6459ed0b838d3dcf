//! The running node: its listeners, the generation they serve, reload and drain.
//!
//! A reload is all-or-nothing. The new file is parsed and validated, every new listener is
//! bound, and only then is anything changed: kept listeners get the new generation in one
//! atomic store, new ones start accepting, removed ones stop. Any failure before that point
//! leaves the running node exactly as it was.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use healthcheck::monitor::Monitor;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminCommand, AdminContext, ReloadCounts, Roles};
use crate::config::{self, Config, ConfigErrors};
use crate::failover::{Failover, FailoverError};
use crate::health::{self, PoolsHealth};
use crate::proxy::listener::{self, Listener};
use crate::registry::Registry;
use crate::sd_notify;
use crate::snapshot::{self, ServiceRuntime};
use crate::workers::{Workers, WorkersError};

/// Why a start or reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("service {service}: cannot listen on {addr}: {source}")]
    Bind {
        service: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Failover(#[from] FailoverError),
    #[error("{0}")]
    AdminToken(std::io::Error),
    #[error(transparent)]
    Workers(#[from] WorkersError),
    #[error("admin API: cannot listen on {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
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

pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    registry: Arc<Registry>,
    listeners: HashMap<SocketAddr, Listener>,
    /// The data runtimes: every listening address gets one socket on each.
    shards: Vec<tokio::runtime::Handle>,
    sessions: TaskTracker,
    monitor: Monitor,
    /// The running config, for tasks that need it between reloads.
    running: watch::Sender<Arc<Config>>,
    pools: watch::Sender<PoolsHealth>,
}

impl Daemon {
    /// Binds every service of `config` and starts accepting on each of `shards` (the data
    /// runtimes, see [`Workers::handles`]). Must run inside the control runtime.
    pub fn start(
        config: Config,
        config_path: &Path,
        shards: Vec<tokio::runtime::Handle>,
    ) -> Result<Self, DaemonError> {
        let empty = Config {
            node: config.node.clone(),
            services: Vec::new(),
            pools: Vec::new(),
            vrrp: Vec::new(),
        };
        let registry = Arc::new(Registry::default());
        let monitor = Monitor::new();
        let (running, running_rx) = watch::channel(Arc::new(empty.clone()));
        let (pools, _) = watch::channel(PoolsHealth::new());
        health::spawn_applier(&monitor, registry.clone(), running_rx, pools.clone());
        let mut daemon = Self {
            config_path: config_path.to_owned(),
            config: empty,
            registry,
            listeners: HashMap::new(),
            shards,
            sessions: TaskTracker::new(),
            monitor,
            running,
            pools,
        };
        daemon.apply(config)?;
        Ok(daemon)
    }

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
    pub fn set_drained(&self, pool: &str, addr: SocketAddr, drained: bool) -> Result<(), String> {
        let known = self
            .config
            .pool(pool)
            .is_some_and(|p| p.backends.iter().any(|b| b.addr == addr));
        let state = self.registry.find_backend(pool, addr).filter(|_| known);
        let Some(state) = state else {
            return Err(format!("pool {pool:?} has no backend {addr}"));
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
    pub fn apply(&mut self, config: Config) -> Result<ReloadSummary, DaemonError> {
        if config.node.threads != self.config.node.threads {
            tracing::warn!(
                running = self.config.node.threads,
                configured = config.node.threads,
                "node.threads changes take effect at the next restart"
            );
        }
        if config.node.io != self.config.node.io {
            tracing::warn!(
                running = ?self.config.node.io,
                configured = ?config.node.io,
                "node.io changes take effect at the next restart"
            );
        }
        let generation = snapshot::build(&config, &self.registry, &self.monitor);

        // Phase 1: bind what is new. Nothing running is touched, so a failure here simply
        // drops the new sockets. A kept address keeps its socket whatever else changed: closing
        // a listening socket resets the clients in its queue. (IP_FREEBIND only matters at
        // bind time, and the backlog is changed in place below.)
        let mut fresh = Vec::new();
        for service in &generation {
            let c = &service.config;
            if !self.listeners.contains_key(&c.listen) {
                let bound = listener::bind(c.listen, c.backlog, c.freebind, &self.shards).map_err(
                    |source| DaemonError::Bind {
                        service: c.name.clone(),
                        addr: c.listen,
                        source,
                    },
                )?;
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
        let by_addr: HashMap<SocketAddr, &Arc<ServiceRuntime>> =
            generation.iter().map(|s| (s.config.listen, s)).collect();
        let old_names: HashMap<SocketAddr, String> = self
            .listeners
            .iter()
            .map(|(a, l)| (*a, l.binding.load().config.name.clone()))
            .collect();
        for (addr, listener) in &mut self.listeners {
            if let Some(service) = by_addr.get(addr) {
                listener.binding.store(Arc::clone(service));
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
        self.registry.retain(&config);
        health::publish(&self.pools, health::pools_health(&config, &self.registry));
        self.running.send_replace(Arc::new(config.clone()));
        self.config = config;
        Ok(summary)
    }

    /// Stops accepting everywhere, then waits up to `deadline` for open connections to end.
    /// Returns how many were still open when it gave up.
    pub async fn shutdown(self, deadline: Duration) -> usize {
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

/// Runs a node until SIGTERM or SIGINT: reload on SIGHUP (or `POST /reload`), then drain and
/// return.
pub async fn run(config: Config, config_path: &Path) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before anything else: SIGHUP's default action would kill the process.
    let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");

    let token = resolve_token(&config).map_err(DaemonError::AdminToken)?;
    let workers = if config.node.threads > 1 {
        Workers::start(config.node.threads, config.node.io)?
    } else {
        Workers::here(config.node.io).await?
    };
    let io = workers.io();
    let data_threads = workers.threads_io().to_vec();
    let daemon = Daemon::start(config, config_path, workers.handles().to_vec())?;
    // The admin API first (its bind is the last thing that can fail), then VRRP: a node that
    // cannot start never holds a VIP it would not give back.
    let (roles, roles_rx) = watch::channel(Roles::new());
    let (token, token_rx) = watch::channel(token);
    let (commands_tx, mut commands) = mpsc::channel(16);
    let reloads = Arc::new(ReloadCounts::default());
    let context = Arc::new(AdminContext {
        config: daemon.running_config(),
        registry: daemon.registry(),
        monitor: daemon.monitor().clone(),
        pools: daemon.pools_health(),
        roles: roles_rx,
        token: token_rx,
        commands: commands_tx,
        reloads: reloads.clone(),
        data_threads,
        stopping: std::sync::atomic::AtomicBool::new(false),
    });
    let admin = AdminServer::start(daemon.config().node.admin, context.clone()).await?;
    let failover = match Failover::start(&daemon.config().vrrp, daemon.pools_health()).await {
        Ok(f) => f,
        Err(e) => {
            admin.stop();
            return Err(e.into());
        }
    };
    let _ = roles.send(failover.roles());
    let mut node = Node {
        daemon,
        failover,
        roles,
        token,
        admin,
        context,
        reloads,
    };
    tracing::info!(config = %config_path.display(), threads = node.daemon.config().node.threads,
        io, admin = ?node.daemon.config().node.admin,
        "{}; listening on {}", node.daemon.config().summary(), listen_list(node.daemon.config()));
    sd_notify::notify("READY=1");

    let signal_name = loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = node.reload().await;
            }
            Some(command) = commands.recv() => node.command(command).await,
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    sd_notify::notify("STOPPING=1");
    node.context
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Resign first: the peer takes the VIPs over (after its Skew_Time) while we drain.
    node.failover.shutdown().await;
    let _ = node.roles.send(node.failover.roles());
    let deadline = node.daemon.config().node.drain_timeout;
    tracing::info!("{signal_name}: no longer accepting");
    let left = node.daemon.shutdown(deadline).await;
    // What the drain left open is dropped with the data threads' runtimes, as resets.
    workers.stop();
    node.admin.stop();
    if left > 0 {
        tracing::warn!(
            left,
            "drain deadline reached; resetting the remaining connections"
        );
    } else {
        tracing::info!("all connections finished; exiting");
    }
    Ok(())
}

/// The running node as the main loop owns it.
struct Node {
    daemon: Daemon,
    failover: Failover,
    roles: watch::Sender<Roles>,
    token: watch::Sender<Option<String>>,
    admin: AdminServer,
    context: Arc<AdminContext>,
    reloads: Arc<ReloadCounts>,
}

impl Node {
    /// Re-reads the config file and applies all of it, or none of the data plane.
    async fn reload(&mut self) -> Result<String, String> {
        sd_notify::notify("RELOADING=1");
        let result = self.try_reload().await;
        sd_notify::notify("READY=1");
        match &result {
            Ok(summary) => {
                self.reloads
                    .ok
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("configuration reloaded: {summary}");
            }
            Err(e) => {
                self.reloads
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(
                    "configuration reload rejected, still serving the previous one: {e}"
                );
            }
        }
        result
    }

    async fn try_reload(&mut self) -> Result<String, String> {
        let config = config::load(&self.daemon.config_path).map_err(|e| e.to_string())?;
        let token = resolve_token(&config).map_err(|e| e.to_string())?;
        let summary = self.daemon.apply(config).map_err(|e| e.to_string())?;
        let mut notes = Vec::new();
        for error in self.failover.apply(&self.daemon.config().vrrp).await {
            tracing::error!("{error}");
            notes.push(error.to_string());
        }
        let _ = self.roles.send(self.failover.roles());
        let _ = self.token.send(token);
        let admin = self.daemon.config().node.admin;
        if admin != self.admin.addr {
            match AdminServer::start(admin, self.context.clone()).await {
                Ok(server) => {
                    // The old server may be answering this very reload: give its replies a
                    // moment to leave before it stops.
                    let old = std::mem::replace(&mut self.admin, server);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        old.stop();
                    });
                }
                Err(e) => {
                    tracing::error!("{e}; the admin API stays where it was");
                    notes.push(e.to_string());
                }
            }
        }
        let mut text = summary.to_string();
        for note in notes {
            text.push_str("; ");
            text.push_str(&note);
        }
        Ok(text)
    }

    async fn command(&mut self, command: AdminCommand) {
        match command {
            AdminCommand::Reload(reply) => {
                let _ = reply.send(self.reload().await);
            }
            AdminCommand::Swap(reply) => {
                let masters = self
                    .failover
                    .roles()
                    .values()
                    .filter(|r| r.borrow().state == vrrp::State::Master)
                    .count();
                self.failover.relinquish();
                let text = if masters == 0 {
                    "not master of any instance: nothing to hand over".to_owned()
                } else {
                    tracing::info!(
                        instances = masters,
                        "swap: handing the master role to the peer"
                    );
                    format!("handing {masters} instance(s) over to the peer")
                };
                let _ = reply.send(text);
            }
            AdminCommand::SetDrained {
                pool,
                addr,
                drained,
                reply,
            } => {
                let _ = reply.send(self.daemon.set_drained(&pool, addr, drained));
            }
        }
    }
}

/// The admin listener, if one is configured. It runs on a thread and runtime of its own, so a
/// health check is never queued behind the data plane's tasks: a busy node still answers its
/// load balancer in front at once.
struct AdminServer {
    addr: Option<SocketAddr>,
    stop: CancellationToken,
}

impl AdminServer {
    async fn start(
        addr: Option<SocketAddr>,
        context: Arc<AdminContext>,
    ) -> Result<Self, DaemonError> {
        let stop = CancellationToken::new();
        if let Some(addr) = addr {
            let bind_error = |source| DaemonError::AdminBind { addr, source };
            let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(bind_error)?;
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tandem-admin".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(listener) => admin::serve(listener, context, stop).await,
                            Err(e) => tracing::error!(error = %e, "admin API not started"),
                        }
                    });
                })
                .map_err(bind_error)?;
        }
        Ok(Self { addr, stop })
    }

    fn stop(&self) {
        self.stop.cancel();
    }
}

fn resolve_token(config: &Config) -> std::io::Result<Option<String>> {
    config
        .node
        .admin_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()
}

fn listen_list(config: &Config) -> String {
    config
        .services
        .iter()
        .map(|s| format!("{}={}", s.name, s.listen))
        .collect::<Vec<_>>()
        .join(" ")
}
