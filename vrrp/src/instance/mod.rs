//! One virtual router on a real link: a tokio task (`driver`) that drives a [`Machine`], and
//! the handle that starts, commands and stops it.
//!
//! The task sleeps until the machine's next deadline, an advert, a command or a link change;
//! feeds each to the machine; and carries out the actions: adverts out of the raw socket, VIPs
//! added and removed with netlink, gratuitous ARP / NA repeated after a takeover. Its state is
//! published on a watch channel ([`Instance::status`]) for the daemon's status page, metrics,
//! notify scripts and cloud-mode health endpoint.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod driver;

use driver::{Driver, Sockets};

use crate::accept::Acceptor;
use crate::host_fault::{HostFault, Trouble};
use crate::machine::{Machine, MachineConfig, State, Why};
use crate::packet::Advert;
use crate::sys::addr::Addresses;
use crate::sys::link::Link;
use crate::sys::socket::{GROUP_V4, GROUP_V6};
use crate::timing::{Timing, Warnings};

/// Everything one instance needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// For logs.
    pub name: String,
    pub interface: String,
    /// The election. Its `primary_address` is where adverts come from; an unspecified one
    /// (`0.0.0.0` or `::`) stands for the interface's primary address of that family, looked
    /// up at start (for IPv6, its link-local address).
    pub election: MachineConfig,
    /// Addresses and prefix lengths the master holds.
    pub vips: Vec<(IpAddr, u8)>,
    /// Add and remove `vips` (false: cloud mode, the role only drives `/healthz`).
    pub manage_vips: bool,
    /// Unicast peers; empty: multicast.
    pub peers: Vec<IpAddr>,
    /// Further links whose loss means FAULT (the instance's own link always counts).
    pub track_interfaces: Vec<String>,
    pub garp_repeat: u32,
    pub garp_interval: Duration,
    pub garp_refresh: Option<Duration>,
}

/// What the instance publishes after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub priority: u8,
    pub effective_priority: u8,
    /// The master as last seen (ourselves when master).
    pub master: Option<IpAddr>,
    /// Our advert source address.
    pub source: Option<IpAddr>,
    pub since: Instant,
    pub transitions: u64,
    /// The state before the last transition (`INIT` before the first).
    pub previous: State,
    /// What made the last transition; `None` before the first.
    pub why: Option<Why>,
    /// The instance's own link, or a tracked one, is down (FAULT of its own making, as
    /// opposed to a [`Command::ExternalFault`]).
    pub link_fault: bool,
    /// Why the host holds the instance in FAULT (a refused socket or address change, a VIP that
    /// could not be added or removed), as a sentence; `None` otherwise. See
    /// [`crate::host_fault`].
    pub host_fault: Option<String>,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Dropped packets by reason ([`crate::packet::DecodeError::reason`], or `peer`/`version`).
    pub dropped: BTreeMap<&'static str, u64>,
    /// How close the election runs to its deadlines: send lateness as master, Master_Down
    /// margins as backup (see [`crate::timing`]).
    pub timing: Timing,
}

/// One change of state, as published to [`Instance::transitions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub why: Why,
}

/// Transitions buffered per subscriber; far more than any burst of role changes.
const TRANSITIONS_BUFFER: usize = 64;

/// Commands from the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Tracking changed: the priority delta now in force (see [`crate::Input::SetPriorityDelta`]).
    PriorityDelta(i32),
    /// An external fault source (e.g. a gateway check) is down or up again.
    ExternalFault(bool),
    /// Hand the master role over (admin swap).
    Relinquish,
    /// Try again at once what the host refused or failed, whatever the backoff (a reload: the
    /// operator may have fixed the cause). Nothing happens without a host fault.
    RetryHost,
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("interface {0}: {1}")]
    Interface(String, #[source] io::Error),
    #[error("{0}")]
    Config(#[from] crate::machine::ConfigError),
    #[error("no {family} address on {interface} to send adverts from; set `source`")]
    NoSource {
        family: &'static str,
        interface: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> StartError {
    move |source| StartError::Io { what, source }
}

/// Real-time priority asked for the election thread; 0: none.
static REALTIME_PRIORITY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Asks for the election thread to run under real-time scheduling at `priority` (1 to 99; 0:
/// normal scheduling), as keepalived's `vrrp_rt_priority`. Read when the thread starts, with the
/// first instance: a thread already running keeps its scheduling. Whether it was granted is
/// logged.
pub fn set_election_priority(priority: u8) {
    REALTIME_PRIORITY.store(priority, std::sync::atomic::Ordering::Relaxed);
}

/// The thread every instance's driver runs on (`tandem-vrrp`), with a runtime of its own: its
/// timers and sockets are served however busy the node's other threads are (the data plane,
/// health checks, reloads, the admin API), so adverts leave on time and arrive to be read on
/// time. keepalived runs its VRRP in a process of its own for the same reason. Started on first
/// use; it lives as long as the process.
fn election_thread() -> io::Result<tokio::runtime::Handle> {
    let priority = REALTIME_PRIORITY.load(std::sync::atomic::Ordering::Relaxed);
    static THREAD: std::sync::Mutex<Option<tokio::runtime::Handle>> = std::sync::Mutex::new(None);
    let mut thread = THREAD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = thread.as_ref() {
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("tandem-vrrp".into())
        .spawn(move || {
            if priority > 0 {
                match syscall::thread::set_realtime_priority(priority) {
                    Ok(()) => tracing::info!(
                        priority,
                        "VRRP election thread runs at real-time priority {priority} (SCHED_RR)"
                    ),
                    Err(e) => tracing::warn!(
                        priority,
                        error = %e,
                        "VRRP election thread could not get real-time priority {priority}; it \
                         runs at normal priority"
                    ),
                }
            }
            runtime.block_on(std::future::pending::<()>())
        })?;
    *thread = Some(handle.clone());
    Ok(handle)
}

/// A running instance. Stop it with [`Instance::shutdown`], which sends the priority-0 advert,
/// removes the VIPs (RFC 5798 §6.4.3 (605)) and waits for that to be done; dropping the handle
/// starts the same resignation without waiting for it.
pub struct Instance {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    transitions: broadcast::Sender<Transition>,
    /// The receiver created before the task started: it holds every transition from the first.
    first_transitions: std::sync::Mutex<Option<broadcast::Receiver<Transition>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Instance {
    /// Opens the sockets, clears VIPs left over from an earlier run, and starts the election,
    /// all on the election thread (see [`election_thread`]).
    pub async fn start(config: InstanceConfig) -> Result<Self, StartError> {
        let thread = election_thread().map_err(io_err("starting the election thread"))?;
        match thread.spawn(Self::start_here(config)).await {
            Ok(started) => started,
            Err(e) => Err(StartError::Io {
                what: "the election thread",
                source: io::Error::other(e.to_string()),
            }),
        }
    }

    /// [`Instance::start`] on the runtime it is called on: the sockets and the driver belong to
    /// that runtime's reactor.
    async fn start_here(config: InstanceConfig) -> Result<Self, StartError> {
        let link = Link::by_name(&config.interface)
            .map_err(|e| StartError::Interface(config.interface.clone(), e))?;
        let addresses = Addresses::connect().map_err(io_err("netlink"))?;
        let wanted = config.election.primary_address;
        let v6 = wanted.is_ipv6();
        // A VIP still on the link from an earlier run would answer beside the real master, and could
        // even be taken for the advert source below: remove leftovers first. The kernel checks
        // the permission (CAP_NET_ADMIN) whether or not one is there, so a refusal shows here,
        // before the election starts: the instance starts in FAULT instead of claiming the
        // VIPs to fail (see `crate::host_fault`).
        let mut refused = None;
        if config.manage_vips {
            for (ip, prefix) in &config.vips {
                match addresses.clear(link.index, *ip, *prefix).await {
                    Ok(()) => {}
                    Err(e) if driver::denied(&e) => {
                        refused = Some((Trouble::AddressesDenied, e));
                        break;
                    }
                    Err(e) => return Err(io_err("removing a leftover VIP")(e)),
                }
            }
        }

        let source = if wanted.is_unspecified() {
            addresses
                .primary(link.index, v6)
                .await
                .map_err(io_err("reading interface addresses"))?
                .ok_or_else(|| StartError::NoSource {
                    family: if v6 { "IPv6 link-local" } else { "IPv4" },
                    interface: config.interface.clone(),
                })?
        } else {
            wanted
        };
        let machine = Machine::new(MachineConfig {
            primary_address: source,
            ..config.election.clone()
        })?;
        let multicast = config.peers.is_empty();
        // A refused socket (no CAP_NET_RAW) is a FAULT, like a refused address; the socket is
        // opened when a retry finds it allowed.
        let (socket, announcer) = match Sockets::open(&link, source, multicast, config.manage_vips)
        {
            Ok((socket, announcer)) => (Some(socket), announcer),
            Err((_, e)) if driver::denied(&e) => {
                refused = Some((Trouble::SocketsDenied, e));
                (None, None)
            }
            Err((what, e)) => return Err(io_err(what)(e)),
        };
        let now = Instant::now();
        let status = Status {
            state: State::Initialize,
            priority: config.election.priority,
            effective_priority: machine.effective_priority(),
            master: None,
            source: Some(source),
            since: now,
            transitions: 0,
            previous: State::Initialize,
            why: None,
            link_fault: false,
            host_fault: None,
            adverts_sent: 0,
            adverts_received: 0,
            dropped: BTreeMap::new(),
            timing: Timing::default(),
        };
        let (status_tx, status_rx) = watch::channel(status);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let (transitions, first_transitions) = broadcast::channel(TRANSITIONS_BUFFER);
        let acceptor = Acceptor {
            own: source,
            peers: config.peers.clone(),
            vrid: config.election.vrid,
            version: config.election.version,
        };
        let destinations = if multicast {
            match source {
                IpAddr::V4(_) => vec![IpAddr::V4(GROUP_V4)],
                IpAddr::V6(_) => vec![IpAddr::V6(GROUP_V6)],
            }
        } else {
            config.peers.clone()
        };
        let advert = Advert {
            version: config.election.version,
            vrid: config.election.vrid,
            priority: config.election.priority,
            interval: config.election.advert_interval,
            addresses: config.vips.iter().map(|(ip, _)| *ip).collect(),
        };
        let mut driver = Driver {
            acceptor,
            destinations,
            advert,
            send_buf: Vec::new(),
            // More than any one input yields (at most five: a takeover and the advert after it).
            actions: Vec::with_capacity(8),
            last_arrival: now,
            arrival: None,
            advert_due: None,
            low_margin_warnings: Warnings::new(driver::LOW_MARGIN_WARN_EVERY),
            config,
            link,
            source,
            multicast,
            machine,
            socket,
            addresses,
            announcer,
            status: status_tx,
            transitions: transitions.clone(),
            announcing: None,
            last_drop_log: BTreeMap::new(),
            link_fault: false,
            external_fault: false,
            host: HostFault::default(),
            fault_pending: false,
        };
        if let Some((trouble, e)) = refused {
            driver.host_failed(trouble, &e);
        }
        let task = tokio::spawn(driver.run(commands_rx, stop_rx));
        Ok(Self {
            commands,
            status: status_rx,
            transitions,
            first_transitions: std::sync::Mutex::new(Some(first_transitions)),
            stop: Some(stop),
            task,
        })
    }

    /// The current status; `changed()` on the receiver wakes on every change.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Every state change, in order (unlike [`Instance::status`], which may skip a state that
    /// lasted less than a read). The first call gets them all from the start; later calls get
    /// those from the call on.
    pub fn transitions(&self) -> broadcast::Receiver<Transition> {
        let first = self
            .first_transitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        first.unwrap_or_else(|| self.transitions.subscribe())
    }

    /// A sender for commands, for tasks that outlive a borrow of the instance.
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    pub fn command(&self, command: Command) {
        // Fails only when the task has ended (after shutdown): nothing left to command.
        let _ = self.commands.send(command);
    }

    /// Stops the instance: a master resigns with a priority-0 advert and removes its VIPs.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
