//! The RFC 5798 §6 state machine (Initialize, Backup, Master) plus Fault, for one virtual router.
//!
//! Sans-IO: the caller feeds [`Input`]s with the current time and carries out the [`Action`]s
//! returned, in order. The machine never reads a clock and never touches a socket; its only
//! notion of time is the `now` it is given and the deadline it asks for
//! ([`Machine::next_timeout`]).
//!
//! The driver loop is:
//! 1. `handle(now, Input::Startup)` once;
//! 2. sleep until `next_timeout()` or until an advert or an event arrives;
//! 3. on wake-up call `handle(now, Input::Timeout)` (when `now >= next_timeout()`) or
//!    `handle(arrived, Input::Advert { .. })` (at the time the advert arrived) etc., and carry
//!    out the actions; go to 2.
//!
//! What the machine does not do, and the caller must: decode and validate packets
//! ([`crate::packet`], RFC 5798 §7.1 TTL, version and VRID checks), drop its own adverts
//! (by source address), encode [`Action::SendAdvert`] with its addresses, and apply Accept_Mode
//! (RFC 5798 §6.1) to traffic for the virtual addresses, which the machine only carries in its
//! configuration.
//!
//! Numbers in parentheses, e.g. §6.4.2 (470), are the line labels of the RFC 5798 §6.4
//! pseudo-code.
//!
//! Rules beyond the RFC, chosen here and tested in `machine/tests.rs` and `tests/election.rs`:
//! - **Tracking** ([`Input::SetPriorityDelta`]): effective priority = configured priority +
//!   delta, clamped to 1..=254. An address owner (configured priority 255) is never lowered or
//!   raised: it owns the addresses, so it is master whenever it runs (as keepalived does).
//! - **Preempt delay**: see [`MachineConfig::preempt_delay`].
//! - **Fault** ([`Input::Fault`]): see [`Input::Fault`].
//! - **Relinquish** (the admin "swap"): see [`Input::Relinquish`].
//! - **Adverts at their arrival time**: an advert is handled at the time it arrived (see
//!   [`Input::Advert`]): a timer restarted by it runs from then, so a backup read late judges
//!   its master by when the adverts came, not by when it got round to reading them. A backup
//!   whose Master_Down_Timer ran out before a waiting advert of its master arrived keeps that
//!   master (margin zero) rather than flap.
//! - **Held-up grace**: a backup whose Master_Down_Timer (started by its master's advert) is
//!   served late, by more than a quarter of Master_Adver_Interval, was not listening for that
//!   long: it listens as long again (at most one Master_Down_Interval) before taking over,
//!   once per timer. On a machine that stalls every thread at once (a virtual machine whose
//!   CPUs the host takes away), the master was stalled too and sends its overdue advert as soon
//!   as it runs; without the grace the backup, scheduled first, took over and gave the role
//!   back milliseconds later. A backup served on time takes over on time; one held up while its
//!   master died takes over the time it was held up later. See [`Machine::held_up`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::packet::Version;

/// The priority of the router that owns the virtual addresses (RFC 5798 §5.2.4).
pub const OWNER_PRIORITY: u8 = 255;
/// The priority a master sends when it stops being master (RFC 5798 §5.2.4).
pub const STOP_PRIORITY: u8 = 0;
/// The longest accepted [`MachineConfig::preempt_delay`] (keepalived's limit, 1000 s).
pub const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
/// The shortest and longest Master_Adver_Interval a backup learns from an advert: one
/// centisecond and the 12-bit maximum of 4095 cs (RFC 5798 §5.2.7). An out-of-range value (which
/// the decoder never yields) is clamped, so no timer is ever due at once or overflows.
const LEARNED_INTERVAL: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(40_950));

/// How one virtual router is configured (RFC 5798 §6.1 parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// VRRPv3 (RFC 5798) or VRRPv2 (RFC 3768).
    pub version: Version,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// 1..=255; 255 means this router owns the virtual addresses (RFC 5798 §6.1 Priority).
    pub priority: u8,
    /// Advertisement_Interval: v3 a whole number of centiseconds up to 40.95 s, v2 whole
    /// seconds up to 255 s ([`Version::wire_interval`]).
    pub advert_interval: Duration,
    /// Preempt_Mode (RFC 5798 §6.1): whether a higher-priority backup takes over from a
    /// lower-priority master. An owner always takes over, whatever this says (§6.4.1).
    pub preempt: bool,
    /// Preemption hold-off (keepalived's `preempt_delay`, at most [`MAX_PREEMPT_DELAY`]).
    ///
    /// The rule: a backup that may preempt keeps *accepting* the lower-priority master's adverts
    /// (resetting its Master_Down_Timer, as if `preempt` were off) until `preempt_delay` has
    /// passed since the first such advert. The clock restarts whenever an advert of equal or
    /// higher priority, or of priority 0, arrives, and whenever the machine enters Backup. From
    /// that instant on, lower-priority adverts are discarded (RFC 5798 §6.4.2 (470)), so the
    /// backup takes over one Master_Down_Interval after the last advert it accepted: after
    /// startup next to a running lower-priority master, and again after a tracked check
    /// recovers. Zero is the plain RFC behaviour. A backup that hears no master at all is not
    /// held: its Master_Down_Timer fires as usual.
    pub preempt_delay: Duration,
    /// Accept_Mode (RFC 5798 §6.1). Carried for the caller, which applies it; the election does
    /// not depend on it.
    pub accept_mode: bool,
    /// Our primary address on the link: the source of our adverts, compared with the sender's
    /// in the tie-break between two masters of equal priority (RFC 5798 §6.4.3 (730)-(735)).
    pub primary_address: IpAddr,
}

impl MachineConfig {
    /// Checks the ranges RFC 5798 §5.2 and §6.1 allow; [`Machine::new`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if self.priority == STOP_PRIORITY {
            return Err(ConfigError::Priority);
        }
        if self.version.wire_interval(self.advert_interval).is_none() {
            return Err(ConfigError::Interval(self.advert_interval));
        }
        if self.version == Version::V2 && !self.primary_address.is_ipv4() {
            return Err(ConfigError::V2OverIpv6);
        }
        if self.preempt_delay > MAX_PREEMPT_DELAY {
            return Err(ConfigError::PreemptDelay(self.preempt_delay));
        }
        Ok(())
    }
}

/// A [`MachineConfig`] the protocol cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// VRID 0 (RFC 5798 §5.2.3).
    #[error("virtual router id must be 1..=255")]
    Vrid,
    /// Priority 0 is reserved for a stopping master (RFC 5798 §5.2.4).
    #[error("priority must be 1..=255 (0 means a master is stopping)")]
    Priority,
    /// Not representable on the wire ([`Version::wire_interval`]).
    #[error(
        "advert interval {0:?} is not representable (v3: 10 ms steps up to 40.95 s; v2: 1..=255 s)"
    )]
    Interval(Duration),
    /// VRRPv2 is IPv4 only (RFC 3768 §5.1).
    #[error("VRRPv2 needs an IPv4 primary address")]
    V2OverIpv6,
    /// Longer than [`MAX_PREEMPT_DELAY`].
    #[error("preempt delay {0:?} is longer than 1000 s")]
    PreemptDelay(Duration),
}

/// Where the virtual router stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running: before [`Input::Startup`] and after [`Input::Shutdown`] (RFC 5798 §6.4.1).
    Initialize,
    /// Watching the master, ready to take over (§6.4.2).
    Backup,
    /// Holding the virtual addresses and advertising (§6.4.3).
    Master,
    /// Not taking part: a tracked interface or check is down. Not in the RFC; keepalived's FAULT.
    Fault,
}

impl State {
    /// The name notify scripts and logs use, as keepalived spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened, for [`Machine::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Start the virtual router (RFC 5798 §6.4.1). Ignored unless in Initialize.
    Startup,
    /// Stop it (§6.4.2 (345)-(355), §6.4.3 (655)-(670)): a master sends priority 0 and
    /// releases the addresses. Goes to Initialize from any state; a later Startup starts again.
    Shutdown,
    /// The deadline of [`Machine::next_timeout`] has come: Adver_Timer in Master,
    /// Master_Down_Timer in Backup. Harmless if early (nothing is due, nothing happens).
    Timeout,
    /// A received advertisement, already decoded and checked (TTL, version, VRID) by the caller.
    ///
    /// Its `now` is the time it *arrived* (the kernel's receive timestamp), not the time it was
    /// read: a timer restarted by it runs from its arrival. The caller reads the adverts
    /// waiting before it serves an overdue timer, so an advert that arrived before the deadline
    /// but is read after it (the caller was held up) holds the backup as if read on time.
    ///
    /// If the timer fell due at or before the arrival: a master's Adver_Timer fires first. A
    /// backup that follows the advert's sender keeps it as master without firing its
    /// Master_Down_Timer, and records a margin of zero: the master is alive (its advert was
    /// waiting), and a takeover would only send the VIP over and back. A backup that would not
    /// follow it (a lower master it may preempt) fires the timer first and takes over. A
    /// backup served on time, before the late advert came, took over already.
    Advert {
        /// The sender's primary address (the IP source).
        src: IpAddr,
        /// The sender's priority; 0 means it is leaving the master role.
        priority: u8,
        /// The interval it carries (v3 Max Adver Int, v2 Adver Int).
        interval: Duration,
    },
    /// The sum of the weights of the tracked checks that currently apply (keepalived's
    /// `weight`): negative lowers the effective priority, positive raises it, within 1..=254.
    /// It replaces the previous delta. An owner (priority 255) ignores it.
    ///
    /// A master advertises the new priority from its next advert on; a master whose priority
    /// fell below a backup's loses by that backup's preempt rule. A backup's Skew_Time and
    /// Master_Down_Interval follow the new priority from the next time they are used.
    SetPriorityDelta(i32),
    /// A tracked interface or check went down (`true`) or came back (`false`); the caller
    /// combines all its fault sources into this one flag.
    ///
    /// Down: a master sends one priority-0 advert (so a backup takes over after its Skew_Time
    /// rather than a whole Master_Down_Interval, if the link still carries it), releases the
    /// addresses and goes to Fault; a backup goes to Fault. No adverts are sent and none are
    /// heard while in Fault. In Initialize the flag is remembered: Startup then goes to Fault.
    ///
    /// Up: Fault is left by the Startup rules (§6.4.1): an owner becomes Master at once,
    /// anyone else becomes Backup with a fresh Master_Down_Timer, so it waits a full
    /// Master_Down_Interval for the current master before claiming the addresses.
    Fault(bool),
    /// Hand the master role to a peer (the admin "swap"). Ignored unless Master, and ignored by
    /// an owner, which is master whenever it runs.
    ///
    /// A master sends a priority-0 advert (so the best backup takes over after its Skew_Time),
    /// releases the addresses and becomes Backup with a Master_Down_Timer of a full
    /// Master_Down_Interval. It then does not preempt: it accepts the new master's adverts
    /// whatever their priority, as if `preempt` were off, until it next becomes master by the
    /// normal rules (the new master stops, fails or relinquishes in turn), or goes through
    /// Fault or Initialize. If no peer takes over, its own Master_Down_Timer makes it master
    /// again, so a swap never leaves the addresses unowned.
    Relinquish,
}

/// What the caller must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (the effective priority, or 0 when resigning),
    /// with the configured interval and virtual addresses.
    SendAdvert {
        /// The priority to put in the advert.
        priority: u8,
    },
    /// Add the virtual addresses and announce them: gratuitous ARP for IPv4, unsolicited
    /// Neighbor Advertisements for IPv6 (RFC 5798 §6.4.1, §6.4.2 (375)-(400)).
    AddVips,
    /// Remove the virtual addresses: we are no longer master (RFC 5798 §6.4.3, leaving Master).
    RemoveVips,
    /// The state changed; run notify scripts, log, update metrics. Every change is reported,
    /// always after the effects above that belong to it.
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// What made it change.
        why: Why,
    },
}

/// What made the machine change state: for the log, the status page and the operator, who
/// asks "why did the VIP move" at the worst time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Started (or left Fault) as a non-owner: a backup waiting for a master.
    Started,
    /// The address owner (priority 255) is master whenever it runs.
    Owner,
    /// No advert from a master within Master_Down_Interval.
    MasterDown,
    /// The master resigned (a priority-0 advert) and this backup's Skew_Time ran out first.
    MasterResigned,
    /// This backup discarded a lower-priority master's adverts (preempt) and took over.
    Preempted,
    /// A master heard a better one: a higher priority, or an equal one from a higher address.
    BetterMaster,
    /// A fault: a tracked link or check is down, or the host refused what VRRP needs.
    Fault,
    /// The fault cleared.
    FaultCleared,
    /// An operator handed the master role over (swap).
    Relinquished,
    /// The router was stopped.
    Shutdown,
}

impl Why {
    /// A short name, for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Started => "started",
            Why::Owner => "owner",
            Why::MasterDown => "master_down",
            Why::MasterResigned => "master_resigned",
            Why::Preempted => "preempted",
            Why::BetterMaster => "better_master",
            Why::Fault => "fault",
            Why::FaultCleared => "fault_cleared",
            Why::Relinquished => "relinquished",
            Why::Shutdown => "shutdown",
        }
    }

    /// The same in a sentence an operator reads.
    pub fn describe(self) -> &'static str {
        match self {
            Why::Started => "started as a backup, waiting for a master",
            Why::Owner => "the address owner (priority 255) is master whenever it runs",
            Why::MasterDown => "no advert from a master within Master_Down_Interval",
            Why::MasterResigned => "the master resigned (priority-0 advert)",
            Why::Preempted => "took over from a lower-priority master (preempt)",
            Why::BetterMaster => "heard a master with a higher priority",
            Why::Fault => {
                "a fault: a tracked link or check is down, or this host refused the VIPs or the VRRP socket"
            }
            Why::FaultCleared => "the fault cleared; waiting for a master",
            Why::Relinquished => "an operator handed the master role over (swap)",
            Why::Shutdown => "stopped",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// One virtual router's protocol state. See the module docs for how to drive it.
#[derive(Debug, Clone)]
pub struct Machine {
    config: MachineConfig,
    state: State,
    /// The tracking delta last set; kept while stopped or in Fault.
    delta: i32,
    /// The priority in use: configured priority + delta, clamped (see [`Input::SetPriorityDelta`]).
    effective: u8,
    /// The fault flag last set by [`Input::Fault`].
    fault: bool,
    /// Master_Adver_Interval (RFC 5798 §6.1): learned from the master's adverts in v3, the
    /// configured Advertisement_Interval in v2.
    master_adver_interval: Duration,
    /// Adver_Timer in Master, Master_Down_Timer in Backup, `None` otherwise.
    timer: Option<Instant>,
    /// The current master as last seen (ourselves when Master).
    master: Option<IpAddr>,
    /// When the current run of lower-priority adverts began (preempt delay clock).
    lower_since: Option<Instant>,
    /// Set by Relinquish: do not preempt until we next become master.
    yielded: bool,
    /// The Master_Down_Timer was started by the master's advert ((450)-(460)), not by entering
    /// Backup or by a priority-0 advert: only then does its deadline say how late the master's
    /// next advert is.
    timer_by_advert: bool,
    /// The Master_Down margin of the input last handled ([`Machine::master_down_margin`]).
    margin: Option<Duration>,
    /// The current Master_Down_Timer is a held-up grace: it will not be extended again.
    graced: bool,
    /// How late the input last handled served the Master_Down_Timer, when it granted a
    /// held-up grace ([`Machine::held_up`]).
    held_up: Option<Duration>,
    /// What a takeover by the running Master_Down_Timer would be due to.
    takeover: Why,
}

impl Machine {
    /// A machine in Initialize, waiting for [`Input::Startup`].
    pub fn new(config: MachineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut machine = Self {
            master_adver_interval: config.advert_interval,
            effective: config.priority,
            config,
            state: State::Initialize,
            delta: 0,
            fault: false,
            timer: None,
            master: None,
            lower_since: None,
            yielded: false,
            timer_by_advert: false,
            margin: None,
            graced: false,
            held_up: None,
            takeover: Why::MasterDown,
        };
        machine.effective = machine.compute_effective();
        Ok(machine)
    }

    /// Applies one input at time `now`; returns what the caller must do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle_into(now, input, &mut out);
        out
    }

    /// [`Machine::handle`], appending the actions to `out`: a caller that reuses one vector
    /// allocates nothing per input.
    pub fn handle_into(&mut self, now: Instant, input: Input, out: &mut Vec<Action>) {
        self.margin = None;
        self.held_up = None;
        match input {
            Input::Startup => {
                if self.state == State::Initialize {
                    self.start(now, Why::Started, out);
                }
            }
            Input::Shutdown => self.shutdown(out),
            Input::Timeout => self.timeout(now, out),
            Input::Advert {
                src,
                priority,
                interval,
            } => self.advert(now, src, priority, interval, out),
            Input::SetPriorityDelta(delta) => {
                self.delta = delta;
                self.effective = self.compute_effective();
            }
            Input::Fault(down) => self.set_fault(now, down, out),
            Input::Relinquish => self.relinquish(now, out),
        }
    }

    /// The earliest instant at which [`Input::Timeout`] has work: `Some` exactly in Backup and
    /// Master, and always later than the `now` of the last [`Machine::handle`] call.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The priority we advertise and compare with: configured priority plus tracking delta.
    pub fn effective_priority(&self) -> u8 {
        self.effective
    }

    /// The current master as last seen: our own primary address when Master, the source of the
    /// last non-zero-priority advert when Backup (`None` until one arrives or after a priority-0
    /// advert), `None` in Initialize and Fault.
    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    /// The configuration the machine runs with.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// Master_Adver_Interval (RFC 5798 §6.1): the interval a backup expects from its master.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time at the current effective priority. v3 (RFC 5798 §6.1):
    /// `((256 - Priority) * Master_Adver_Interval) / 256`; v2 (RFC 3768 §6.1):
    /// `(256 - Priority) / 256` seconds. Computed to the nanosecond, not rounded to centiseconds.
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u32::from(self.effective);
        let base = match self.config.version {
            Version::V3 => self.master_adver_interval,
            Version::V2 => Duration::from_secs(1),
        };
        base * weight / 256
    }

    /// On a backup, how much of the Master_Down_Interval was left when the advert last handled
    /// arrived: `Some` when that advert came from the master we follow and restarted a
    /// Master_Down_Timer that the master's previous advert had started; zero when it arrived at
    /// or after the deadline (then the timer fired first: a takeover). `None` after any other
    /// input. How close the pair came to a takeover, advert by advert.
    pub fn master_down_margin(&self) -> Option<Duration> {
        self.margin
    }

    /// On a backup, how late the input last handled served the Master_Down_Timer, when the
    /// machine did not take over for it but granted a held-up grace (see the module docs):
    /// `Some` once per grace, for the caller to count. `None` after any other input.
    pub fn held_up(&self) -> Option<Duration> {
        self.held_up
    }

    /// Master_Down_Interval: `3 * Master_Adver_Interval + Skew_Time` (RFC 5798 §6.1; in v2,
    /// RFC 3768 §6.1, the interval is the configured Advertisement_Interval, which is what
    /// Master_Adver_Interval holds there).
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    fn is_owner(&self) -> bool {
        self.config.priority == OWNER_PRIORITY
    }

    fn compute_effective(&self) -> u8 {
        if self.is_owner() {
            return OWNER_PRIORITY;
        }
        let p = i32::from(self.config.priority).saturating_add(self.delta);
        // The clamp keeps it within one byte.
        p.clamp(1, i32::from(OWNER_PRIORITY) - 1) as u8
    }

    fn enter(&mut self, to: State, why: Why, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        out.push(Action::Transition { from, to, why });
    }

    /// RFC 5798 §6.4.1: the Startup event, also used to leave Fault (`why` says which).
    fn start(&mut self, now: Instant, why: Why, out: &mut Vec<Action>) {
        if self.fault {
            self.enter(State::Fault, Why::Fault, out);
        } else if self.is_owner() {
            // Priority = 255: the owner goes straight to Master.
            self.become_master(now, Why::Owner, out);
        } else {
            // (155)-(160), then Backup.
            self.master_adver_interval = self.config.advert_interval;
            self.become_backup(now, why, out);
        }
    }

    /// RFC 5798 §6.4.2 (370)-(410), and the owner's branch of §6.4.1.
    fn become_master(&mut self, now: Instant, why: Why, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert {
            priority: self.effective,
        });
        out.push(Action::AddVips);
        self.timer = Some(now + self.config.advert_interval);
        self.master = Some(self.config.primary_address);
        self.lower_since = None;
        self.yielded = false;
        self.enter(State::Master, why, out);
    }

    /// Enters Backup with Master_Down_Timer = Master_Down_Interval (§6.4.1 (160), §6.4.3 (760)),
    /// Master_Adver_Interval already set by the caller.
    fn become_backup(&mut self, now: Instant, why: Why, out: &mut Vec<Action>) {
        self.timer = Some(now + self.master_down_interval());
        self.timer_by_advert = false;
        self.graced = false;
        self.takeover = Why::MasterDown;
        self.lower_since = None;
        self.enter(State::Backup, why, out);
    }

    /// Releases the master role: optional priority-0 advert, then the addresses.
    fn leave_master(send_stop: bool, out: &mut Vec<Action>) {
        if send_stop {
            out.push(Action::SendAdvert {
                priority: STOP_PRIORITY,
            });
        }
        out.push(Action::RemoveVips);
    }

    /// §6.4.2 (345)-(355), §6.4.3 (655)-(670).
    fn shutdown(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Initialize => return,
            State::Master => Self::leave_master(true, out),
            State::Backup | State::Fault => {}
        }
        self.stop_timers();
        self.enter(State::Initialize, Why::Shutdown, out);
    }

    fn stop_timers(&mut self) {
        self.timer = None;
        self.timer_by_advert = false;
        self.graced = false;
        self.master = None;
        self.lower_since = None;
        self.yielded = false;
    }

    fn timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(deadline) = self.timer else { return };
        if now < deadline {
            return;
        }
        match self.state {
            // §6.4.3 (685)-(690): the Adver_Timer fires.
            State::Master => {
                out.push(Action::SendAdvert {
                    priority: self.effective,
                });
                self.timer = Some(now + self.config.advert_interval);
            }
            // §6.4.2 (370)-(410): the Master_Down_Timer fires, unless the caller was held up
            // and owes the master the time it was not listening (module docs).
            State::Backup => {
                let held_up = now - deadline;
                if self.timer_by_advert && !self.graced && held_up > self.master_adver_interval / 4
                {
                    self.timer = Some(now + held_up.min(self.master_down_interval()));
                    self.graced = true;
                    self.held_up = Some(held_up);
                } else {
                    self.become_master(now, self.takeover, out);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// Whether a backup may discard a lower-priority master's advert (and so preempt it).
    fn may_preempt(&self, now: Instant) -> bool {
        if !self.config.preempt || self.yielded {
            return false;
        }
        if self.config.preempt_delay.is_zero() {
            return true;
        }
        self.lower_since
            .is_some_and(|since| now >= since + self.config.preempt_delay)
    }

    /// Whether a backup accepts a (non-zero) advert of `priority` as its master's: restarts its
    /// Master_Down_Timer rather than discarding it to preempt (RFC 5798 §6.4.2 (450)-(470)).
    /// The same before and after the advert starts the preempt-delay clock: a clock started by
    /// this advert has not run out by it.
    fn follows(&self, now: Instant, priority: u8) -> bool {
        priority >= self.effective || !self.may_preempt(now)
    }

    fn advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        priority: u8,
        interval: Duration,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.state, State::Backup | State::Master) {
            return;
        }
        // RFC 5798 §7.1: the address owner discards every advert for its VRID.
        // RFC 3768 §7.1: a v2 advert whose interval differs from ours MUST be discarded.
        let discarded = self.is_owner()
            || (self.config.version == Version::V2 && interval != self.config.advert_interval);
        // The advert arrived at `now`, after a timer that fell due by then. A master's timer
        // fires first (its advert is due). A backup's Master_Down_Timer ran out before the
        // master's advert came, but the advert was already waiting when the backup got to the
        // timer (the caller reads waiting adverts first): the master is alive, and a takeover
        // now would only flap the VIP and back. The master keeps its role, whichever timer ran
        // out: one its last advert started (the margin was zero, which the caller counts and
        // warns about), the first after entering Backup (a backup held up before it heard the
        // master), or a resignation's Skew_Time (another router already advertises as master).
        if self.timer.is_some_and(|deadline| deadline <= now) {
            let keeps_the_master = self.state == State::Backup
                && !discarded
                && priority != STOP_PRIORITY
                && self.follows(now, priority);
            if !keeps_the_master {
                self.timeout(now, out);
            }
        }
        if discarded {
            return;
        }
        let learned = interval.clamp(LEARNED_INTERVAL.0, LEARNED_INTERVAL.1);
        match self.state {
            State::Backup => self.backup_advert(now, src, priority, learned),
            State::Master => self.master_advert(now, src, priority, learned, out),
            State::Initialize | State::Fault => {}
        }
    }

    /// RFC 5798 §6.4.2 (420)-(470).
    fn backup_advert(&mut self, now: Instant, src: IpAddr, priority: u8, interval: Duration) {
        if priority == STOP_PRIORITY {
            // (430): the master resigns; the best backup (shortest skew) takes over.
            self.timer = Some(now + self.skew_time());
            self.timer_by_advert = false;
            self.graced = false;
            self.takeover = Why::MasterResigned;
            self.master = None;
            self.lower_since = None;
            return;
        }
        self.master = Some(src);
        let follows = self.follows(now, priority);
        if priority >= self.effective {
            self.lower_since = None;
        } else if self.lower_since.is_none() {
            self.lower_since = Some(now);
        }
        if follows {
            // (450)-(460); only v3 learns the interval (v2 already discarded a mismatch).
            if self.timer_by_advert {
                // Heard during a held-up grace: past the real deadline.
                self.margin = if self.graced {
                    Some(Duration::ZERO)
                } else {
                    self.timer
                        .map(|deadline| deadline.saturating_duration_since(now))
                };
            }
            if self.config.version == Version::V3 {
                self.master_adver_interval = interval;
            }
            self.timer = Some(now + self.master_down_interval());
            self.timer_by_advert = true;
            self.graced = false;
            self.takeover = Why::MasterDown;
        } else {
            // (470): discard, and let the Master_Down_Timer run out.
            self.takeover = Why::Preempted;
        }
    }

    /// RFC 5798 §6.4.3 (710)-(775).
    fn master_advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        priority: u8,
        interval: Duration,
        out: &mut Vec<Action>,
    ) {
        if priority == STOP_PRIORITY {
            // (710)-(715): answer at once so the backups see a live master.
            out.push(Action::SendAdvert {
                priority: self.effective,
            });
            self.timer = Some(now + self.config.advert_interval);
            return;
        }
        let wins = priority > self.effective
            || (priority == self.effective && src > self.config.primary_address);
        if !wins {
            return; // (775)
        }
        // (740)-(765)
        Self::leave_master(false, out);
        self.master_adver_interval = match self.config.version {
            Version::V3 => interval,
            Version::V2 => self.config.advert_interval,
        };
        self.become_backup(now, Why::BetterMaster, out);
        self.master = Some(src);
    }

    fn set_fault(&mut self, now: Instant, down: bool, out: &mut Vec<Action>) {
        self.fault = down;
        match (down, self.state) {
            (true, State::Master) => {
                Self::leave_master(true, out);
                self.stop_timers();
                self.enter(State::Fault, Why::Fault, out);
            }
            (true, State::Backup) => {
                self.stop_timers();
                self.enter(State::Fault, Why::Fault, out);
            }
            (false, State::Fault) => self.start(now, Why::FaultCleared, out),
            _ => {}
        }
    }

    fn relinquish(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Master || self.is_owner() {
            return;
        }
        Self::leave_master(true, out);
        self.master_adver_interval = self.config.advert_interval;
        self.master = None;
        self.become_backup(now, Why::Relinquished, out);
        self.yielded = true;
    }
}

#[cfg(test)]
mod tests;
