//! The node's event log: what changed and why, in order, for `GET /events` (Server-Sent
//! Events) and the operator console.
//!
//! One job: number events, keep the latest few for whoever connects next, and hand each to
//! every subscriber. Who produces them is elsewhere: [`follow`] turns the node's status
//! channels (VRRP roles, backend health, applications, announcements) into events, and the
//! main loop publishes its own (reloads, drains, swaps). How they leave over HTTP is
//! `admin::stream`'s.
//!
//! Memory is bounded whatever the subscribers do: the log keeps [`RECENT`] events, and the
//! channel to subscribers holds [`CHANNEL`]; a subscriber that falls further behind is told so
//! (and the HTTP side then drops it) rather than buffered for.

pub mod follow;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for a subscriber that connects (or reconnects) later.
pub const RECENT: usize = 256;
/// Events in flight to subscribers; one that lags further is cut off.
pub const CHANNEL: usize = 1024;

/// What happened, with what an operator needs to understand it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A VRRP instance changed state.
    Role {
        instance: String,
        from: String,
        to: String,
        /// What made it change, in a sentence.
        why: String,
    },
    /// A backend's health checks took it up or down.
    Health {
        pool: String,
        backend: SocketAddr,
        up: bool,
        /// The check's verdict (the error when down).
        reason: String,
    },
    /// An operator drained a backend, or enabled it again.
    Drain {
        pool: String,
        backend: SocketAddr,
        drained: bool,
    },
    /// An operator asked this node to hand its master role over.
    Swap {
        /// What the node did, as the API answered.
        result: String,
    },
    /// A reload took the config file, or refused it.
    Reload {
        ok: bool,
        /// What changed, or why it was refused.
        detail: String,
    },
    /// An application changed state (started, failed, restarted, stopped).
    App {
        name: String,
        from: String,
        to: String,
        restarts_total: u64,
        /// The latest reason it was unwell, if any.
        error: Option<String>,
    },
    /// An announcement was made or withdrawn.
    Announcement {
        name: String,
        announced: bool,
        why: String,
    },
}

impl EventKind {
    /// The name of the kind: the SSE `event:` field, and `kind` in the JSON.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Role { .. } => "role",
            EventKind::Health { .. } => "health",
            EventKind::Drain { .. } => "drain",
            EventKind::Swap { .. } => "swap",
            EventKind::Reload { .. } => "reload",
            EventKind::App { .. } => "app",
            EventKind::Announcement { .. } => "announcement",
        }
    }
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Its place in the log, from 1: later events have larger ids.
    pub id: u64,
    /// When, in milliseconds since the Unix epoch (for people; the order is `id`'s).
    pub unix_ms: u64,
    /// The node it happened on.
    pub node: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The log; shared by producers and subscribers.
#[derive(Debug)]
pub struct Events {
    /// Under one lock with the send, so ids reach every subscriber in order and a new
    /// subscriber's replay and live events neither overlap nor leave a gap.
    log: Mutex<Log>,
    sender: broadcast::Sender<Arc<Event>>,
}

#[derive(Debug)]
struct Log {
    next_id: u64,
    recent: VecDeque<Arc<Event>>,
}

/// A new subscriber's start: the events it missed, then the live ones.
pub struct Subscription {
    /// Kept events after the one it asked to resume from (all kept ones when it did not ask).
    pub replay: Vec<Arc<Event>>,
    /// Every event published after the replay.
    pub live: broadcast::Receiver<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        Self {
            log: Mutex::new(Log {
                next_id: 1,
                recent: VecDeque::with_capacity(RECENT),
            }),
            sender: broadcast::channel(CHANNEL).0,
        }
    }

    /// Adds an event on `node`; returns its id.
    pub fn publish(&self, node: &str, kind: EventKind) -> u64 {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let id = log.next_id;
        log.next_id += 1;
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let event = Arc::new(Event {
            id,
            unix_ms,
            node: node.to_owned(),
            kind,
        });
        if log.recent.len() == RECENT {
            log.recent.pop_front();
        }
        log.recent.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.sender.send(event);
        id
    }

    /// Subscribes, resuming after event `after` (an SSE client's `Last-Event-ID`) or, without
    /// one, from the oldest event kept.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let after = after.unwrap_or(0);
        let replay = log
            .recent
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        Subscription {
            replay,
            live: self.sender.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reload(n: u64) -> EventKind {
        EventKind::Reload {
            ok: true,
            detail: format!("reload {n}"),
        }
    }

    #[test]
    fn events_are_numbered_in_order_and_reach_subscribers_in_order() {
        let events = Events::new();
        let mut sub = events.subscribe(None);
        assert!(sub.replay.is_empty());
        for n in 1..=5 {
            assert_eq!(events.publish("lb1", reload(n)), n);
        }
        for n in 1..=5 {
            let e = sub.live.try_recv().unwrap();
            assert_eq!((e.id, &e.kind, e.node.as_str()), (n, &reload(n), "lb1"));
        }
        assert!(sub.live.try_recv().is_err());
    }

    #[test]
    fn a_late_subscriber_gets_what_it_missed_then_the_live_events_without_a_gap() {
        let events = Events::new();
        for n in 1..=3 {
            events.publish("lb1", reload(n));
        }
        let mut sub = events.subscribe(Some(1));
        let replayed: Vec<u64> = sub.replay.iter().map(|e| e.id).collect();
        assert_eq!(replayed, [2, 3]);
        events.publish("lb1", reload(4));
        assert_eq!(sub.live.try_recv().unwrap().id, 4);
        assert_eq!(events.subscribe(None).replay.len(), 4);
        assert!(events.subscribe(Some(4)).replay.is_empty());
    }

    #[test]
    fn only_the_latest_events_are_kept_and_a_lagging_subscriber_is_told() {
        let events = Events::new();
        let mut sub = events.subscribe(None);
        let total = (CHANNEL + RECENT) as u64;
        for n in 1..=total {
            events.publish("lb1", reload(n));
        }
        let kept = events.subscribe(None).replay;
        assert_eq!(kept.len(), RECENT);
        assert_eq!(kept[0].id, total - RECENT as u64 + 1);
        assert!(matches!(
            sub.live.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn the_json_names_the_kind_beside_the_fields() {
        let events = Events::new();
        events.publish(
            "lb1",
            EventKind::Health {
                pool: "web".into(),
                backend: "127.0.0.1:80".parse().unwrap(),
                up: false,
                reason: "connection refused".into(),
            },
        );
        let e = events.subscribe(None).replay.remove(0);
        let v = serde_json::to_value(&*e).unwrap();
        assert_eq!(v["kind"], "health");
        assert_eq!(v["backend"], "127.0.0.1:80");
        assert_eq!(v["node"], "lb1");
        assert_eq!(v["id"], 1);
        assert_eq!(e.kind.name(), "health");
    }
}
