//! The node's part in active-active (`[[anycast]]`): each announcement's addresses are on a
//! local interface exactly while this node should receive their traffic, and the routing
//! daemon beside it (BIRD's `protocol direct`) exports what is there to the router, which
//! spreads flows over every node announcing by ECMP.
//!
//! Whether to announce is [`decide`]d, purely, from the tracked pools' health and whether an
//! operator or a stop holds the announcement back. Each announcement has a task that follows
//! both and adds or removes its addresses (rtnetlink, the calls VRRP uses for its VIPs),
//! retrying every second while the kernel refuses.
//!
//! Reload by difference: an unchanged table keeps its task (no flap); a changed one is
//! withdrawn and started anew; a removed one is withdrawn.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vrrp::sys::addr::Addresses;
use vrrp::sys::link::Link;

use crate::config::{AnycastConfig, AnycastTrack};
use crate::health::PoolsHealth;

/// How soon a refused address change is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// How long a withdrawal may take (its address removals) before a stop goes on without it.
const WITHDRAW_BOUND: Duration = Duration::from_secs(2);

/// Where one announcement stands, for `/status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncementStatus {
    /// Its addresses are on the interface: the router sends their traffic here.
    pub announced: bool,
    /// Why it is (or is not) announced, in a few words.
    pub why: String,
    /// When `announced` last changed.
    pub since: Instant,
    /// Withdrawals since start.
    pub withdrawals: u64,
    /// The kernel's last refusal of an address change; `None` once one succeeds.
    pub error: Option<String>,
}

/// Each announcement's status channel, by name.
pub type AnnouncementStatuses = BTreeMap<String, watch::Receiver<AnnouncementStatus>>;

/// Whether to announce: `Ok` to announce, `Err(why)` to withdraw.
pub fn decide(
    track: &[AnycastTrack],
    pools: &PoolsHealth,
    held: Option<&str>,
) -> Result<(), String> {
    if let Some(why) = held {
        return Err(why.to_owned());
    }
    for t in track {
        let usable = pools.get(&t.pool).map_or(0, |h| h.usable);
        if usable < t.min_healthy as usize {
            return Err(format!(
                "pool {} has {usable} usable backend(s), fewer than min_healthy {}",
                t.pool, t.min_healthy
            ));
        }
    }
    Ok(())
}

/// The running announcements.
pub struct Announcements {
    running: BTreeMap<String, Running>,
    pools: watch::Receiver<PoolsHealth>,
    /// Held back by an operator (`tandem drain node`): every announcement, present and to come.
    node_drained: bool,
}

struct Running {
    config: AnycastConfig,
    /// `Some(why)`: withdrawn whatever the pools say.
    held: watch::Sender<Option<String>>,
    status: watch::Receiver<AnnouncementStatus>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// No announcement has this name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no [[anycast]] named {0:?}")]
pub struct UnknownAnnouncement(pub String);

impl Announcements {
    /// Starts following `configs`; each is announced once its pools are healthy.
    pub fn start(configs: &[AnycastConfig], pools: watch::Receiver<PoolsHealth>) -> Self {
        let mut this = Self {
            running: BTreeMap::new(),
            pools,
            node_drained: false,
        };
        for config in configs {
            this.start_one(config.clone());
        }
        this
    }

    fn start_one(&mut self, config: AnycastConfig) {
        let held = self
            .node_drained
            .then(|| "the node is drained (tandem drain node)".to_owned());
        let (held_tx, held_rx) = watch::channel(held);
        let (status_tx, status) = watch::channel(AnnouncementStatus {
            announced: false,
            why: "starting".to_owned(),
            since: Instant::now(),
            withdrawals: 0,
            error: None,
        });
        let task = tokio::spawn(follow(
            config.clone(),
            self.pools.clone(),
            held_rx,
            status_tx,
        ));
        self.running.insert(
            config.name.clone(),
            Running {
                config,
                held: held_tx,
                status,
                task,
            },
        );
    }

    /// Applies a reloaded set: unchanged announcements keep running untouched.
    pub async fn apply(&mut self, configs: &[AnycastConfig]) {
        let mut old = std::mem::take(&mut self.running);
        for config in configs {
            match old.remove(&config.name) {
                Some(running) if running.config == *config => {
                    self.running.insert(config.name.clone(), running);
                }
                changed => {
                    if let Some(running) = changed {
                        withdraw_all(vec![running], "its config changed").await;
                    }
                    self.start_one(config.clone());
                }
            }
        }
        withdraw_all(old.into_values().collect(), "removed from the config").await;
    }

    pub fn statuses(&self) -> AnnouncementStatuses {
        self.running
            .iter()
            .map(|(name, r)| (name.clone(), r.status.clone()))
            .collect()
    }

    /// Holds one announcement back (`why`), or lets it follow its pools again (`None`).
    pub fn hold(&self, name: &str, why: Option<String>) -> Result<(), UnknownAnnouncement> {
        let running = self
            .running
            .get(name)
            .ok_or_else(|| UnknownAnnouncement(name.to_owned()))?;
        running.held.send_replace(why);
        Ok(())
    }

    /// Holds every announcement back (`tandem drain node`), or releases them all.
    pub fn hold_node(&mut self, drained: bool) {
        self.node_drained = drained;
        let why = drained.then(|| "the node is drained (tandem drain node)".to_owned());
        for running in self.running.values() {
            running.held.send_replace(why.clone());
        }
    }

    /// The longest `withdraw_grace` of the announcements that are announced now: how long a
    /// stop should keep serving after withdrawing, for the routers to converge.
    pub fn grace(&self) -> Duration {
        self.running
            .values()
            .filter(|r| r.status.borrow().announced)
            .map(|r| r.config.withdraw_grace)
            .max()
            .unwrap_or_default()
    }

    /// Withdraws every announcement (a stop) and ends their tasks.
    pub async fn shutdown(&mut self) {
        let all = std::mem::take(&mut self.running).into_values().collect();
        withdraw_all(all, "the node stops").await;
    }
}

/// Holds each of `running` back for `why`, waits (bounded) until its addresses are gone,
/// then ends its task.
async fn withdraw_all(running: Vec<Running>, why: &str) {
    for r in &running {
        r.held.send_replace(Some(why.to_owned()));
    }
    for r in &running {
        let mut status = r.status.clone();
        let withdrawn = tokio::time::timeout(WITHDRAW_BOUND, status.wait_for(|s| !s.announced));
        if withdrawn.await.is_err() {
            tracing::error!(anycast = %r.config.name, "could not withdraw in time; its addresses may remain on {}", r.config.interface);
        }
    }
}

/// One announcement's task: keeps its addresses on the interface exactly while [`decide`]
/// says so.
async fn follow(
    config: AnycastConfig,
    mut pools: watch::Receiver<PoolsHealth>,
    mut held: watch::Receiver<Option<String>>,
    status: watch::Sender<AnnouncementStatus>,
) {
    let addresses = Addresses::connect();
    // What the interface holds as far as we know; `None` before the first change (an
    // address left by a crash is removed or kept by the first decision).
    let mut on_interface: Option<bool> = None;
    loop {
        let verdict = decide(
            &config.track,
            &pools.borrow_and_update(),
            held.borrow_and_update().as_deref(),
        );
        let want = verdict.is_ok();
        let why = verdict.err().unwrap_or_else(|| "announced".to_owned());
        let mut failed = None;
        if on_interface != Some(want) {
            match &addresses {
                Ok(addresses) => match set(addresses, &config, want).await {
                    Ok(()) => on_interface = Some(want),
                    Err(e) => failed = Some(e),
                },
                Err(e) => failed = Some(format!("netlink: {e}")),
            }
        }
        status.send_if_modified(|s| {
            let announced = on_interface == Some(true);
            let mut changed = s.error != failed || s.why != why;
            if s.announced != announced {
                if s.announced {
                    s.withdrawals += 1;
                }
                s.announced = announced;
                s.since = Instant::now();
                changed = true;
                if announced {
                    tracing::info!(anycast = %config.name, vips = ?config.vips, "announced");
                } else {
                    tracing::warn!(anycast = %config.name, vips = ?config.vips, "withdrawn: {why}");
                }
            }
            if let Some(e) = &failed
                && s.error.as_ref() != Some(e)
            {
                tracing::error!(anycast = %config.name, "cannot change its addresses: {e}; retrying every {RETRY:?}");
            }
            s.error.clone_from(&failed);
            s.why = why;
            changed
        });
        let retry = failed.is_some();
        tokio::select! {
            changed = pools.changed() => if changed.is_err() { return },
            changed = held.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY), if retry => {}
        }
    }
}

/// Puts `config`'s addresses on its interface (`announce`), or takes them off.
async fn set(addresses: &Addresses, config: &AnycastConfig, announce: bool) -> Result<(), String> {
    let link = Link::by_name(&config.interface).map_err(|e| e.to_string())?;
    for &vip in &config.vips {
        let done = if announce {
            addresses.add(link.index, vip, host_prefix(vip)).await
        } else {
            addresses.remove(link.index, vip).await
        };
        done.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::PoolHealth;

    fn pools(usable: usize) -> PoolsHealth {
        [("web".to_owned(), PoolHealth { usable, total: 3 })].into()
    }

    #[test]
    fn announced_while_its_pools_are_healthy_and_nothing_holds_it_back() {
        let track = [AnycastTrack {
            pool: "web".into(),
            min_healthy: 2,
        }];
        assert_eq!(decide(&track, &pools(2), None), Ok(()));
        let starved = decide(&track, &pools(1), None).unwrap_err();
        assert!(starved.contains("fewer than min_healthy 2"), "{starved}");
        assert_eq!(
            decide(&track, &pools(3), Some("drained")),
            Err("drained".to_owned())
        );
        assert!(
            decide(&track, &PoolsHealth::new(), None).is_err(),
            "an unknown pool has no usable backend"
        );
        assert_eq!(
            decide(&[], &PoolsHealth::new(), None),
            Ok(()),
            "nothing tracked"
        );
    }
}
