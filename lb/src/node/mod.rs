//! The running node: start-up, the main loop, reload and stop.
//!
//! [`run`] is what `tandem run` does: SIGHUP, SIGTERM and SIGINT pull its [`Triggers`], and
//! [`serve`], the main loop, follows them. Tests call [`serve`] with triggers of their own to
//! drive a whole node inside their process.
//!
//! The main loop owns everything a reload or an admin mutation changes: the data plane
//! ([`DataPlane`]), the failover instances, the applications, the announcements, the admin
//! server and the token. Other tasks only read (through watch channels) or ask (through the admin command
//! channel), so a change never races another.

mod commands;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::sync::{Notify, mpsc, watch};

use crate::admin::{
    AdminBindError, AdminContext, AdminServer, Endpoint, InstanceStatuses, ReloadCounts,
};
use crate::anycast::{AnnouncementStatuses, Announcements};
use crate::applications::{self, AppStatuses};
use crate::config::{Config, ConfigErrors};
use crate::data_plane::{BindError, DataPlane};
use crate::data_threads::{DataThreads, DataThreadsError};
use crate::failover::Failover;
use crate::sd_notify;
use crate::tasks::Tasks;

/// Why a node did not start, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Failover(#[from] vrrp::instances::InstanceError),
    #[error("{0}")]
    AdminToken(std::io::Error),
    #[error(transparent)]
    DataThreads(#[from] DataThreadsError),
    #[error(transparent)]
    AdminBind(#[from] AdminBindError),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

/// What makes the main loop reload or stop: signals in the daemon, calls in a test. Clones
/// share it.
#[derive(Clone, Default)]
pub struct Triggers {
    reload: Arc<Notify>,
    stop: Arc<watch::Sender<Option<&'static str>>>,
}

impl Triggers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a reload (SIGHUP). Several asked for while one runs make one more: the next
    /// reads the file as it is then.
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// Asks the node to stop accepting, drain and return (SIGTERM, SIGINT); `reason` goes to
    /// the log. It is taken before any reload still asked for.
    pub fn stop(&self, reason: &'static str) {
        self.stop.send_replace(Some(reason));
    }
}

/// Runs a node until SIGTERM or SIGINT, reloading on SIGHUP (or `POST /reload`), then drains
/// and returns.
pub async fn run(config: Config, config_path: &Path) -> Result<(), NodeError> {
    // Installed before anything else: SIGHUP's default action would kill the process.
    let triggers = signals().map_err(NodeError::Signals)?;
    serve(config, config_path, triggers).await
}

/// Triggers pulled by SIGHUP, SIGTERM and SIGINT.
fn signals() -> std::io::Result<Triggers> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let triggers = Triggers::new();
    let pull = triggers.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => pull.reload(),
                _ = term.recv() => pull.stop("SIGTERM"),
                _ = int.recv() => pull.stop("SIGINT"),
            }
        }
    });
    Ok(triggers)
}

/// Starts a node for `config` (read from `config_path`, which reloads re-read) and runs it
/// until `triggers` asks it to stop; then drains and returns. Must run on a runtime from [`crate::data_threads::runtime_for_one_thread`].
pub async fn serve(
    config: Config,
    config_path: &Path,
    triggers: Triggers,
) -> Result<(), NodeError> {
    let token = reload::resolve_token(&config).map_err(NodeError::AdminToken)?;
    if config.node.lock_memory {
        lock_memory();
    }
    let data_threads = if config.node.threads > 1 {
        DataThreads::start(config.node.threads, config.node.io)?
    } else {
        DataThreads::here(config.node.io).await?
    };
    let threads_io = data_threads.threads_io().to_vec();
    let data_plane = DataPlane::start(config, data_threads.runtimes().to_vec())?;
    // The admin API first (its bind is the last thing that can fail), then VRRP: a node that
    // cannot start never holds a VIP it would not give back.
    let (instance_statuses, statuses_rx) = watch::channel(InstanceStatuses::new());
    // Applications are supervised from here on, but none runs before the election says so
    // (a farm application: once the node is up).
    let mut apps = apps::Apps::new();
    let node_name = data_plane.config().node.name.clone();
    apps.apply(applications::specs(&node_name, &data_plane.config().apps))
        .await;
    let (app_statuses, app_statuses_rx) = watch::channel(apps.statuses());
    let (anycast_statuses, anycast_statuses_rx) = watch::channel(AnnouncementStatuses::new());
    let (token, token_rx) = watch::channel(token);
    let (commands_tx, mut commands) = mpsc::channel(16);
    let reloads = Arc::new(ReloadCounts::default());
    let context = Arc::new(AdminContext {
        config: data_plane.running_config(),
        registry: data_plane.registry(),
        monitor: data_plane.monitor().clone(),
        pools: data_plane.pools_health(),
        instance_statuses: statuses_rx,
        apps: app_statuses_rx,
        anycast: anycast_statuses_rx,
        token: token_rx,
        commands: commands_tx,
        reloads: reloads.clone(),
        data_threads: threads_io,
        stopping: AtomicBool::new(false),
        listeners: Default::default(),
        events: Arc::new(crate::events::Events::new()),
        event_streams: Default::default(),
        peers: Default::default(),
    });
    let node_config = &data_plane.config().node;
    let admin = AdminServer::start(node_config.admin, Endpoint::Admin, context.clone()).await?;
    let healthz = match AdminServer::start(
        node_config.healthz_listen,
        Endpoint::Healthz,
        context.clone(),
    )
    .await
    {
        Ok(server) => server,
        Err(e) => {
            admin.stop();
            return Err(e.into());
        }
    };
    vrrp::instance::set_election_priority(data_plane.config().node.realtime_priority);
    let config = data_plane.config();
    let failures = applications::failures(&config.apps, &apps);
    let failover = match Failover::start(&config.vrrp, data_plane.pools_health(), &failures).await {
        Ok(f) => f,
        Err(e) => {
            admin.stop();
            healthz.stop();
            apps.stop(|_| true).await;
            return Err(e.into());
        }
    };
    let _ = instance_statuses.send(failover.instance_statuses());
    // Last: the node announces only once everything else serves.
    let anycast = Announcements::start(&config.anycast, data_plane.pools_health());
    let _ = anycast_statuses.send(anycast.statuses());
    let event_sources = crate::events::follow::start(
        &context.events,
        &context.config,
        &context.monitor,
        &context.instance_statuses,
        &context.apps,
        &context.anycast,
    );
    let mut node = Node {
        config_path: config_path.to_owned(),
        data_plane,
        failover,
        instance_statuses,
        apps,
        app_statuses,
        roles: Tasks::new(),
        swap_hold: watch::channel(false).0,
        anycast,
        anycast_statuses,
        token,
        admin,
        healthz,
        context,
        reloads,
        _event_sources: event_sources,
    };
    node.follow_roles();
    let config = node.data_plane.config();
    tracing::info!(config = %config_path.display(), threads = config.node.threads,
        io = data_threads.io().as_str(), admin = ?config.node.admin,
        healthz_listen = ?config.node.healthz_listen,
        "{}; listening on {}", config.summary(), listen_list(config));
    sd_notify::notify("READY=1");

    let mut stop = triggers.stop.subscribe();
    let stop_reason = loop {
        tokio::select! {
            // A stop goes before reloads and commands waiting beside it.
            biased;
            asked = stop.wait_for(Option::is_some) => {
                break asked.ok().and_then(|reason| *reason).unwrap_or("stop");
            }
            () = triggers.reload.notified() => {
                let _ = node.reload().await;
            }
            Some(command) = commands.recv() => node.command(command).await,
        }
    };
    sd_notify::notify("STOPPING=1");
    node.context.stopping.store(true, Relaxed);
    // Withdraw first, and keep serving what still arrives while the routers converge.
    let grace = node.anycast.grace();
    node.anycast.shutdown().await;
    let _ = node.anycast_statuses.send(node.anycast.statuses());
    if !grace.is_zero() {
        tracing::info!(
            ?grace,
            "{stop_reason}: announcements withdrawn; serving while the routers converge"
        );
        tokio::time::sleep(grace).await;
    }
    // Resign first: the peer takes the VIPs over (after its Skew_Time) while we drain.
    node.failover.shutdown().await;
    let _ = node
        .instance_statuses
        .send(node.failover.instance_statuses());
    // Then the primary's applications, which the peer now starts; farm applications serve
    // until the drain is over.
    let config = node.data_plane.config();
    node.apps
        .stop(|name| {
            config
                .apps
                .iter()
                .any(|a| a.name == name && applications::instance_of(a).is_some())
        })
        .await;
    let deadline = node.data_plane.config().node.drain_timeout;
    tracing::info!("{stop_reason}: no longer accepting");
    let left = node.data_plane.shutdown(deadline).await;
    // What the drain left open is dropped with the data threads' runtimes, as resets.
    data_threads.stop();
    node.apps.stop(|_| true).await;
    node.admin.stop();
    node.healthz.stop();
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
    /// Where reloads read the config from.
    config_path: PathBuf,
    data_plane: DataPlane,
    failover: Failover,
    instance_statuses: watch::Sender<InstanceStatuses>,
    apps: apps::Apps,
    app_statuses: watch::Sender<AppStatuses>,
    /// Keep each application's role input current; replaced with the instances.
    roles: Tasks,
    /// Set while a swap stops the primary's applications before it hands the role over.
    swap_hold: watch::Sender<bool>,
    anycast: Announcements,
    anycast_statuses: watch::Sender<AnnouncementStatuses>,
    token: watch::Sender<Option<String>>,
    admin: AdminServer,
    /// The health listener (`[node] healthz_listen`), if any.
    healthz: AdminServer,
    context: Arc<AdminContext>,
    reloads: Arc<ReloadCounts>,
    /// Turn the status channels into events for `/events`; they follow reloads themselves.
    _event_sources: Tasks,
}

impl Node {
    /// Adds an event of the main loop's own (a reload, a drain, a swap) to the log.
    fn publish(&self, kind: crate::events::EventKind) {
        let node = &self.data_plane.config().node.name;
        self.context.events.publish(node, kind);
    }
}

impl Node {
    /// Points each application's role input at the instances now running.
    fn follow_roles(&mut self) {
        let config = self.data_plane.config();
        let (tasks, roles) = applications::roles(
            &config.apps,
            &self.failover.instance_statuses(),
            &self.swap_hold.subscribe(),
        );
        self.roles = tasks;
        self.apps.follow(roles);
    }
}

/// `[node] lock_memory`: every page of the process, now and to come, in RAM (as keepalived
/// locks its VRRP process), before the threads start, so that theirs are locked as well.
/// Whether it was granted is logged; a node that could not lock runs on.
fn lock_memory() {
    match syscall::memory::lock_all() {
        Ok(()) => tracing::info!("memory locked: no page of the process will be swapped out"),
        Err(e) => tracing::warn!(
            error = %e,
            "lock_memory: could not lock the process's memory; it runs unlocked"
        ),
    }
}

fn listen_list(config: &Config) -> String {
    config
        .services
        .iter()
        .map(|s| format!("{}={}", s.name, s.listen))
        .collect::<Vec<_>>()
        .join(" ")
}
