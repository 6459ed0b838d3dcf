//! One reload: re-read the config file and commit all of it (data plane, health checks,
//! applications, failover instances, announcements, the admin token and the admin and health
//! listeners' addresses), or, when the file or a bind is bad,
//! none of the data plane, leaving the node serving what it served.

use std::net::SocketAddr;
use std::time::Duration;

use super::Node;
use crate::admin::{AdminBindError, AdminServer, Endpoint, ReloadRejected, Reloaded};
use crate::applications;
use crate::config::{self, Config};
use crate::sd_notify;

impl Node {
    /// Re-reads the config file and applies all of it, or none of the data plane.
    pub(super) async fn reload(&mut self) -> Result<Reloaded, ReloadRejected> {
        sd_notify::notify("RELOADING=1");
        let result = self.try_reload().await;
        sd_notify::notify("READY=1");
        self.publish(crate::events::EventKind::Reload {
            ok: result.is_ok(),
            detail: match &result {
                Ok(reloaded) => reloaded.to_string(),
                Err(rejected) => rejected.to_string(),
            },
        });
        match &result {
            Ok(reloaded) => {
                self.reloads
                    .ok
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("configuration reloaded: {reloaded}");
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

    async fn try_reload(&mut self) -> Result<Reloaded, ReloadRejected> {
        let checked = config::load_checked(&self.config_path).map_err(rejected)?;
        for warning in &checked.warnings {
            tracing::warn!("{warning}");
        }
        let config = checked.config;
        let token = resolve_token(&config).map_err(rejected)?;
        let summary = self.data_plane.apply(config).map_err(rejected)?;
        let mut notes = Vec::new();
        let config = self.data_plane.config().clone();
        // Removed applications are stopped here; changed ones take their table at their next
        // start.
        self.apps
            .apply(applications::specs(&config.node.name, &config.apps))
            .await;
        let _ = self.app_statuses.send(self.apps.statuses());
        let failures = applications::failures(&config.apps, &self.apps);
        for error in self.failover.apply(&config.vrrp, &failures).await {
            tracing::error!("{error}");
            notes.push(error.to_string());
        }
        let _ = self
            .instance_statuses
            .send(self.failover.instance_statuses());
        self.follow_roles();
        self.anycast.apply(&config.anycast).await;
        let _ = self.anycast_statuses.send(self.anycast.statuses());
        let _ = self.token.send(token);
        let node = self.data_plane.config().node.clone();
        for (endpoint, addr) in [
            (Endpoint::Admin, node.admin),
            (Endpoint::Healthz, node.healthz_listen),
        ] {
            if let Err(e) = self.move_listener(endpoint, addr).await {
                tracing::error!("{e}; the {} listener stays where it was", endpoint.as_str());
                notes.push(e.to_string());
            }
        }
        Ok(Reloaded {
            summary: summary.to_string(),
            notes,
        })
    }

    /// Starts `endpoint` on `addr` when that is not where it listens, then stops the old one.
    async fn move_listener(
        &mut self,
        endpoint: Endpoint,
        addr: Option<SocketAddr>,
    ) -> Result<(), AdminBindError> {
        let context = self.context.clone();
        let running = match endpoint {
            Endpoint::Admin => &mut self.admin,
            Endpoint::Healthz => &mut self.healthz,
        };
        if addr == running.addr {
            return Ok(());
        }
        let server = AdminServer::start(addr, endpoint, context).await?;
        // The old server may be answering this very reload: give its replies a moment to
        // leave before it stops.
        let old = std::mem::replace(running, server);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            old.stop();
        });
        Ok(())
    }
}

fn rejected(why: impl std::fmt::Display) -> ReloadRejected {
    ReloadRejected {
        why: why.to_string(),
    }
}

pub(super) fn resolve_token(config: &Config) -> std::io::Result<Option<String>> {
    config
        .node
        .admin_token
        .as_ref()
        .map(|t| t.resolve())
        .transpose()
}
