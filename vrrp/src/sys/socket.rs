//! Raw IP protocol 112 sockets: where adverts leave and arrive (RFC 5798 §5.1).
//!
//! Two sockets per instance and address family. The receiving one is bound to the interface
//! and joined to the VRRP group, so it sees every advert on that link (each instance filters by
//! VRID). The sending one is bound to the node's own address on the link, so that address is
//! the advert's source — the one peers use for the tie-break (§6.4.3) — even when a VIP of the
//! same subnet is present. Both carry TTL / hop limit 255 (§5.1.1.3): routers drop anything
//! else, so an advert can never come from beyond the link.

#![allow(unsafe_code)]

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::link::Link;

/// IANA protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const IPPROTO_VRRP: i32 = 112;
/// The VRRP IPv4 multicast group (RFC 5798 §5.1.1.2).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The VRRP IPv6 multicast group (RFC 5798 §5.1.2.2).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL and hop limit of every advert (RFC 5798 §5.1.1.3, §5.1.2.3).
pub const TTL: u32 = 255;
/// DSCP "network control" (CS6), as routers mark their control traffic.
const TOS_NETWORK_CONTROL: u32 = 0xc0;

/// The adverts of one instance over IPv4: multicast on its link, or unicast to listed peers.
pub struct AdvertSocketV4 {
    rx: AsyncFd<Socket>,
    tx: Socket,
    source: Ipv4Addr,
}

impl AdvertSocketV4 {
    /// Opens both sockets on `link`, sending from `source`. `multicast` joins 224.0.0.18;
    /// unicast-only instances receive adverts addressed to this node without joining.
    pub fn open(link: &Link, source: Ipv4Addr, multicast: bool) -> io::Result<Self> {
        let proto = Some(Protocol::from(IPPROTO_VRRP));
        let rx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
        rx.bind_device(Some(link.name.as_bytes()))?;
        if multicast {
            rx.join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(link.index))?;
        }
        rx.set_nonblocking(true)?;

        let tx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
        tx.bind_device(Some(link.name.as_bytes()))?;
        tx.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
        tx.set_multicast_if_v4(&source)?;
        tx.set_multicast_ttl_v4(TTL)?;
        tx.set_ttl_v4(TTL)?;
        // Our own adverts are never news to us.
        tx.set_multicast_loop_v4(false)?;
        tx.set_tos_v4(TOS_NETWORK_CONTROL)?;
        tx.set_nonblocking(true)?;
        // SAFETY: the `Socket` owns its descriptor, always reports that same one, and closes it
        // only when dropped, which happens when the `AsyncFd` drops it.
        let rx = unsafe { AsyncFd::register_with_interest(rx, Interest::READABLE) }?;
        Ok(Self { rx, tx, source })
    }

    /// The address adverts are sent from.
    pub fn source(&self) -> Ipv4Addr {
        self.source
    }

    /// Sends one VRRP message (no IP header: the kernel adds it) to `dst`.
    pub fn send(&self, message: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::new(IpAddr::V4(dst), 0));
        let sent = self.tx.send_to(message, &to)?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "advert sent in part",
            ));
        }
        Ok(())
    }

    /// Waits for the next packet: a whole IPv4 datagram, IP header included (raw IPv4
    /// sockets deliver it, which is how the TTL is checked). Returns its length in `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.rx.readable().await?;
            match ready.try_io(|fd| fd.get_ref().read(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}
