//! The admin API's mutations, carried out by the main loop, which owns what they change.

use super::Node;
use crate::admin::{AdminCommand, BackendSet, Swapped};

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
                    .instance_statuses()
                    .values()
                    .filter(|r| r.borrow().state == vrrp::State::Master)
                    .count();
                self.failover.relinquish();
                let swapped = if masters == 0 {
                    Swapped::NothingToHandOver
                } else {
                    tracing::info!(
                        instances = masters,
                        "swap: handing the master role to the peer"
                    );
                    Swapped::HandingOver { instances: masters }
                };
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
                let _ = reply.send(done);
            }
        }
    }
}
