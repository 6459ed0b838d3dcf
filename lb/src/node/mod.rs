//! The running node: start-up, the main loop, reload and stop.
//!
//! [`run`] is what `tandem run` does: it turns SIGHUP, SIGTERM and SIGINT into [`Trigger`]s
//! and hands them to [`serve`], the main loop. Tests call [`serve`] with a channel of their
//! own to drive a whole node inside their process.
//!
//! The main loop owns everything a reload or an admin mutation changes: the data plane
//! ([`DataPlane`]), the failover instances, the admin server and the token. Other tasks
//! only read (through watch channels) or ask (through the admin command channel), so a change
//! never races another.

mod commands;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::sync::{mpsc, watch};

use crate::admin::{AdminBindError, AdminContext, AdminServer, InstanceStatuses, ReloadCounts};
use crate::config::{Config, ConfigErrors};
use crate::data_plane::{BindError, DataPlane};
use crate::data_threads::{DataThreads, DataThreadsError};
use crate::failover::Failover;
use crate::sd_notify;

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

/// What makes the main loop reload or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Re-read the config file and apply it (SIGHUP).
    Reload,
    /// Stop accepting, drain and return. The name says what asked, for the log.
    Stop(&'static str),
}

/// Runs a node until SIGTERM or SIGINT, reloading on SIGHUP (or `POST /reload`), then drains
/// and returns.
pub async fn run(config: Config, config_path: &Path) -> Result<(), NodeError> {
    // Installed before anything else: SIGHUP's default action would kill the process.
    let triggers = signals().map_err(NodeError::Signals)?;
    serve(config, config_path, triggers).await
}

/// Forwards SIGHUP, SIGTERM and SIGINT as triggers, for as long as the receiver lives.
fn signals() -> std::io::Result<mpsc::Receiver<Trigger>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let trigger = tokio::select! {
                _ = hup.recv() => Trigger::Reload,
                _ = term.recv() => Trigger::Stop("SIGTERM"),
                _ = int.recv() => Trigger::Stop("SIGINT"),
            };
            if tx.send(trigger).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Starts a node for `config` (read from `config_path`, which reloads re-read) and runs it
/// until a [`Trigger::Stop`] arrives or every sender of `triggers` is gone; then drains and
/// returns. Must run on a runtime from [`crate::data_threads::runtime_for_one_thread`].
pub async fn serve(
    config: Config,
    config_path: &Path,
    mut triggers: mpsc::Receiver<Trigger>,
) -> Result<(), NodeError> {
    let token = reload::resolve_token(&config).map_err(NodeError::AdminToken)?;
    let data_threads = if config.node.threads > 1 {
        DataThreads::start(config.node.threads, config.node.io)?
    } else {
        DataThreads::here(config.node.io).await?
    };
    let threads_io = data_threads.threads_io().to_vec();
    let data_plane = DataPlane::start(config, data_threads.runtimes().to_vec())?;
    // The admin API first (its bind is the last thing that can fail), then VRRP: a node that
    // cannot start never holds a VIP it would not give back.
    let (statuses, statuses_rx) = watch::channel(InstanceStatuses::new());
    let (token, token_rx) = watch::channel(token);
    let (commands_tx, mut commands) = mpsc::channel(16);
    let reloads = Arc::new(ReloadCounts::default());
    let context = Arc::new(AdminContext {
        config: data_plane.running_config(),
        registry: data_plane.registry(),
        monitor: data_plane.monitor().clone(),
        pools: data_plane.pools_health(),
        instances: statuses_rx,
        token: token_rx,
        commands: commands_tx,
        reloads: reloads.clone(),
        data_threads: threads_io,
        stopping: AtomicBool::new(false),
    });
    let admin = AdminServer::start(data_plane.config().node.admin, context.clone()).await?;
    let failover = match Failover::start(&data_plane.config().vrrp, data_plane.pools_health()).await
    {
        Ok(f) => f,
        Err(e) => {
            admin.stop();
            return Err(e.into());
        }
    };
    let _ = statuses.send(failover.statuses());
    let mut node = Node {
        config_path: config_path.to_owned(),
        data_plane,
        failover,
        statuses,
        token,
        admin,
        context,
        reloads,
    };
    let config = node.data_plane.config();
    tracing::info!(config = %config_path.display(), threads = config.node.threads,
        io = data_threads.io().as_str(), admin = ?config.node.admin,
        "{}; listening on {}", config.summary(), listen_list(config));
    sd_notify::notify("READY=1");

    let stop_reason = loop {
        tokio::select! {
            trigger = triggers.recv() => match trigger {
                Some(Trigger::Reload) => {
                    let _ = node.reload().await;
                }
                Some(Trigger::Stop(reason)) => break reason,
                None => break "its triggers ended",
            },
            Some(command) = commands.recv() => node.command(command).await,
        }
    };
    sd_notify::notify("STOPPING=1");
    node.context.stopping.store(true, Relaxed);
    // Resign first: the peer takes the VIPs over (after its Skew_Time) while we drain.
    node.failover.shutdown().await;
    let _ = node.statuses.send(node.failover.statuses());
    let deadline = node.data_plane.config().node.drain_timeout;
    tracing::info!("{stop_reason}: no longer accepting");
    let left = node.data_plane.shutdown(deadline).await;
    // What the drain left open is dropped with the data threads' runtimes, as resets.
    data_threads.stop();
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
    /// Where reloads read the config from.
    config_path: PathBuf,
    data_plane: DataPlane,
    failover: Failover,
    statuses: watch::Sender<InstanceStatuses>,
    token: watch::Sender<Option<String>>,
    admin: AdminServer,
    context: Arc<AdminContext>,
    reloads: Arc<ReloadCounts>,
}

fn listen_list(config: &Config) -> String {
    config
        .services
        .iter()
        .map(|s| format!("{}={}", s.name, s.listen))
        .collect::<Vec<_>>()
        .join(" ")
}
