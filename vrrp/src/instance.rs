//! One virtual router on a real link: the tokio task that drives a [`Machine`].
//!
//! It sleeps until the machine's next deadline, an advert, a command or a link change; feeds
//! each to the machine; and carries out the actions: adverts out of the raw socket, VIPs added
//! and removed with netlink, gratuitous ARP / NA repeated after a takeover. Its state is
//! published on a watch channel ([`Instance::status`]) for the daemon's status page, metrics,
//! notify scripts and cloud-mode health endpoint.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::accept::{Acceptor, Received, Verdict};
use crate::machine::{Action, Input, Machine, MachineConfig, State};
use crate::packet::{self, Advert, Version};
use crate::sys::addr::Addresses;
use crate::sys::announce::Announcer;
use crate::sys::link::{self, Link};
use crate::sys::socket::{AdvertSocketV4, AdvertSocketV6, GROUP_V4, GROUP_V6};

/// How often links (own and tracked) are looked at. Cheap: a sysfs read each.
const LINK_POLL: Duration = Duration::from_millis(200);
/// Drops of the same reason logged at most this often (the counter still counts each).
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Largest IPv4 datagram we expect: header with options plus 255 addresses.
const RECV_BUF: usize = 8192;
/// Pause before receiving again after a receive error.
const RECV_RETRY: Duration = Duration::from_millis(100);

/// Everything one instance needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// For logs.
    pub name: String,
    pub interface: String,
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Addresses and prefix lengths the master holds.
    pub vips: Vec<(IpAddr, u8)>,
    /// Add and remove `vips` (false: cloud mode, the role only drives `/healthz`).
    pub manage_vips: bool,
    /// Unicast peers; empty: multicast.
    pub peers: Vec<IpAddr>,
    /// Source of adverts; `None`: the interface's primary address.
    pub source: Option<IpAddr>,
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
    /// The instance's own link, or a tracked one, is down (FAULT of its own making, as
    /// opposed to a [`Command::ExternalFault`]).
    pub link_fault: bool,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Dropped packets by reason ([`packet::DecodeError::reason`], or `vrid`/`version`).
    pub dropped: BTreeMap<&'static str, u64>,
}

/// One change of state, as published to [`Instance::transitions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// Transitions buffered per subscriber; far more than any burst of role changes.
const TRANSITIONS_BUFFER: usize = 64;

/// Commands from the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Tracking changed: the priority delta now in force (see [`Input::SetPriorityDelta`]).
    PriorityDelta(i32),
    /// An external fault source (e.g. a gateway check) is down or up again.
    ExternalFault(bool),
    /// Hand the master role over (admin swap).
    Relinquish,
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
    /// Opens the sockets, clears VIPs left over from an earlier run, and starts the election.
    pub async fn start(config: InstanceConfig) -> Result<Self, StartError> {
        let link = Link::by_name(&config.interface)
            .map_err(|e| StartError::Interface(config.interface.clone(), e))?;
        let addresses = Addresses::connect().map_err(io_err("netlink"))?;
        let v6 = config
            .vips
            .first()
            .map(|(ip, _)| ip.is_ipv6())
            .or(config.source.map(|s| s.is_ipv6()))
            .or(config.peers.first().map(IpAddr::is_ipv6))
            .unwrap_or(false);
        // A VIP still on the link from an earlier run would answer beside the real master, and could
        // even be taken for the advert source below: remove leftovers first.
        if config.manage_vips {
            for (ip, _) in &config.vips {
                addresses
                    .remove(link.index, *ip)
                    .await
                    .map_err(io_err("removing a leftover VIP"))?;
            }
        }

        let source = match config.source {
            Some(s) => s,
            None => addresses
                .primary(link.index, v6)
                .await
                .map_err(io_err("reading interface addresses"))?
                .ok_or_else(|| StartError::NoSource {
                    family: if v6 { "IPv6 link-local" } else { "IPv4" },
                    interface: config.interface.clone(),
                })?,
        };
        let machine = Machine::new(MachineConfig {
            version: config.version,
            vrid: config.vrid,
            priority: config.priority,
            advert_interval: config.advert_interval,
            preempt: config.preempt,
            preempt_delay: config.preempt_delay,
            accept_mode: true,
            primary_address: source,
        })?;
        let multicast = config.peers.is_empty();
        let socket = match source {
            IpAddr::V4(v4) => AdvertSocketV4::open(&link, v4, multicast).map(Sockets::V4),
            IpAddr::V6(v6) => AdvertSocketV6::open(&link, v6, multicast).map(Sockets::V6),
        }
        .map_err(io_err("opening the VRRP socket"))?;
        let announcer = if config.manage_vips {
            let announcer = Announcer::open(&link, !v6, v6);
            Some(announcer.map_err(io_err("opening the ARP / NA socket"))?)
        } else {
            None
        };
        let now = Instant::now();
        let status = Status {
            state: State::Initialize,
            priority: config.priority,
            effective_priority: machine.effective_priority(),
            master: None,
            source: Some(source),
            since: now,
            transitions: 0,
            link_fault: false,
            adverts_sent: 0,
            adverts_received: 0,
            dropped: BTreeMap::new(),
        };
        let (status_tx, status_rx) = watch::channel(status);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let (transitions, first_transitions) = broadcast::channel(TRANSITIONS_BUFFER);
        let acceptor = Acceptor {
            own: source,
            peers: config.peers.clone(),
            vrid: config.vrid,
            version: config.version,
        };
        let driver = Driver {
            acceptor,
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
            vip_fault: false,
            vip_fault_pending: false,
            vips_stuck: false,
        };
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

/// The advert sockets of one family.
enum Sockets {
    V4(AdvertSocketV4),
    V6(AdvertSocketV6),
}

/// What one receive produced, before any check.
enum Datagram {
    /// A whole IPv4 datagram of this length, header included.
    V4(usize),
    /// A VRRP message over IPv6, with what the kernel told of its header.
    V6(crate::sys::socket::ReceivedV6),
}

impl Sockets {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        match self {
            Sockets::V4(s) => s.recv(buf).await.map(Datagram::V4),
            Sockets::V6(s) => s.recv(buf).await.map(Datagram::V6),
        }
    }

    fn send(&self, message: &[u8], dst: IpAddr) -> io::Result<()> {
        match (self, dst) {
            (Sockets::V4(s), IpAddr::V4(d)) => s.send(message, d),
            (Sockets::V6(s), IpAddr::V6(d)) => s.send(message, d),
            _ => Err(io::Error::other("peer of the other address family")),
        }
    }
}

struct Driver {
    config: InstanceConfig,
    link: Link,
    source: IpAddr,
    multicast: bool,
    machine: Machine,
    /// Which received messages are adverts for us.
    acceptor: Acceptor,
    socket: Sockets,
    addresses: Addresses,
    announcer: Option<Announcer>,
    status: watch::Sender<Status>,
    transitions: broadcast::Sender<Transition>,
    /// The task repeating gratuitous ARPs after a takeover; aborted when we stop being master.
    announcing: Option<JoinHandle<()>>,
    last_drop_log: BTreeMap<&'static str, Instant>,
    link_fault: bool,
    external_fault: bool,
    /// A VIP could not be added (we must not claim to be master without it) or removed (we
    /// must not hold it as backup): FAULT until a retry succeeds.
    vip_fault: bool,
    /// The machine must hear `Fault(true)` once the current actions are done.
    vip_fault_pending: bool,
    /// VIPs that could not be removed, retried on every link poll.
    vips_stuck: bool,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut buf = vec![0u8; RECV_BUF];
        let mut links = tokio::time::interval(LINK_POLL);
        links.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.link_fault = !self.links_up();
        if self.link_fault {
            self.status.send_modify(|s| s.link_fault = true);
            self.feed(Input::Fault(true)).await;
        }
        self.feed(Input::Startup).await;
        let mut refresh = self.config.garp_refresh.map(|every| {
            let mut t = tokio::time::interval_at(Instant::now() + every, every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        let mut recv_resume: Option<Instant> = None;
        loop {
            let deadline = self.machine.next_timeout();
            tokio::select! {
                _ = &mut stop => break,
                () = sleep_until(deadline) => self.feed(Input::Timeout).await,
                received = self.socket.recv(&mut buf), if recv_resume.is_none() => match received {
                    Ok(datagram) => {
                        if let Some(input) = self.accept(&buf, datagram) {
                            self.feed(input).await;
                        }
                    }
                    Err(e) => {
                        // Counted and logged at most every DROP_LOG_EVERY. Receiving pauses
                        // briefly so a persistent error cannot spin, while the timers keep
                        // running: a master goes on sending adverts.
                        self.drop_packet("receive_error", &format!("receive failed: {e}"));
                        recv_resume = Some(Instant::now() + RECV_RETRY);
                    }
                },
                () = sleep_until(recv_resume), if recv_resume.is_some() => {
                    recv_resume = None;
                }
                Some(command) = commands.recv() => {
                    let input = match command {
                        Command::PriorityDelta(delta) => Input::SetPriorityDelta(delta),
                        Command::ExternalFault(down) => {
                            self.external_fault = down;
                            Input::Fault(self.faulty())
                        }
                        Command::Relinquish => Input::Relinquish,
                    };
                    self.feed(input).await;
                }
                _ = links.tick() => {
                    let fault = !self.links_up();
                    if fault != self.link_fault {
                        self.link_fault = fault;
                        self.status.send_modify(|s| s.link_fault = fault);
                        tracing::warn!(instance = %self.config.name, up = !fault, "tracked link changed");
                        self.feed(Input::Fault(self.faulty())).await;
                    }
                    if self.vips_stuck {
                        self.remove_vips().await;
                    }
                    // After a VIP failure, try again: leaving FAULT may make us master, which
                    // adds the VIPs anew (and faults again if that still fails).
                    if self.vip_fault && !self.vips_stuck {
                        self.vip_fault = false;
                        self.feed(Input::Fault(self.faulty())).await;
                    }
                }
                _ = tick(&mut refresh) => {
                    if self.machine.state() == State::Master {
                        self.announce_once();
                    }
                }
            }
        }
        self.feed(Input::Shutdown).await;
    }

    fn links_up(&self) -> bool {
        self.link.is_up() && self.config.track_interfaces.iter().all(|i| link::is_up(i))
    }

    /// Checks a received datagram (RFC 5798 §7.1, see [`crate::accept`]); `Some(input)` for
    /// an advert of our group.
    fn accept(&mut self, buf: &[u8], datagram: Datagram) -> Option<Input> {
        let received = match datagram {
            Datagram::V4(n) => match packet::parse_ipv4(&buf[..n]) {
                Ok((meta, payload)) => Received {
                    src: IpAddr::V4(meta.src),
                    dst: IpAddr::V4(meta.dst),
                    ttl: meta.ttl,
                    payload,
                },
                Err(e) => {
                    self.drop_packet(e.reason(), &e.to_string());
                    return None;
                }
            },
            // The IPv6 header is gone; its destination was the group, or us for unicast.
            Datagram::V6(r) => Received {
                src: IpAddr::V6(r.src),
                dst: if self.multicast {
                    IpAddr::V6(GROUP_V6)
                } else {
                    self.source
                },
                ttl: r.hop_limit.unwrap_or(0),
                payload: &buf[..r.len],
            },
        };
        match self.acceptor.judge(received) {
            Verdict::Advert {
                src,
                priority,
                interval,
            } => {
                self.status.send_modify(|s| s.adverts_received += 1);
                Some(Input::Advert {
                    src,
                    priority,
                    interval,
                })
            }
            Verdict::Own | Verdict::OtherRouter => None,
            Verdict::Dropped { reason, detail } => {
                self.drop_packet(reason, &detail);
                None
            }
        }
    }

    fn drop_packet(&mut self, reason: &'static str, detail: &str) {
        self.status
            .send_modify(|s| *s.dropped.entry(reason).or_default() += 1);
        let now = Instant::now();
        let due = self
            .last_drop_log
            .get(reason)
            .is_none_or(|last| now.duration_since(*last) >= DROP_LOG_EVERY);
        if due {
            self.last_drop_log.insert(reason, now);
            tracing::warn!(instance = %self.config.name, reason, "dropped a VRRP packet: {detail}");
        }
    }

    fn faulty(&self) -> bool {
        self.link_fault || self.external_fault || self.vip_fault
    }

    async fn feed(&mut self, input: Input) {
        self.feed_one(input).await;
        if std::mem::take(&mut self.vip_fault_pending) {
            self.feed_one(Input::Fault(true)).await;
        }
    }

    async fn feed_one(&mut self, input: Input) {
        let actions = self.machine.handle(Instant::now(), input);
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::AddVips => self.add_vips().await,
                Action::RemoveVips => self.remove_vips().await,
                Action::Transition { from, to } => {
                    tracing::info!(
                        instance = %self.config.name,
                        vrid = self.config.vrid,
                        from = %from,
                        to = %to,
                        priority = self.machine.effective_priority(),
                        "VRRP {}: {from} -> {to}",
                        self.config.name
                    );
                    // No receiver left is not an error: nobody listens for notify scripts.
                    let _ = self.transitions.send(Transition { from, to });
                    self.status.send_modify(|s| {
                        s.state = to;
                        s.since = Instant::now();
                        s.transitions += 1;
                    });
                }
            }
        }
        let (effective, master) = (self.machine.effective_priority(), self.machine.master());
        self.status.send_if_modified(|s| {
            let changed = s.effective_priority != effective || s.master != master;
            s.effective_priority = effective;
            s.master = master;
            changed
        });
    }

    fn send_advert(&mut self, priority: u8) {
        let advert = Advert {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            interval: self.config.advert_interval,
            addresses: self.config.vips.iter().map(|(ip, _)| *ip).collect(),
        };
        let destinations: Vec<IpAddr> = if self.config.peers.is_empty() {
            match self.source {
                IpAddr::V4(_) => vec![IpAddr::V4(GROUP_V4)],
                IpAddr::V6(_) => vec![IpAddr::V6(GROUP_V6)],
            }
        } else {
            self.config.peers.clone()
        };
        for dst in destinations {
            let sent = packet::encode(&advert, self.source, dst)
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|message| self.socket.send(&message, dst));
            match sent {
                Ok(()) => self.status.send_modify(|s| s.adverts_sent += 1),
                Err(e) => {
                    tracing::warn!(instance = %self.config.name, %dst, error = %e, "sending a VRRP advert failed");
                }
            }
        }
    }

    async fn add_vips(&mut self) {
        if !self.config.manage_vips {
            return;
        }
        for (ip, prefix) in &self.config.vips {
            if let Err(e) = self.addresses.add(self.link.index, *ip, *prefix).await {
                tracing::error!(instance = %self.config.name, vip = %ip, error = %e,
                    "adding a VIP failed: going to FAULT rather than claiming an address we lack");
                self.vip_fault = true;
                self.vip_fault_pending = true;
                return;
            }
        }
        self.start_announcing();
    }

    async fn remove_vips(&mut self) {
        if let Some(task) = self.announcing.take() {
            task.abort();
        }
        if !self.config.manage_vips {
            return;
        }
        let mut stuck = false;
        for (ip, _) in &self.config.vips {
            if let Err(e) = self.addresses.remove(self.link.index, *ip).await {
                tracing::error!(instance = %self.config.name, vip = %ip, error = %e,
                    "removing a VIP failed: FAULT (no adverts) until it is gone");
                stuck = true;
            }
        }
        if stuck && !self.vips_stuck {
            self.vip_fault = true;
            self.vip_fault_pending = true;
        }
        self.vips_stuck = stuck;
    }

    /// Gratuitous ARP for every VIP, `garp_repeat` times, `garp_interval` apart, in the
    /// background so the election never waits on it.
    fn start_announcing(&mut self) {
        let Some(announcer) = &self.announcer else {
            return;
        };
        if let Some(old) = self.announcing.take() {
            old.abort();
        }
        let vips: Vec<IpAddr> = self.config.vips.iter().map(|(ip, _)| *ip).collect();
        let (repeat, interval) = (self.config.garp_repeat, self.config.garp_interval);
        let name = self.config.name.clone();
        let announcer = announcer.clone();
        self.announcing = Some(tokio::spawn(async move {
            for round in 0..repeat {
                if round > 0 {
                    tokio::time::sleep(interval).await;
                }
                announce(&announcer, &vips, &name);
            }
        }));
    }

    fn announce_once(&self) {
        if let Some(announcer) = &self.announcer {
            let vips: Vec<IpAddr> = self.config.vips.iter().map(|(ip, _)| *ip).collect();
            announce(announcer, &vips, &self.config.name);
        }
    }
}

/// One gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6) per VIP.
fn announce(announcer: &Announcer, vips: &[IpAddr], name: &str) {
    for ip in vips {
        let sent = match ip {
            IpAddr::V4(v4) => announcer.arp(*v4),
            IpAddr::V6(v6) => announcer.na(*v6),
        };
        if let Err(e) = sent {
            tracing::warn!(instance = %name, vip = %ip, error = %e, "announcing a VIP failed");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
