//! The shell: the only code that talks to the kernel.
//!
//! - [`link`]: interface index, MAC and up/down (sysfs).
//! - [`socket`]: raw protocol-112 sockets that send and receive adverts.
//! - [`addr`]: VIPs added and removed with rtnetlink.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements.
//!
//! What needs `unsafe` (registering raw sockets with tokio, reading control messages, a
//! link-layer socket address) is the workspace's `syscall` crate's.

pub mod addr;
pub mod announce;
pub mod link;
pub mod socket;
