//! The `/status` document: the contract between the node's admin API and whoever reads it (the
//! `tandem status` CLI, scripts, monitoring). The server fills these structs and serializes
//! them; the CLI deserializes the body into the same structs. A field renamed or retyped on one
//! side is then a compile error on the other, not a `-` in the CLI's table.
//!
//! The wire format is the one the document had when it was built as untyped JSON, and scripts
//! read it, so it stays exactly that:
//! - field names and nesting as they are;
//! - `null` where a value is unknown (`Option` fields are never skipped), and the few keys an
//!   instance that is not running lacks are absent, as before ([`VrrpInstance::NotRunning`]);
//! - the keys of every object in alphabetical order, as the untyped document (a sorted map)
//!   printed them: fields are declared in that order, and a test checks it.
//!
//! Reading is strict: a document missing a field is not a status document, and the CLI then
//! shows the body as it came. A field added later should therefore be `#[serde(default)]`, so
//! that a newer client still reads what an older node sends.
//!
//! Values the server's own enums name (VRRP states, backend roles, I/O kinds, the healthz
//! verdict) travel as those names, strings, so that a client keeps reading a document from a
//! newer server that has grown a value.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// What `GET /status` returns: the node's roles, services, pools and how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Every configured announcement (`[[anycast]]`); absent from a node older than them.
    #[serde(default)]
    pub anycast: Vec<Announcement>,
    /// Every configured application (`[[app]]`); absent from a node older than them.
    #[serde(default)]
    pub apps: Vec<App>,
    /// How each data thread moves bytes, one entry per thread.
    pub data_threads: Vec<DataThread>,
    /// Backend up/down transitions since start.
    pub health_transitions: u64,
    /// What `/healthz` says now: `primary`, `secondary`, `starting`, `fault` or `stopping`.
    pub healthz: String,
    /// How the data threads move bytes, all told: `io_uring`, `epoll` or `mixed`.
    pub io: String,
    /// The node's name.
    pub node: String,
    pub pools: Vec<Pool>,
    pub reloads: Reloads,
    pub services: Vec<Service>,
    /// How many data threads run.
    pub threads: usize,
    /// Every configured VRRP instance, running or not.
    pub vrrp: Vec<VrrpInstance>,
}

/// One announcement (`[[anycast]]`) and whether the router sends its traffic here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// Its addresses are on the interface, so the routing daemon exports them.
    pub announced: bool,
    /// The kernel's last refusal of an address change, `null` once one succeeded.
    pub error: Option<String>,
    pub name: String,
    pub seconds_in_state: f64,
    pub vips: Vec<IpAddr>,
    /// Why it is (or is not) announced.
    pub why: String,
    /// Withdrawals since the node started.
    pub withdrawals: u64,
}

/// One application and where it stands on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// An operator disabled it (`tandem disable app`).
    pub disabled: bool,
    /// The instance whose master runs it (`run_on = "primary"`); `null` for `run_on = "all"`.
    pub instance: Option<String>,
    /// The latest reason it was unwell (a check's error, how it ended, why it did not start).
    pub last_error: Option<String>,
    pub name: String,
    /// The program's pid while it runs.
    pub pid: Option<u32>,
    /// Restarts counted in the current `restart.within` window.
    pub restarts: usize,
    /// Restarts since the node started.
    pub restarts_total: u64,
    /// `primary` or `all`.
    pub run_on: String,
    pub seconds_in_state: f64,
    /// `stopped`, `starting`, `running`, `restarting` or `failed`.
    pub state: String,
}

/// One data thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataThread {
    /// The ring it uses (`io_uring_…`) or `epoll`.
    pub io: String,
    /// Its index, from 0.
    pub thread: usize,
    /// What was tried and measured at start, in a sentence.
    pub why: String,
}

/// Reload outcomes since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloads {
    pub failed: u64,
    pub ok: u64,
}

/// A VRRP instance of the config. The JSON has no tag but `running`: an instance the node has
/// not started (yet, or because it could not) has only `name`, `running` and `state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
// A few hundred bytes per instance in a document built once per request: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum VrrpInstance {
    /// Tried first when reading: a document lacking its fields is [`Self::NotRunning`].
    /// Boxed: it is many times the size of the other.
    Running(Box<RunningInstance>),
    NotRunning(IdleInstance),
}

impl VrrpInstance {
    pub fn name(&self) -> &str {
        match self {
            Self::Running(i) => &i.name,
            Self::NotRunning(i) => &i.name,
        }
    }

    pub fn state(&self) -> &str {
        match self {
            Self::Running(i) => &i.state,
            Self::NotRunning(i) => &i.state,
        }
    }
}

/// A running VRRP instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningInstance {
    /// Packets dropped, by reason.
    pub adverts_dropped: BTreeMap<String, u64>,
    pub adverts_received: u64,
    pub adverts_sent: u64,
    /// The priority after tracking.
    pub effective_priority: u8,
    /// Why the host holds the instance in FAULT, as a sentence: a refused socket or address
    /// change (no CAP_NET_RAW / CAP_NET_ADMIN), or a VIP that could not be added or removed;
    /// `null` otherwise. Absent from a node older than it.
    #[serde(default)]
    pub host_fault: Option<String>,
    pub interface: String,
    /// The master as last seen (this node when master); `null` when none was seen.
    pub master: Option<IpAddr>,
    /// `vip` or `cloud`.
    pub mode: String,
    pub name: String,
    /// The state before the last transition (`INIT` before the first); absent from a node
    /// older than it.
    #[serde(default)]
    pub previous_state: String,
    /// The configured priority.
    pub priority: u8,
    /// Always `true`.
    pub running: bool,
    pub seconds_in_state: f64,
    /// The address adverts are sent from; `null` when there is none yet.
    pub source: Option<IpAddr>,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
    pub transitions: u64,
    /// `address/prefix`.
    pub vips: Vec<String>,
    pub vrid: u8,
    /// What made the last transition, in a sentence; `null` before the first. Absent from a
    /// node older than it.
    #[serde(default)]
    pub why: Option<String>,
    /// As backup: the shortest Master_Down margin of the last 30 to 60 s, in milliseconds (how
    /// much of Master_Down_Interval was left when the master's next advert arrived); `null`
    /// when none was measured then. Absent from a node older than it.
    #[serde(default)]
    pub worst_margin_ms: Option<f64>,
    /// As master: the latest an advert left after it fell due in the last 30 to 60 s, in
    /// milliseconds; `null` when none was sent then. Absent from a node older than it.
    #[serde(default)]
    pub worst_send_lateness_ms: Option<f64>,
}

/// A VRRP instance the node does not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleInstance {
    pub name: String,
    /// Always `false`.
    pub running: bool,
    /// Always `INIT`.
    pub state: String,
}

impl IdleInstance {
    pub fn new(name: String) -> Self {
        Self {
            name,
            running: false,
            state: "INIT".to_owned(),
        }
    }
}

/// A service: a listener and the pool it sends to. A UDP service counts flows where a TCP
/// service counts connections (`accepted`, `active`, `refused`, `idle_timeouts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Client connections (UDP: flows) accepted since start.
    pub accepted: u64,
    /// Client connections (UDP: flows) open now.
    pub active: u64,
    pub balance: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// UDP: datagrams from clients passed to backends.
    #[serde(default)]
    pub datagrams_in: u64,
    /// UDP: datagrams from backends passed to clients.
    #[serde(default)]
    pub datagrams_out: u64,
    /// UDP: datagrams dropped, by reason (`no_backend`, `max_flows`, `draining`,
    /// `local_resources`, `buffer_full`, `send_failed`, `backend_refused`, `truncated`);
    /// empty for TCP.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Connections closed because no byte moved either way within `first_byte_timeout`.
    #[serde(default)]
    pub first_byte_timeouts: u64,
    /// UDP: flows ended, by why (`idle`, `answered`, `evicted`, `backend_down`, `refused`,
    /// `stopped`); empty for TCP.
    #[serde(default)]
    pub flow_ends: BTreeMap<String, u64>,
    pub idle_timeouts: u64,
    pub listen: SocketAddr,
    pub name: String,
    pub pool: String,
    /// `tcp` or `udp`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Clients (UDP: flows' first datagrams) refused for want of a usable backend.
    pub refused: u64,
    /// Clients reset at accept: their address held `max_conns_per_source` connections.
    #[serde(default)]
    pub rejected_per_source: u64,
    pub retries: u64,
}

fn tcp() -> String {
    "tcp".to_owned()
}

/// A pool and its backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub backends: Vec<Backend>,
    pub name: String,
    pub total: usize,
    /// Backends that may take traffic now.
    pub usable: usize,
}

/// One backend of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub active: u64,
    pub addr: SocketAddr,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Failed connects (UDP: ICMP port unreachable on a flow).
    pub connect_failures: u64,
    /// UDP datagrams sent to it.
    #[serde(default)]
    pub datagrams_in: u64,
    /// UDP datagrams it sent back.
    #[serde(default)]
    pub datagrams_out: u64,
    /// An operator drained it: it gets no new connection.
    pub drained: bool,
    /// Skipped now after failed connects (a backend without health checks; see the pool's
    /// `eject_after`).
    #[serde(default)]
    pub ejected: bool,
    /// `null` for a backend without health checks (or not probed by the monitor yet).
    pub health: Option<Health>,
    /// `primary` or `backup`.
    pub role: String,
    /// Connections established since start.
    pub total: u64,
    pub up: bool,
    pub weight: u32,
}

/// What the health checks of one backend found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Probes run.
    pub checks: u64,
    /// The most recent failure, kept after recovery.
    pub last_error: Option<String>,
    /// `null` if it never went up or down.
    pub seconds_since_change: Option<f64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A document with every shape: a running and an idle instance, `null`s and values, a
    /// backend with and one without health checks.
    pub(crate) fn sample() -> Status {
        let backend = |addr: &str, health| Backend {
            active: 1,
            addr: addr.parse().unwrap(),
            bytes_in: 10,
            bytes_out: 20,
            connect_failures: 0,
            datagrams_in: 0,
            datagrams_out: 0,
            drained: false,
            ejected: false,
            health,
            role: "primary".into(),
            total: 7,
            up: true,
            weight: 1,
        };
        Status {
            anycast: vec![Announcement {
                announced: false,
                error: None,
                name: "front".into(),
                seconds_in_state: 2.0,
                vips: vec!["192.0.2.10".parse().unwrap()],
                why: "pool web has 0 usable backend(s), fewer than min_healthy 1".into(),
                withdrawals: 1,
            }],
            apps: vec![App {
                disabled: false,
                instance: Some("v4".into()),
                last_error: Some("the program ended (exit status: 1)".into()),
                name: "db".into(),
                pid: None,
                restarts: 2,
                restarts_total: 5,
                run_on: "primary".into(),
                seconds_in_state: 0.5,
                state: "restarting".into(),
            }],
            data_threads: vec![DataThread {
                io: "epoll".into(),
                thread: 0,
                why: "io = \"epoll\"".into(),
            }],
            health_transitions: 2,
            healthz: "secondary".into(),
            io: "epoll".into(),
            node: "lb1".into(),
            pools: vec![Pool {
                backends: vec![
                    backend(
                        "10.0.0.1:80",
                        Some(Health {
                            checks: 3,
                            last_error: Some("connection refused".into()),
                            seconds_since_change: None,
                        }),
                    ),
                    backend("[::1]:80", None),
                ],
                name: "web".into(),
                total: 2,
                usable: 1,
            }],
            reloads: Reloads { failed: 1, ok: 0 },
            services: vec![Service {
                accepted: 5,
                active: 1,
                balance: "round_robin".into(),
                bytes_in: 10,
                bytes_out: 20,
                datagrams_in: 0,
                datagrams_out: 0,
                drops: BTreeMap::new(),
                first_byte_timeouts: 2,
                flow_ends: BTreeMap::new(),
                idle_timeouts: 0,
                listen: "0.0.0.0:8080".parse().unwrap(),
                name: "svc".into(),
                pool: "web".into(),
                protocol: "tcp".into(),
                refused: 0,
                rejected_per_source: 3,
                retries: 0,
            }],
            threads: 1,
            vrrp: vec![
                VrrpInstance::Running(Box::new(RunningInstance {
                    adverts_dropped: BTreeMap::from([("vrid".to_owned(), 4)]),
                    adverts_received: 9,
                    adverts_sent: 0,
                    effective_priority: 90,
                    host_fault: None,
                    interface: "eth0".into(),
                    master: Some("10.0.0.2".parse().unwrap()),
                    mode: "vip".into(),
                    name: "v4".into(),
                    previous_state: "MASTER".into(),
                    priority: 100,
                    running: true,
                    seconds_in_state: 1.5,
                    source: None,
                    state: "BACKUP".into(),
                    transitions: 1,
                    vips: vec!["10.0.0.100/24".into()],
                    vrid: 51,
                    why: Some("heard a master with a higher priority".into()),
                    worst_margin_ms: Some(25.5),
                    worst_send_lateness_ms: None,
                })),
                VrrpInstance::NotRunning(IdleInstance::new("v6".into())),
            ],
        }
    }

    #[test]
    fn the_document_reads_back_as_what_was_sent() {
        let sent = sample();
        let text = serde_json::to_string_pretty(&sent).unwrap();
        let read: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(read, sent);
    }

    /// The untyped document printed every object's keys sorted; so must this one.
    #[test]
    fn keys_are_in_alphabetical_order_as_before() {
        let typed = serde_json::to_string_pretty(&sample()).unwrap();
        let untyped =
            serde_json::to_string_pretty(&serde_json::to_value(sample()).unwrap()).unwrap();
        assert_eq!(typed, untyped);
    }

    /// A node from before the timing fields sends a running instance without them.
    #[test]
    fn a_running_instance_without_the_worst_timings_still_reads_as_running() {
        let mut v = serde_json::to_value(sample()).unwrap();
        let instance = v["vrrp"][0].as_object_mut().unwrap();
        instance.remove("worst_margin_ms");
        instance.remove("worst_send_lateness_ms");
        let read: Status = serde_json::from_value(v).unwrap();
        let VrrpInstance::Running(instance) = &read.vrrp[0] else {
            panic!("{:?}", read.vrrp[0]);
        };
        assert_eq!(instance.worst_margin_ms, None);
        assert_eq!(instance.worst_send_lateness_ms, None);
    }

    #[test]
    fn unknowns_are_null_and_an_idle_instance_has_three_keys() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["apps"][0]["pid"], serde_json::Value::Null);
        assert_eq!(v["apps"][0]["state"], "restarting");
        assert_eq!(v["vrrp"][0]["source"], serde_json::Value::Null);
        assert_eq!(v["vrrp"][0]["master"], "10.0.0.2");
        assert_eq!(
            v["vrrp"][1],
            serde_json::json!({ "name": "v6", "running": false, "state": "INIT" })
        );
        let backends = &v["pools"][0]["backends"];
        assert_eq!(backends[1]["health"], serde_json::Value::Null);
        assert_eq!(backends[1]["addr"], "[::1]:80");
        assert_eq!(
            backends[0]["health"]["seconds_since_change"],
            serde_json::Value::Null
        );
        assert_eq!(v["services"][0]["listen"], "0.0.0.0:8080");
    }
}
