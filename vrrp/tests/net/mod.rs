//! The in-memory network the elections run on (see `election.rs`): routers as pure machines,
//! adverts as encoded bytes judged by `vrrp::accept`, time moved straight to the next event.
#![allow(dead_code)] // each test binary uses a part

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;
use vrrp::accept::{Acceptor, Received, Verdict};
use vrrp::packet::{self, Advert};
use vrrp::{Action, Input, Machine, MachineConfig, State, Version};

pub const SEC: Duration = Duration::from_secs(1);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Where multicast adverts from `src` go (RFC 5798 §5.1.1.2, §5.1.2.2).
pub fn group(src: IpAddr) -> IpAddr {
    if src.is_ipv4() {
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18))
    } else {
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12))
    }
}

/// The virtual address every router of these elections backs, of `src`'s family.
pub fn vip(src: IpAddr) -> IpAddr {
    if src.is_ipv4() {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100))
    }
}

/// Router `n` (1-based) is 10.0.0.n.
pub fn addr(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

pub fn cfg(version: Version, priority: u8, n: u8) -> MachineConfig {
    MachineConfig {
        version,
        vrid: 51,
        priority,
        advert_interval: SEC,
        preempt: true,
        preempt_delay: Duration::ZERO,
        accept_mode: false,
        primary_address: addr(n),
    }
}

pub fn v3(priority: u8, n: u8) -> MachineConfig {
    cfg(Version::V3, priority, n)
}

pub struct Node {
    pub machine: Machine,
    pub addr: IpAddr,
    pub version: Version,
    pub vrid: u8,
    pub interval: Duration,
    /// What it takes for an advert of its router, as an instance on a link would.
    pub acceptor: Acceptor,
    /// A crashed router neither sends, hears, nor runs timers.
    pub alive: bool,
    /// A router held up (its thread stalled): adverts for it wait in its socket, with the time
    /// they arrived, and its timers are not served, until [`Net::release`].
    pub held: bool,
    /// The adverts waiting in a held router's socket: (arrival, source, bytes).
    pub waiting: Vec<(Instant, IpAddr, Vec<u8>)>,
    pub holds_vips: bool,
    /// Every advert it sent: (time, priority).
    pub sent: Vec<(Instant, u8)>,
}

pub struct Packet {
    pub at: Instant,
    pub to: usize,
    pub src: IpAddr,
    /// The VRRP message as sent to the group.
    pub bytes: Vec<u8>,
}

pub struct Net {
    pub now: Instant,
    pub latency: Duration,
    pub nodes: Vec<Node>,
    /// (from, to) pairs whose adverts are lost.
    pub cut: HashSet<(usize, usize)>,
    pub in_flight: VecDeque<Packet>,
    /// Every transition: (time, node, from, to).
    pub log: Vec<(Instant, usize, State, State)>,
}

impl Net {
    pub fn new(configs: Vec<MachineConfig>) -> Self {
        let nodes = configs
            .into_iter()
            .map(|c| Node {
                addr: c.primary_address,
                version: c.version,
                vrid: c.vrid,
                interval: c.advert_interval,
                acceptor: Acceptor {
                    own: c.primary_address,
                    peers: Vec::new(),
                    vrid: c.vrid,
                    version: c.version,
                },
                machine: Machine::new(c).unwrap(),
                alive: true,
                held: false,
                waiting: Vec::new(),
                holds_vips: false,
                sent: Vec::new(),
            })
            .collect();
        Self {
            now: Instant::now(),
            latency: Duration::ZERO,
            nodes,
            cut: HashSet::new(),
            in_flight: VecDeque::new(),
            log: Vec::new(),
        }
    }

    pub fn start_all(&mut self) -> Instant {
        for i in 0..self.nodes.len() {
            self.input(i, Input::Startup);
        }
        self.now
    }

    /// Feeds one input to node `i` now, and carries out its actions.
    pub fn input(&mut self, i: usize, input: Input) {
        let actions = self.nodes[i].machine.handle(self.now, input);
        for action in actions {
            self.apply(i, action);
        }
    }

    pub fn apply(&mut self, i: usize, action: Action) {
        let now = self.now;
        match action {
            Action::SendAdvert { priority } => {
                let node = &mut self.nodes[i];
                node.sent.push((now, priority));
                let advert = Advert {
                    version: node.version,
                    vrid: node.vrid,
                    priority,
                    interval: node.interval,
                    addresses: vec![vip(node.addr)],
                };
                let src = node.addr;
                let bytes = packet::encode(&advert, src, group(src)).expect("a valid advert");
                for to in 0..self.nodes.len() {
                    if to != i && !self.cut.contains(&(i, to)) {
                        self.in_flight.push_back(Packet {
                            at: now + self.latency,
                            to,
                            src,
                            bytes: bytes.clone(),
                        });
                    }
                }
            }
            Action::AddVips => {
                assert!(!self.nodes[i].holds_vips, "node {i} adds VIPs twice");
                self.nodes[i].holds_vips = true;
            }
            Action::RemoveVips => {
                assert!(self.nodes[i].holds_vips, "node {i} removes VIPs it lacks");
                self.nodes[i].holds_vips = false;
            }
            Action::Transition { from, to, .. } => {
                // The caller's contract: VIPs are held exactly while Master.
                assert_eq!(self.nodes[i].holds_vips, to == State::Master);
                self.log.push((now, i, from, to));
            }
        }
    }

    pub fn next_event(&self) -> Option<Instant> {
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.alive && !n.held)
            .filter_map(|n| n.machine.next_timeout());
        let packets = self.in_flight.front().map(|p| p.at);
        timers.chain(packets).min()
    }

    /// Moves to the next event: first every timer due then (in node order), then every packet
    /// due, including those sent with zero latency during this step.
    pub fn step(&mut self) {
        let Some(t) = self.next_event() else { return };
        // A resumed router may have overdue timers: they fire now.
        let t = t.max(self.now);
        self.now = t;
        for i in 0..self.nodes.len() {
            let due = self.nodes[i].machine.next_timeout().is_some_and(|d| d <= t);
            if self.nodes[i].alive && !self.nodes[i].held && due {
                self.input(i, Input::Timeout);
            }
        }
        while self.in_flight.front().is_some_and(|p| p.at <= t) {
            let p = self.in_flight.pop_front().unwrap();
            let node = &mut self.nodes[p.to];
            if node.alive && node.held {
                node.waiting.push((p.at, p.src, p.bytes));
            } else if node.alive {
                let advert = self.judge(p.to, p.src, &p.bytes);
                self.input(p.to, advert);
            }
        }
    }

    /// Every router here backs the same virtual router: each advert must be taken.
    fn judge(&self, to: usize, src: IpAddr, bytes: &[u8]) -> Input {
        let received = Received {
            src,
            dst: group(src),
            ttl: 255,
            payload: bytes,
        };
        match self.nodes[to].acceptor.judge(received) {
            Verdict::Advert {
                src,
                priority,
                interval,
            } => Input::Advert {
                src,
                priority,
                interval,
            },
            other => panic!("node {to} turned away an advert from {src}: {other:?}"),
        }
    }

    /// Holds router `i` up: adverts for it wait, its timers are not served (its process is
    /// stopped, or its thread starved), until [`Net::release`].
    pub fn hold(&mut self, i: usize) {
        self.nodes[i].held = true;
    }

    /// Lets a held router run again, as the instance's driver does after a stall: it reads the
    /// adverts waiting, each handled at the time it arrived, then serves its overdue timer.
    pub fn release(&mut self, i: usize) {
        self.nodes[i].held = false;
        for (arrived, src, bytes) in std::mem::take(&mut self.nodes[i].waiting) {
            let advert = self.judge(i, src, &bytes);
            let actions = self.nodes[i].machine.handle(arrived, advert);
            for action in actions {
                self.apply(i, action);
            }
        }
        if self.nodes[i]
            .machine
            .next_timeout()
            .is_some_and(|d| d <= self.now)
        {
            self.input(i, Input::Timeout);
        }
    }

    pub fn run_until(&mut self, t: Instant) {
        while self.next_event().is_some_and(|e| e <= t) {
            self.step();
        }
        self.now = t;
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    pub fn state(&self, i: usize) -> State {
        self.nodes[i].machine.state()
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.state(i) == State::Master)
            .collect()
    }

    /// The instant node `i` last entered `to`.
    pub fn entered(&self, i: usize, to: State) -> Option<Instant> {
        self.log
            .iter()
            .rev()
            .find(|&&(_, n, _, s)| n == i && s == to)
            .map(|&(t, ..)| t)
    }

    pub fn transitions(&self, i: usize) -> Vec<(State, State)> {
        self.log
            .iter()
            .filter(|&&(_, n, ..)| n == i)
            .map(|&(_, _, f, t)| (f, t))
            .collect()
    }

    pub fn last_advert(&self, i: usize) -> Instant {
        self.nodes[i].sent.last().unwrap().0
    }

    /// Stops the router dead (power loss, or a frozen process): it neither sends, hears, nor
    /// runs timers until [`Net::resume`].
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
    }

    pub fn resume(&mut self, i: usize) {
        self.nodes[i].alive = true;
    }

    pub fn partition(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// The end of every period in which two or more routers were master at once.
    pub fn dual_master_ends(&self) -> Vec<Instant> {
        let mut masters = HashSet::new();
        let mut ends = Vec::new();
        for &(t, i, from, to) in &self.log {
            let before = masters.len();
            if from == State::Master {
                masters.remove(&i);
            }
            if to == State::Master {
                masters.insert(i);
            }
            if before >= 2 && masters.len() < 2 {
                ends.push(t);
            }
        }
        ends
    }
}
