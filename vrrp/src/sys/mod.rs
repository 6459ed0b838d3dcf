//! The shell: the only code that talks to the kernel.
//!
//! - [`link`]: interface index, MAC and up/down (sysfs).
//! - [`socket`]: raw protocol-112 sockets that send and receive adverts.
//! - [`addr`]: VIPs added and removed with rtnetlink.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements.
//!
//! `unsafe` is allowed here only: to build a link-layer socket address (`announce`), and to
//! register raw sockets with tokio and read control messages (`socket`).

pub mod addr;
pub mod announce;
pub mod link;
pub mod socket;
