//! Turns the node's status channels into events: VRRP role changes, backend health
//! transitions, application state changes, announcements made or withdrawn.
//!
//! Each source is already a channel the node keeps current (the admin API reads the same
//! ones), so following them adds no hook to the parts that own the state. The maps of
//! per-item channels are replaced on reload; a follower re-subscribes to the new set and
//! compares with the last value it saw under each name, so a reload that keeps an item says
//! nothing, and only real changes become events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use healthcheck::monitor::Monitor;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::{EventKind, Events};
use crate::config::Config;
use crate::tasks::Tasks;

/// Where the node name comes from (it may change on reload).
type ConfigRx = watch::Receiver<Arc<Config>>;

/// Starts the followers of every source; they stop when the returned tasks drop.
pub fn start(
    events: &Arc<Events>,
    config: &ConfigRx,
    monitor: &Monitor,
    instances: &watch::Receiver<BTreeMap<String, watch::Receiver<vrrp::instance::Status>>>,
    apps: &watch::Receiver<crate::applications::AppStatuses>,
    announcements: &watch::Receiver<crate::anycast::AnnouncementStatuses>,
) -> Tasks {
    let mut tasks = Tasks::new();
    tasks.push(health(events.clone(), config.clone(), monitor.subscribe()));
    tasks.push(map(
        events.clone(),
        config.clone(),
        instances.clone(),
        role_change,
    ));
    tasks.push(map(
        events.clone(),
        config.clone(),
        apps.clone(),
        app_change,
    ));
    tasks.push(map(
        events.clone(),
        config.clone(),
        announcements.clone(),
        announcement_change,
    ));
    tasks
}

fn node_name(config: &ConfigRx) -> String {
    config.borrow().node.name.clone()
}

/// A backend's health transitions, as the monitor publishes them.
fn health(
    events: Arc<Events>,
    config: ConfigRx,
    mut transitions: broadcast::Receiver<healthcheck::monitor::Transition>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match transitions.recv().await {
                Ok(t) => {
                    let kind = EventKind::Health {
                        pool: t.id.group.clone(),
                        backend: t.id.addr,
                        up: t.up,
                        reason: t.reason.clone(),
                    };
                    events.publish(&node_name(&config), kind);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "event log: health transitions missed");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// What changed between two values of one item, if worth an event; `before` is `None` the
/// first time the item is seen.
type Diff<T> = fn(&str, Option<&T>, &T) -> Option<EventKind>;

/// Follows a map of per-item channels (replaced on reload), publishing what `diff` makes of
/// each item's changes.
fn map<T>(
    events: Arc<Events>,
    config: ConfigRx,
    mut items: watch::Receiver<BTreeMap<String, watch::Receiver<T>>>,
    diff: Diff<T>,
) -> JoinHandle<()>
where
    T: Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut seen: HashMap<String, T> = HashMap::new();
        loop {
            // One forwarder per item, all into one channel, so `seen` has one owner.
            let (tx, mut rx) = mpsc::channel::<(String, T)>(64);
            let mut forwarders = Tasks::new();
            for (name, status) in items.borrow_and_update().iter() {
                forwarders.push(forward(name.clone(), status.clone(), tx.clone()));
            }
            drop(tx);
            loop {
                tokio::select! {
                    changed = items.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    Some((name, value)) = rx.recv() => {
                        if let Some(kind) = diff(&name, seen.get(&name), &value) {
                            events.publish(&node_name(&config), kind);
                        }
                        seen.insert(name, value);
                    }
                }
            }
        }
    })
}

/// Sends `status`'s current value under `name`, then every change of it.
fn forward<T>(
    name: String,
    mut status: watch::Receiver<T>,
    tx: mpsc::Sender<(String, T)>,
) -> JoinHandle<()>
where
    T: Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        loop {
            let value = status.borrow_and_update().clone();
            if tx.send((name.clone(), value)).await.is_err() {
                return;
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    })
}

/// A VRRP instance that went through a transition since last seen.
fn role_change(
    name: &str,
    before: Option<&vrrp::instance::Status>,
    now: &vrrp::instance::Status,
) -> Option<EventKind> {
    let counted = before.map_or(0, |b| b.transitions);
    // A restarted instance (a reload that changed it) counts from zero again.
    let new = now.transitions > counted || (now.transitions > 0 && now.transitions < counted);
    let fresh = before.is_some_and(|b| b.state != now.state);
    (new || fresh).then(|| EventKind::Role {
        instance: name.to_owned(),
        from: now.previous.as_str().to_owned(),
        to: now.state.as_str().to_owned(),
        why: now.why.map_or("", |w| w.describe()).to_owned(),
    })
}

/// An application whose state changed.
fn app_change(
    name: &str,
    before: Option<&apps::AppStatus>,
    now: &apps::AppStatus,
) -> Option<EventKind> {
    let before = before?;
    (before.state != now.state).then(|| EventKind::App {
        name: name.to_owned(),
        from: before.state.as_str().to_owned(),
        to: now.state.as_str().to_owned(),
        restarts_total: now.restarts_total,
        error: now.last_error.clone(),
    })
}

/// An announcement made or withdrawn.
fn announcement_change(
    name: &str,
    before: Option<&crate::anycast::AnnouncementStatus>,
    now: &crate::anycast::AnnouncementStatus,
) -> Option<EventKind> {
    let before = before?;
    (before.announced != now.announced).then(|| EventKind::Announcement {
        name: name.to_owned(),
        announced: now.announced,
        why: now.why.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;
    use vrrp::{State, Why};

    fn status(state: State, transitions: u64) -> vrrp::instance::Status {
        vrrp::instance::Status {
            state,
            priority: 100,
            effective_priority: 100,
            master: None,
            source: None,
            since: Instant::now(),
            transitions,
            previous: State::Backup,
            why: Some(Why::MasterDown),
            link_fault: false,
            host_fault: None,
            adverts_sent: 0,
            adverts_received: 0,
            dropped: BTreeMap::new(),
            timing: Default::default(),
        }
    }

    #[test]
    fn a_role_event_is_made_for_each_transition_seen_and_not_for_a_kept_instance() {
        let master = status(State::Master, 2);
        let EventKind::Role { from, to, why, .. } =
            role_change("front", Some(&status(State::Backup, 1)), &master).unwrap()
        else {
            panic!()
        };
        assert_eq!((from.as_str(), to.as_str()), ("BACKUP", "MASTER"));
        assert_eq!(why, Why::MasterDown.describe());
        assert_eq!(role_change("front", Some(&master), &master), None);
        // Seen for the first time with transitions behind it (the node just started).
        assert!(role_change("front", None, &master).is_some());
        assert_eq!(
            role_change("front", None, &status(State::Initialize, 0)),
            None
        );
    }

    #[tokio::test]
    async fn a_map_follower_reports_changes_and_stays_quiet_across_a_reload_that_keeps_an_item() {
        let events = Arc::new(Events::new());
        let source = "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n\
                      [[pool]]\nname = \"web\"\nbackends = [{ addr = \"10.0.0.1:80\" }]\n";
        let config = crate::config::parse(source, "tandem.toml").unwrap();
        let (_config_tx, config) = watch::channel(Arc::new(config));
        let (item, item_rx) = watch::channel(status(State::Initialize, 0));
        let (map_tx, map_rx) = watch::channel(BTreeMap::from([("front".to_owned(), item_rx)]));
        let mut sub = events.subscribe(None);
        let _task = map(events.clone(), config, map_rx, role_change);
        tokio::task::yield_now().await;
        item.send_replace(status(State::Master, 1));
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), sub.live.recv())
            .await
            .unwrap()
            .unwrap();
        let EventKind::Role { to, .. } = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(to, "MASTER");
        // A reload hands over a new channel for the same instance, unchanged.
        let (_again, again_rx) = watch::channel(status(State::Master, 1));
        map_tx.send_replace(BTreeMap::from([("front".to_owned(), again_rx)]));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(sub.live.try_recv().is_err(), "nothing changed");
    }
}
