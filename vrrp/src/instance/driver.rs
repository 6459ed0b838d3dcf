//! The task behind an [`Instance`](super::Instance): it sleeps until the machine's next
//! deadline, an advert, a command or a link poll, feeds each to the machine, and carries out
//! the actions (adverts, VIPs, announcements), publishing the status after every change.
//!
//! The per-advert path (an advert received and judged, or the Adver_Timer served and an advert
//! sent) allocates nothing and logs nothing: the machine's actions go into a vector kept from
//! one input to the next, the advert is encoded into a kept buffer, a received one is judged on
//! its header alone, and what is measured goes into the fixed histograms of [`Status::timing`].
//! What needs saying about it (low margins) is said from the link poll, at most every
//! [`LOW_MARGIN_WARN_EVERY`].
//!
//! What the host refuses or fails (the raw socket, a VIP) holds the instance in FAULT as
//! [`HostFault`] decides: said once, tried again quietly on a backoff, from the link poll.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Command, InstanceConfig, Status, Transition};
use crate::accept::{Acceptor, Received, Verdict};
use crate::host_fault::{self, HostFault, Retry, Trouble};
use crate::machine::{Action, Input, Machine, State};
use crate::packet::{self, Advert};
use crate::sys::addr::Addresses;
use crate::sys::announce::Announcer;
use crate::sys::link::{self, Link};
use crate::sys::socket::{AdvertSocketV4, AdvertSocketV6, GROUP_V6, ReceivedV4, ReceivedV6};
use crate::timing::{self, Warnings};

/// How often links (own and tracked) are looked at. Cheap: a sysfs read each.
const LINK_POLL: Duration = Duration::from_millis(200);
/// Drops of the same reason logged at most this often (the counter still counts each).
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Largest IPv4 datagram we expect: header with options plus 255 addresses.
const RECV_BUF: usize = 8192;
/// Pause before receiving again after a receive error.
const RECV_RETRY: Duration = Duration::from_millis(100);
/// Datagrams read before serving a due timer, at most. Reading stops sooner, at the first that
/// arrived after the timer was served: only those before it can change what the timer does,
/// and the socket's receive buffer bounds how many those are.
const READ_WAITING_MAX: usize = 256;
/// A warning about low Master_Down margins is logged at most this often per instance.
pub(super) const LOW_MARGIN_WARN_EVERY: Duration = Duration::from_secs(10);

/// The advert sockets of one family.
pub(super) enum Sockets {
    V4(AdvertSocketV4),
    V6(AdvertSocketV6),
}

/// What one receive produced, before any check.
enum Datagram {
    /// A whole IPv4 datagram, header included.
    V4(ReceivedV4),
    /// A VRRP message over IPv6, with what the kernel told of its header.
    V6(ReceivedV6),
}

impl Datagram {
    /// The kernel's receive timestamp.
    fn stamped(&self) -> Option<SystemTime> {
        match self {
            Datagram::V4(r) => r.arrived,
            Datagram::V6(r) => r.arrived,
        }
    }
}

impl Sockets {
    /// Opens the advert sockets on `link`, sending from `source`, and the ARP / NA one when
    /// `announce` (the instance manages VIPs). The error says which could not be opened.
    pub(super) fn open(
        link: &Link,
        source: IpAddr,
        multicast: bool,
        announce: bool,
    ) -> Result<(Self, Option<Announcer>), (&'static str, io::Error)> {
        let sockets = match source {
            IpAddr::V4(v4) => AdvertSocketV4::open(link, v4, multicast).map(Sockets::V4),
            IpAddr::V6(v6) => AdvertSocketV6::open(link, v6, multicast).map(Sockets::V6),
        }
        .map_err(|e| ("opening the VRRP socket", e))?;
        let announcer = if announce {
            let announcer = Announcer::open(link, source.is_ipv4(), source.is_ipv6());
            Some(announcer.map_err(|e| ("opening the ARP / NA socket", e))?)
        } else {
            None
        };
        Ok((sockets, announcer))
    }

    /// The next datagram; never, without sockets (the host refused them).
    async fn recv(sockets: &Option<Self>, buf: &mut [u8]) -> io::Result<Datagram> {
        match sockets {
            Some(Sockets::V4(s)) => s.recv(buf).await.map(Datagram::V4),
            Some(Sockets::V6(s)) => s.recv(buf).await.map(Datagram::V6),
            None => std::future::pending().await,
        }
    }

    /// A datagram already waiting, if any, without waiting.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
        match self {
            Sockets::V4(s) => Ok(s.try_recv(buf)?.map(Datagram::V4)),
            Sockets::V6(s) => Ok(s.try_recv(buf)?.map(Datagram::V6)),
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

pub(super) struct Driver {
    pub(super) config: InstanceConfig,
    pub(super) link: Link,
    pub(super) source: IpAddr,
    pub(super) multicast: bool,
    pub(super) machine: Machine,
    /// Which received messages are adverts for us.
    pub(super) acceptor: Acceptor,
    /// `None` while the host refuses them (FAULT, see [`HostFault`]).
    pub(super) socket: Option<Sockets>,
    /// Where adverts go: the group, or each unicast peer.
    pub(super) destinations: Vec<IpAddr>,
    /// The advert we send, but for its priority, which each send sets.
    pub(super) advert: Advert,
    /// The encoded advert, reused from one send to the next.
    pub(super) send_buf: Vec<u8>,
    /// The machine's actions, reused from one input to the next.
    pub(super) actions: Vec<Action>,
    /// When the datagram read last arrived: no later one can have arrived before it.
    pub(super) last_arrival: Instant,
    /// The advert being fed: when it arrived, and the machine's deadline before it (for its
    /// margin).
    pub(super) arrival: Option<(Instant, Option<Instant>)>,
    /// While the Adver_Timer is served: when it fell due (for the send lateness).
    pub(super) advert_due: Option<Instant>,
    pub(super) low_margin_warnings: Warnings,
    pub(super) addresses: Addresses,
    pub(super) announcer: Option<Announcer>,
    pub(super) status: watch::Sender<Status>,
    pub(super) transitions: broadcast::Sender<Transition>,
    /// The task repeating gratuitous ARPs after a takeover; aborted when we stop being master.
    pub(super) announcing: Option<JoinHandle<()>>,
    pub(super) last_drop_log: BTreeMap<&'static str, Instant>,
    pub(super) link_fault: bool,
    pub(super) external_fault: bool,
    /// The host refused the sockets or the addresses, or a VIP could not be added (we must not
    /// claim to be master without it) or removed (we must not hold it as backup): FAULT until
    /// a retry succeeds.
    pub(super) host: HostFault,
    /// The machine must hear `Fault(true)` once the current actions are done.
    pub(super) fault_pending: bool,
}

impl Driver {
    pub(super) async fn run(
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
        }
        // Refused at start (see `Instance::start`): INIT -> FAULT, never a claim that must fail.
        if self.faulty() {
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
                () = sleep_until(deadline) => {
                    // A timer served late (the thread was held up) must not outrun the adverts
                    // that arrived meanwhile: a master whose advert came in time but is read
                    // late is still the master. Those waiting (up to the first that arrived
                    // after the timer was served) are read first.
                    self.read_waiting(&mut buf).await;
                    let now = Instant::now();
                    if let Some(due) = self.machine.next_timeout().filter(|due| *due <= now) {
                        if self.machine.state() == State::Master {
                            self.advert_due = Some(due);
                        }
                        self.feed(Input::Timeout).await;
                        self.advert_due = None;
                    }
                }
                received = Sockets::recv(&self.socket, &mut buf), if recv_resume.is_none() => match received {
                    Ok(datagram) => self.receive(&buf, datagram).await,
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
                        Command::RetryHost => {
                            self.host.retry_now(Instant::now());
                            self.retry_host().await;
                            continue;
                        }
                    };
                    self.feed(input).await;
                }
                _ = links.tick() => {
                    self.warn_of_low_margins();
                    let fault = !self.links_up();
                    if fault != self.link_fault {
                        self.link_fault = fault;
                        self.status.send_modify(|s| s.link_fault = fault);
                        tracing::warn!(instance = %self.config.name, up = !fault, "tracked link changed");
                        self.feed(Input::Fault(self.faulty())).await;
                    }
                    self.retry_host().await;
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

    /// Retries what the host refused or failed, when [`HostFault`] says it is due: a probe in
    /// FAULT (quiet while it keeps failing), or leaving FAULT for the election to claim again.
    async fn retry_host(&mut self) {
        let Some(retry) = self.host.due(Instant::now()) else {
            return;
        };
        if retry == Retry::Probe {
            if let Err((trouble, e)) = self.probe().await {
                self.host_failed(trouble, &e);
                return;
            }
            if let Some(trouble) = self.host.lifted() {
                tracing::info!(
                    instance = %self.config.name,
                    "VRRP {}: {} works now: leaving FAULT",
                    self.config.name,
                    trouble.action()
                );
            }
        }
        self.status.send_modify(|s| s.host_fault = None);
        self.feed(Input::Fault(self.faulty())).await;
    }

    /// Tests, in FAULT, what the host refused or failed: opens the sockets still missing, then
    /// deletes the VIPs (gone is what FAULT wants; the kernel checks the permission whether or
    /// not they are there).
    async fn probe(&mut self) -> Result<(), (Trouble, io::Error)> {
        if self.socket.is_none() {
            let announce = self.config.manage_vips;
            let (socket, announcer) =
                Sockets::open(&self.link, self.source, self.multicast, announce)
                    .map_err(|(_, e)| (Trouble::SocketsDenied, e))?;
            self.socket = Some(socket);
            self.announcer = announcer;
        }
        if self.config.manage_vips {
            for (ip, prefix) in &self.config.vips {
                if let Err(e) = self.addresses.clear(self.link.index, *ip, *prefix).await {
                    return Err((removal_trouble(&e), e));
                }
            }
        }
        Ok(())
    }

    /// Holds the instance in FAULT for `trouble` (the caller feeds the machine), and says so
    /// once (see [`HostFault::failed`]).
    pub(super) fn host_failed(&mut self, trouble: Trouble, error: &io::Error) {
        let name = &self.config.name;
        let interface = &self.config.interface;
        let action = trouble.action();
        if self.host.failed(Instant::now(), trouble) {
            match trouble.capability() {
                Some(capability) => tracing::error!(
                    instance = %name,
                    capability,
                    error = %error,
                    "VRRP {name}: {action} on {interface} was refused ({error}): the process lacks \
                     {capability}, or a security policy forbids it. VRRP needs CAP_NET_RAW and \
                     CAP_NET_ADMIN: run tandem as root, or grant both (AmbientCapabilities= in \
                     the systemd unit, or setcap on the binary). Until then the instance stays \
                     in FAULT; it tries again quietly, every {}s at most and on reload",
                    host_fault::RETRY_MAX.as_secs()
                ),
                None => tracing::error!(
                    instance = %name,
                    error = %error,
                    "VRRP {name}: {action} on {interface} failed ({error}): FAULT until it \
                     works; tried again after a backoff (up to {}s), quietly while it fails",
                    host_fault::RETRY_MAX.as_secs()
                ),
            }
        }
        let cause = match trouble.capability() {
            Some(capability) => format!("{action} on {interface}: {error} (needs {capability})"),
            None => format!("{action} on {interface}: {error}"),
        };
        self.status.send_modify(|s| s.host_fault = Some(cause));
    }

    /// Feeds the machine the datagrams already waiting in the socket, up to the first that
    /// arrived after this call (a bounded number: a flood must not hold the timers up in turn).
    async fn read_waiting(&mut self, buf: &mut [u8]) {
        let started = SystemTime::now();
        for _ in 0..READ_WAITING_MAX {
            let Some(socket) = &self.socket else {
                return;
            };
            match socket.try_recv(buf) {
                Ok(Some(datagram)) => {
                    let later = datagram.stamped().is_some_and(|at| at >= started);
                    self.receive(buf, datagram).await;
                    if later {
                        return;
                    }
                }
                // Nothing waiting; or an error, which the select loop's receive will meet.
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Judges one datagram and feeds an advert to the machine at the time it arrived.
    async fn receive(&mut self, buf: &[u8], datagram: Datagram) {
        let arrived = timing::arrival(
            Instant::now(),
            SystemTime::now(),
            datagram.stamped(),
            self.last_arrival,
        );
        self.last_arrival = arrived;
        if let Some(input) = self.accept(buf, datagram) {
            // The machine hears it as of now, the read: a Master_Down_Timer it restarts runs
            // from here, which leaves the backup the slack of its own read delay. Restarted from
            // the arrival instead, the backup took over from a live master 5 times in 600 s of
            // false-takeover.sh at 10 ms adverts (0 before): under load a master's late send and
            // a backup's late read go together. The arrival still decides which waiting adverts
            // a late timer reads first (`read_waiting`), and measures the margin.
            self.arrival = Some((arrived, self.machine.next_timeout()));
            self.feed_at(Instant::now(), input).await;
        }
    }

    /// Says, at most every [`LOW_MARGIN_WARN_EVERY`], how many of the master's adverts came
    /// with less than a quarter of Master_Down_Interval left since it last said so. Off the
    /// per-advert path: called from the link poll.
    fn warn_of_low_margins(&mut self) {
        let now = Instant::now();
        let (low, worst) = {
            let status = self.status.borrow();
            (status.timing.low_margins, status.timing.worst_margin(now))
        };
        if let Some(count) = self.low_margin_warnings.due(now, low) {
            let interval = self.machine.master_down_interval();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let worst = worst.map_or(0.0, ms);
            tracing::warn!(
                instance = %self.config.name,
                count,
                worst_margin_ms = worst,
                master_down_interval_ms = ms(interval),
                "VRRP {}: {count} advert(s) of the master arrived with less than a quarter of \
                 Master_Down_Interval ({:.1} ms) to spare (worst recent margin {worst:.1} ms): \
                 the pair is close to a false takeover; raise advert_interval or find what \
                 delays the adverts",
                self.config.name,
                ms(interval),
            );
        }
    }

    fn links_up(&self) -> bool {
        self.link.is_up() && self.config.track_interfaces.iter().all(|i| link::is_up(i))
    }

    /// Checks a received datagram (RFC 5798 §7.1, see [`crate::accept`]); `Some(input)` for
    /// an advert of our group.
    fn accept(&mut self, buf: &[u8], datagram: Datagram) -> Option<Input> {
        let received = match datagram {
            Datagram::V4(r) => match packet::parse_ipv4(&buf[..r.len]) {
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
            } => Some(Input::Advert {
                src,
                priority,
                interval,
            }),
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
        self.link_fault || self.external_fault || self.host.is_faulty()
    }

    async fn feed(&mut self, input: Input) {
        self.feed_at(Instant::now(), input).await;
    }

    /// Feeds `input` as of `at`: now, or for an advert the time it arrived.
    async fn feed_at(&mut self, at: Instant, input: Input) {
        self.feed_one(at, input).await;
        if std::mem::take(&mut self.fault_pending) {
            self.feed_one(Instant::now(), Input::Fault(true)).await;
        }
    }

    async fn feed_one(&mut self, at: Instant, input: Input) {
        let heard = matches!(input, Input::Advert { .. });
        let mut actions = std::mem::take(&mut self.actions);
        self.machine.handle_into(at, input, &mut actions);
        // The margin the machine found at the read, measured instead at the kernel's arrival
        // time against the deadline that ran before this advert.
        let arrival = std::mem::take(&mut self.arrival);
        let margin = self
            .machine
            .master_down_margin()
            .map(|at_read| match arrival {
                Some((arrived, Some(deadline))) if heard => {
                    deadline.saturating_duration_since(arrived)
                }
                _ => at_read,
            });
        for action in actions.drain(..) {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::AddVips => self.add_vips().await,
                Action::RemoveVips => self.remove_vips().await,
                Action::Transition { from, to, why } => {
                    tracing::info!(
                        instance = %self.config.name,
                        vrid = self.config.election.vrid,
                        from = %from,
                        to = %to,
                        why = why.as_str(),
                        priority = self.machine.effective_priority(),
                        "VRRP {}: {from} -> {to} ({why})",
                        self.config.name
                    );
                    // No receiver left is not an error: nobody listens for notify scripts.
                    let _ = self.transitions.send(Transition { from, to, why });
                    self.status.send_modify(|s| {
                        s.state = to;
                        s.previous = from;
                        s.why = Some(why);
                        s.since = Instant::now();
                        s.transitions += 1;
                    });
                }
            }
        }
        self.actions = actions;
        let (effective, master) = (self.machine.effective_priority(), self.machine.master());
        let master_down_interval = self.machine.master_down_interval();
        let held_up = self.machine.held_up().is_some();
        self.status.send_if_modified(|s| {
            let mut changed = s.effective_priority != effective || s.master != master || held_up;
            if held_up {
                s.timing.held_up_graces += 1;
            }
            s.effective_priority = effective;
            s.master = master;
            if heard {
                s.adverts_received += 1;
                changed = true;
            }
            if let Some(margin) = margin {
                s.timing.record_margin(at, margin, master_down_interval);
            }
            changed
        });
    }

    /// Sends the advert to each destination; when the Adver_Timer sent it, records how late.
    fn send_advert(&mut self, priority: u8) {
        self.advert.priority = priority;
        let due = self.advert_due.take();
        let now = Instant::now();
        let mut sent = 0;
        let Some(socket) = &self.socket else {
            return; // In FAULT: nothing is sent.
        };
        for &dst in &self.destinations {
            let result = packet::encode_into(&self.advert, self.source, dst, &mut self.send_buf)
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|()| socket.send(&self.send_buf, dst));
            match result {
                Ok(()) => sent += 1,
                Err(e) => {
                    tracing::warn!(instance = %self.config.name, %dst, error = %e, "sending a VRRP advert failed");
                }
            }
        }
        self.status.send_if_modified(|s| {
            s.adverts_sent += sent;
            if let Some(due) = due {
                s.timing
                    .record_send_lateness(now, now.saturating_duration_since(due));
            }
            sent > 0 || due.is_some()
        });
    }

    /// Adds the VIPs; one that fails puts the instance in FAULT rather than claim an address it
    /// lacks.
    async fn add_vips(&mut self) {
        if self.config.manage_vips {
            for (ip, prefix) in &self.config.vips {
                if let Err(e) = self.addresses.add(self.link.index, *ip, *prefix).await {
                    let trouble = if denied(&e) {
                        Trouble::AddressesDenied
                    } else {
                        Trouble::AddFailed
                    };
                    self.host_failed(trouble, &e);
                    self.fault_pending = true;
                    return;
                }
            }
            self.start_announcing();
        }
        if let Some(trouble) = self.host.claimed() {
            tracing::info!(instance = %self.config.name, "VRRP {}: {} works again",
                self.config.name, trouble.action());
            self.status.send_modify(|s| s.host_fault = None);
        }
    }

    async fn remove_vips(&mut self) {
        if let Some(task) = self.announcing.take() {
            task.abort();
        }
        if !self.config.manage_vips {
            return;
        }
        let mut failed = None;
        for (ip, _) in &self.config.vips {
            if let Err(e) = self.addresses.remove(self.link.index, *ip).await {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            // FAULT (no adverts) until it is gone: we must not hold it as backup.
            self.host_failed(removal_trouble(&e), &e);
            self.fault_pending = true;
        }
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

/// Whether the kernel refused the operation for want of a capability (EPERM), which does not
/// pass by itself. EACCES is left out: it also means other things (an IPv6 VIP on a link with
/// IPv6 disabled), which a message about capabilities would only hide.
pub(super) fn denied(error: &io::Error) -> bool {
    crate::sys::addr::os_error(error) == Some(libc::EPERM)
}

/// The trouble a failed removal of a VIP means.
pub(super) fn removal_trouble(error: &io::Error) -> Trouble {
    if denied(error) {
        Trouble::AddressesDenied
    } else {
        Trouble::RemoveFailed
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
