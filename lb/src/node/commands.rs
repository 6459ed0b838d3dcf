//! The admin API's mutations, carried out by the main loop, which owns what they change.

use super::Node;
use crate::admin::AdminCommand;

impl Node {
    /// Carries out one admin mutation and replies to it.
    pub(super) async fn command(&mut self, command: AdminCommand) {
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
                let _ = reply.send(self.data_plane.set_drained(&pool, addr, drained));
            }
        }
    }
}
