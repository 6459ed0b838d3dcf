//! The admin API's mutations, carried out by the main loop, which owns what they change.

use std::time::Duration;

use tokio::time::Instant;

use super::Node;
use crate::admin::{AdminCommand, Announced, BackendSet, Swapped};
use crate::applications;
use crate::events::EventKind;

/// How long a swap waits, beyond the longest `stop_timeout`, for the primary's applications
/// to stop before it hands the role over anyway.
const SWAP_STOP_MARGIN: Duration = Duration::from_secs(5);

/// How long a swap holds the primary's applications back after handing over, waiting for
/// the instances to leave MASTER (they do at once, on the relinquish).
const SWAP_HOLD_AFTER: Duration = Duration::from_secs(2);

impl Node {
    /// Carries out one admin mutation and replies to it.
    pub(super) async fn command(&mut self, command: AdminCommand) {
        match command {
            AdminCommand::Reload(reply) => {
                let _ = reply.send(self.reload().await);
            }
            AdminCommand::Swap(reply) => {
                let swapped = self.swap().await;
                self.publish(EventKind::Swap {
                    result: match swapped {
                        Swapped::NothingToHandOver => "not master of any instance".to_owned(),
                        Swapped::HandingOver { instances } => {
                            format!("handing {instances} instance(s) over to the peer")
                        }
                    },
                });
                let _ = reply.send(swapped);
            }
            AdminCommand::SetDrained {
                pool,
                addr,
                drained,
                reply,
            } => {
                let done = self
                    .data_plane
                    .set_drained(&pool, addr, drained)
                    .map(|()| BackendSet { drained });
                if done.is_ok() {
                    self.publish(EventKind::Drain {
                        pool,
                        backend: addr,
                        drained,
                    });
                }
                let _ = reply.send(done);
            }
            AdminCommand::App { name, ask, reply } => {
                let _ = reply.send(self.apps.ask(&name, ask).map(|()| ask));
            }
            AdminCommand::Announce {
                name,
                withdraw,
                reply,
            } => {
                let done = match name {
                    None => {
                        self.anycast.hold_node(withdraw);
                        tracing::warn!(drained = withdraw, "node drain set by an operator");
                        Ok(self.anycast.statuses().len())
                    }
                    Some(name) => {
                        let why = withdraw.then(|| "withdrawn by an operator".to_owned());
                        self.anycast.hold(&name, why).map(|()| 1)
                    }
                };
                let _ = reply.send(done.map(|count| Announced {
                    withdrawn: withdraw,
                    count,
                }));
            }
        }
    }

    /// Hands the master role to the peer. The primary's applications stop here first, so the
    /// peer's copy never starts while ours still runs (a database that must run once).
    async fn swap(&mut self) -> Swapped {
        let statuses = self.failover.instance_statuses();
        let masters: Vec<&String> = statuses
            .iter()
            .filter(|(_, r)| r.borrow().state == vrrp::State::Master)
            .map(|(name, _)| name)
            .collect();
        if masters.is_empty() {
            self.failover.relinquish();
            return Swapped::NothingToHandOver;
        }
        let config = self.data_plane.config();
        let bound: Vec<&crate::config::AppConfig> = config
            .apps
            .iter()
            .filter(|a| {
                applications::instance_of(a).is_some_and(|i| masters.iter().any(|m| *m == i))
            })
            .collect();
        let began = Instant::now();
        if !bound.is_empty() {
            self.swap_hold.send_replace(true);
            let longest = bound
                .iter()
                .map(|a| a.stop_timeout)
                .max()
                .unwrap_or_default();
            let app_statuses = self.app_statuses.borrow().clone();
            let stopped = async {
                for app in &bound {
                    if let Some(status) = app_statuses.get(&app.name) {
                        let mut status = status.clone();
                        let _ = status
                            .wait_for(|s| {
                                matches!(s.state, apps::State::Stopped | apps::State::Failed)
                            })
                            .await;
                    }
                }
            };
            if tokio::time::timeout(longest + SWAP_STOP_MARGIN, stopped)
                .await
                .is_err()
            {
                tracing::warn!(
                    "swap: the applications did not all stop in time; handing over anyway"
                );
            }
        }
        tracing::info!(
            instances = masters.len(),
            applications_stopped_ms = began.elapsed().as_millis() as u64,
            "swap: handing the master role to the peer"
        );
        self.failover.relinquish();
        let swapped = Swapped::HandingOver {
            instances: masters.len(),
        };
        if !bound.is_empty() {
            // Held until the instances have left MASTER, so the applications do not start
            // again here in between.
            let left = async {
                for (_, status) in statuses.iter().filter(|(n, _)| masters.contains(n)) {
                    let mut status = status.clone();
                    let _ = status.wait_for(|s| s.state != vrrp::State::Master).await;
                }
            };
            let _ = tokio::time::timeout(SWAP_HOLD_AFTER, left).await;
            self.swap_hold.send_replace(false);
        }
        swapped
    }
}
