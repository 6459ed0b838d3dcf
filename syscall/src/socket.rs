//! Socket calls socket2 leaves to raw code.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddrV6};

use socket2::{MaybeUninitSlice, MsgHdrMut, SockAddr, Socket};

/// Room for the control messages of one receive: a hop limit or a packet-info record needs
/// about 32 bytes on 64-bit Linux.
const CONTROL_ROOM: usize = 64;

/// One datagram taken by [`recv_with_control`].
#[derive(Debug)]
pub struct Datagram {
    /// Bytes written to the caller's buffer.
    pub len: usize,
    /// Where it came from.
    pub from: SockAddr,
    /// Its control messages, as the kernel laid them out (`cmsghdr` records).
    pub control: Vec<u8>,
}

/// Receives one datagram into `buf` with its source address and control messages (the hop
/// limit of an IPv6 packet, for example, once `IPV6_RECVHOPLIMIT` is on).
pub fn recv_with_control(socket: &Socket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut control = [MaybeUninit::<u8>::uninit(); CONTROL_ROOM];
    // Any address serves as storage: the kernel overwrites it with the source.
    let mut from = SockAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
    // SAFETY: reinterpreting initialised bytes as possibly-uninitialised ones is always sound;
    // the kernel only ever writes into them.
    let data = unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [MaybeUninit<u8>]) };
    let mut bufs = [MaybeUninitSlice::new(data)];
    let mut msg = MsgHdrMut::new()
        .with_addr(&mut from)
        .with_buffers(&mut bufs)
        .with_control(&mut control);
    let len = socket.recvmsg(&mut msg, 0)?;
    let control_len = msg.control_len();
    // SAFETY: `recvmsg` initialised the first `control_len` bytes of the control buffer.
    let control: Vec<u8> = control[..control_len]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    Ok(Datagram { len, from, control })
}

/// The `sockaddr_ll` that sends an `AF_PACKET` datagram socket's frames of `protocol` (an
/// EtherType, host order) to `mac` on interface `index`; the kernel builds the Ethernet header.
pub fn link_layer_addr(index: u32, protocol: u16, mac: [u8; 6]) -> io::Result<SockAddr> {
    let index = i32::try_from(index).map_err(|_| io::Error::other("interface index too large"))?;
    // SAFETY: `try_init` hands us zeroed storage large enough for any socket address; we
    // write a `sockaddr_ll` into it (which fits) and report exactly its size.
    let ((), addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let ll = &mut *storage.cast::<libc::sockaddr_ll>();
            ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
            ll.sll_protocol = protocol.to_be();
            ll.sll_ifindex = index;
            ll.sll_halen = 6;
            ll.sll_addr[..6].copy_from_slice(&mac);
            *len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            Ok(())
        })
    }?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use socket2::{Domain, Type};

    use super::*;

    #[test]
    fn a_datagram_arrives_whole_with_its_source_and_the_control_messages_asked_for() {
        let rx = Socket::new(Domain::IPV6, Type::DGRAM, None).unwrap();
        rx.set_only_v6(true).unwrap();
        rx.bind(&SockAddr::from(
            "[::1]:0".parse::<std::net::SocketAddr>().unwrap(),
        ))
        .unwrap();
        rx.set_recv_hoplimit_v6(true).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"advert", to).unwrap();
        let mut buf = [0u8; 32];
        let got = recv_with_control(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"advert");
        assert_eq!(got.from.as_socket(), Some(tx.local_addr().unwrap()));
        // One IPV6_HOPLIMIT record: a header (len, level, type) and a 4-byte value.
        assert!(got.control.len() >= 16 + 4, "{:?}", got.control);
    }

    #[test]
    fn a_link_layer_address_names_the_interface_protocol_and_destination() {
        let addr = link_layer_addr(7, 0x0806, [0xff; 6]).unwrap();
        assert_eq!(addr.family(), libc::AF_PACKET as libc::sa_family_t);
        assert_eq!(
            addr.len() as usize,
            std::mem::size_of::<libc::sockaddr_ll>()
        );
        assert!(link_layer_addr(u32::MAX, 0x0806, [0xff; 6]).is_err());
    }
}
