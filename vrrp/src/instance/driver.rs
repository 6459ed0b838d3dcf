//! The task behind an [`Instance`](super::Instance): it sleeps until the machine's next
//! deadline, an advert, a command or a link poll, feeds each to the machine, and carries out
//! the actions (adverts, VIPs, announcements), publishing the status after every change.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Command, InstanceConfig, Status, Transition};
use crate::accept::{Acceptor, Received, Verdict};
use crate::machine::{Action, Input, Machine, State};
use crate::packet::{self, Advert};
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
/// Datagrams read before serving a due timer, at most.
const READ_WAITING_MAX: usize = 64;

/// The advert sockets of one family.
pub(super) enum Sockets {
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
    pub(super) socket: Sockets,
    pub(super) addresses: Addresses,
    pub(super) announcer: Option<Announcer>,
    pub(super) status: watch::Sender<Status>,
    pub(super) transitions: broadcast::Sender<Transition>,
    /// The task repeating gratuitous ARPs after a takeover; aborted when we stop being master.
    pub(super) announcing: Option<JoinHandle<()>>,
    pub(super) last_drop_log: BTreeMap<&'static str, Instant>,
    pub(super) link_fault: bool,
    pub(super) external_fault: bool,
    /// A VIP could not be added (we must not claim to be master without it) or removed (we
    /// must not hold it as backup): FAULT until a retry succeeds.
    pub(super) vip_fault: bool,
    /// The machine must hear `Fault(true)` once the current actions are done.
    pub(super) vip_fault_pending: bool,
    /// VIPs that could not be removed, retried on every link poll.
    pub(super) vips_stuck: bool,
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
                    // late is still the master. Those waiting are read first.
                    self.read_waiting(&mut buf).await;
                    if self.machine.next_timeout().is_some_and(|due| due <= Instant::now()) {
                        self.feed(Input::Timeout).await;
                    }
                }
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

    /// Feeds the machine the datagrams already waiting in the socket (a bounded number: a
    /// flood must not hold the timers up in turn).
    async fn read_waiting(&mut self, buf: &mut [u8]) {
        for _ in 0..READ_WAITING_MAX {
            match self.socket.try_recv(buf) {
                Ok(Some(datagram)) => {
                    if let Some(input) = self.accept(buf, datagram) {
                        self.feed(input).await;
                    }
                }
                // Nothing waiting; or an error, which the select loop's receive will meet.
                Ok(None) | Err(_) => return,
            }
        }
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
                        vrid = self.config.election.vrid,
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
            version: self.config.election.version,
            vrid: self.config.election.vrid,
            priority,
            interval: self.config.election.advert_interval,
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
