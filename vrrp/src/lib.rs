//! `vrrp` owns one question: which node holds a virtual IP.
//!
//! It speaks VRRPv3 (RFC 5798) over IPv4 and IPv6, and VRRPv2 (RFC 3768) over IPv4, so it can
//! stand in a group with keepalived. It knows nothing of `lb` or `healthcheck`: the daemon in
//! `lb` turns health results into [`Input::SetPriorityDelta`] or [`Input::Fault`], and admin
//! commands into [`Input::Relinquish`].
//!
//! The crate is split like quinn: a pure core that is all the protocol, and a thin shell that is
//! all the I/O.
//!
//! - [`packet`] (pure): the wire codec. [`encode`] / [`decode`] the VRRP message with its
//!   checksum, [`parse_ipv4`] the header a raw socket delivers, [`check_ttl`] the RFC 5798 §7.1
//!   TTL rule. [`DecodeError::reason`] labels drop counters.
//! - [`machine`] (pure): the RFC 5798 §6 state machine plus Fault. Time is always an argument:
//!   [`Machine::handle`] takes `now` and an [`Input`] and returns [`Action`]s;
//!   [`Machine::next_timeout`] says when to call it again. No sockets, no clock reads, so
//!   elections, preemption and split brain are tested in memory on a fake clock.
//! - [`accept`] (pure): which received messages count as adverts for an instance (TTL, the
//!   codec's checks, our own source, the unicast peer allow-list, vrid, version).
//! - [`timing`] (pure): how close the election runs to its deadlines (send lateness on a
//!   master, the Master_Down margin on a backup) in fixed histograms, and an advert's arrival
//!   time from the kernel's receive timestamp.
//! - [`host_fault`] (pure): what the host refuses or fails (the raw socket, a VIP) and when an
//!   instance held in FAULT for it tries again: said once, retried quietly on a backoff.
//! - The shell: `sys` (raw sockets, netlink, ARP / NA: the only code that talks to the kernel),
//!   `instance` (the tokio task that sleeps until `next_timeout`, feeds accepted adverts in and
//!   carries out the actions), `instances` (a node's set of instances as keepalived runs them:
//!   reload by difference, sync groups, stop order) and `notify` (scripts on role changes).
//!   The pure modules never depend on them.
//!
//! Use [`packet`] alone to inspect or craft adverts; use [`machine`] with your own I/O to run
//! an election; use `instance` to run one on a real interface, `instances` to run a node's.
//!
//! `unsafe` is forbidden: the raw calls it would need are the `syscall` crate's.
#![forbid(unsafe_code)]

pub mod accept;
pub mod host_fault;
pub mod instance;
pub mod instances;
pub mod machine;
pub mod notify;
pub mod packet;
pub mod sys;
pub mod timing;

pub use machine::{
    Action, ConfigError, Input, MAX_PREEMPT_DELAY, Machine, MachineConfig, OWNER_PRIORITY,
    STOP_PRIORITY, State, Why,
};
pub use packet::{
    Advert, DecodeError, EncodeError, Header, Ipv4Meta, MULTICAST_V4, MULTICAST_V6, PROTOCOL, TTL,
    Version, check_ttl, decode, decode_header, encode, encode_into, parse_ipv4,
};
