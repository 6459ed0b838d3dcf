//! Raw IP protocol 112 sockets: where adverts leave and arrive (RFC 5798 §5.1).
//!
//! Two sockets per instance and address family. The receiving one is bound to the interface
//! and joined to the VRRP group, so it sees every advert on that link (each instance filters by
//! VRID). The sending one is bound to the node's own address on the link, so that address is
//! the advert's source — the one peers use for the tie-break (§6.4.3) — even when a VIP of the
//! same subnet is present. Both carry TTL / hop limit 255 (§5.1.1.3): routers drop anything
//! else, so an advert can never come from beyond the link.
//!
//! The receiving sockets ask the kernel to stamp each packet with the time it arrived
//! (`SO_TIMESTAMPNS`): an advert read late (the election's thread was held up) is judged by
//! when it came, not when it was read. A receive allocates nothing.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::SystemTime;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::addr::is_link_local;
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
        syscall::socket::set_receive_timestamps(&rx)?;
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
        // Never read: the kernel still queues protocol-112 packets addressed to us on it, so
        // keep that queue as small as the kernel allows.
        tx.set_recv_buffer_size(1)?;
        let rx = syscall::reactor::register(rx, Interest::READABLE)?;
        Ok(Self { rx, tx, source })
    }

    /// The address adverts are sent from.
    pub fn source(&self) -> Ipv4Addr {
        self.source
    }

    /// Sends one VRRP message (no IP header: the kernel adds it) to `dst`.
    pub fn send(&self, message: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        send_whole(
            &self.tx,
            message,
            SocketAddr::new(IpAddr::V4(dst), 0).into(),
        )
    }

    /// Waits for the next packet: a whole IPv4 datagram, IP header included (raw IPv4
    /// sockets deliver it, which is how the TTL is checked), in `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<ReceivedV4> {
        self.rx
            .async_io(Interest::READABLE, |socket| recv_v4(socket, buf))
            .await
    }

    /// The next packet already waiting, without waiting for one; `None` when none is.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<ReceivedV4>> {
        would_block_is_none(recv_v4(self.rx.get_ref(), buf))
    }
}

/// One packet received over IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedV4 {
    /// The whole datagram's length, IP header included.
    pub len: usize,
    /// When the kernel received it (real-time clock); `None` if it did not say.
    pub arrived: Option<SystemTime>,
}

fn recv_v4(socket: &Socket, buf: &mut [u8]) -> io::Result<ReceivedV4> {
    let datagram = syscall::socket::recv_with_control(socket, buf)?;
    Ok(ReceivedV4 {
        len: datagram.len,
        arrived: datagram.received_at(),
    })
}

/// A non-blocking receive's result, with "nothing waiting" as `None`.
fn would_block_is_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// `IPPROTO_IPV6` / `IPV6_HOPLIMIT` as they appear in a control message (RFC 3542 §6.3).
const CMSG_LEVEL_IPV6: i32 = 41;
const CMSG_TYPE_HOPLIMIT: i32 = 52;

/// One advert received over IPv6: the kernel strips the IPv6 header, so the source comes from
/// the socket address and the hop limit from a control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedV6 {
    pub len: usize,
    pub src: Ipv6Addr,
    /// `None` when the kernel did not report it (then the advert must be dropped).
    pub hop_limit: Option<u8>,
    /// When the kernel received it (real-time clock); `None` if it did not say.
    pub arrived: Option<SystemTime>,
}

/// The adverts of one instance over IPv6 (RFC 5798 §5.1.2): from the link-local address, to
/// ff02::12 or to unicast peers.
pub struct AdvertSocketV6 {
    rx: AsyncFd<Socket>,
    tx: Socket,
    source: Ipv6Addr,
    index: u32,
}

impl AdvertSocketV6 {
    /// Opens both sockets on `link`, sending from `source` (its link-local address).
    pub fn open(link: &Link, source: Ipv6Addr, multicast: bool) -> io::Result<Self> {
        let proto = Some(Protocol::from(IPPROTO_VRRP));
        let rx = Socket::new(Domain::IPV6, Type::RAW, proto)?;
        rx.bind_device(Some(link.name.as_bytes()))?;
        if multicast {
            rx.join_multicast_v6(&GROUP_V6, link.index)?;
        }
        rx.set_recv_hoplimit_v6(true)?;
        syscall::socket::set_receive_timestamps(&rx)?;
        rx.set_nonblocking(true)?;

        let tx = Socket::new(Domain::IPV6, Type::RAW, proto)?;
        tx.bind_device(Some(link.name.as_bytes()))?;
        let scope = if is_link_local(IpAddr::V6(source)) {
            link.index
        } else {
            0
        };
        tx.bind(&SockAddr::from(std::net::SocketAddrV6::new(
            source, 0, 0, scope,
        )))?;
        tx.set_multicast_if_v6(link.index)?;
        tx.set_multicast_hops_v6(TTL)?;
        tx.set_unicast_hops_v6(TTL)?;
        tx.set_multicast_loop_v6(false)?;
        tx.set_nonblocking(true)?;
        // Never read: the kernel still queues protocol-112 packets addressed to us on it, so
        // keep that queue as small as the kernel allows.
        tx.set_recv_buffer_size(1)?;
        let rx = syscall::reactor::register(rx, Interest::READABLE)?;
        Ok(Self {
            rx,
            tx,
            source,
            index: link.index,
        })
    }

    pub fn source(&self) -> Ipv6Addr {
        self.source
    }

    /// Sends one VRRP message (checksum already set, over the pseudo-header with our source).
    pub fn send(&self, message: &[u8], dst: Ipv6Addr) -> io::Result<()> {
        let scope = if is_link_local(IpAddr::V6(dst)) || dst.is_multicast() {
            self.index
        } else {
            0
        };
        send_whole(
            &self.tx,
            message,
            std::net::SocketAddrV6::new(dst, 0, 0, scope).into(),
        )
    }

    /// Waits for the next advert; the VRRP message lands at the start of `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<ReceivedV6> {
        self.rx
            .async_io(Interest::READABLE, |socket| {
                recv_with_hop_limit(socket, buf)
            })
            .await
    }

    /// The next advert already waiting, without waiting for one; `None` when none is.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<ReceivedV6>> {
        would_block_is_none(recv_with_hop_limit(self.rx.get_ref(), buf))
    }
}

/// One datagram to `to`, all of it: a raw socket never sends a datagram in part, but say so if
/// the kernel ever does.
fn send_whole(tx: &Socket, message: &[u8], to: SockAddr) -> io::Result<()> {
    let sent = tx.send_to(message, &to)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "advert sent in part",
        ));
    }
    Ok(())
}

fn recv_with_hop_limit(socket: &Socket, buf: &mut [u8]) -> io::Result<ReceivedV6> {
    let datagram = syscall::socket::recv_with_control(socket, buf)?;
    let src = datagram
        .from
        .as_socket_ipv6()
        .map_or(Ipv6Addr::UNSPECIFIED, |a| *a.ip());
    Ok(ReceivedV6 {
        len: datagram.len,
        src,
        hop_limit: hop_limit_from_control(datagram.control()),
        arrived: datagram.received_at(),
    })
}

/// Finds IPV6_HOPLIMIT among the control messages of a receive.
fn hop_limit_from_control(control: &[u8]) -> Option<u8> {
    let message = syscall::socket::control_messages(control)
        .find(|m| m.level == CMSG_LEVEL_IPV6 && m.kind == CMSG_TYPE_HOPLIMIT)?;
    let value = i32::from_ne_bytes(message.data.get(..4)?.try_into().ok()?);
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, value: i32) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&(std::mem::size_of::<usize>() + 8 + 4).to_ne_bytes());
        c.extend_from_slice(&level.to_ne_bytes());
        c.extend_from_slice(&kind.to_ne_bytes());
        c.extend_from_slice(&value.to_ne_bytes());
        c.extend_from_slice(&[0; 4]); // padding to the next word
        c
    }

    #[test]
    fn the_hop_limit_is_found_among_control_messages() {
        let mut control = cmsg(CMSG_LEVEL_IPV6, 50, 7); // IPV6_PKTINFO-like, not ours
        control.extend(cmsg(CMSG_LEVEL_IPV6, CMSG_TYPE_HOPLIMIT, 255));
        assert_eq!(hop_limit_from_control(&control), Some(255));
        assert_eq!(
            hop_limit_from_control(&cmsg(CMSG_LEVEL_IPV6, CMSG_TYPE_HOPLIMIT, 64)),
            Some(64)
        );
        assert_eq!(
            hop_limit_from_control(&cmsg(0, CMSG_TYPE_HOPLIMIT, 255)),
            None
        );
        assert_eq!(hop_limit_from_control(&[]), None);
        assert_eq!(
            hop_limit_from_control(&[0xff; 20]),
            None,
            "a length past the end"
        );
    }
}
