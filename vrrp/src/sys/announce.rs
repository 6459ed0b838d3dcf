//! Telling the link that a VIP moved: gratuitous ARP (IPv4) and unsolicited neighbour
//! advertisements (IPv6), sent by the new master so switches and hosts re-learn which MAC
//! answers for the VIP at once instead of when their caches expire (RFC 5798 §6.4.2 (Master)).
//!
//! ARP goes out on a send-only `AF_PACKET` datagram socket: the kernel builds the Ethernet
//! header from the destination we give, and the socket receives nothing (protocol 0 on bind),
//! so it costs nothing on a busy link. NAs go out on an ICMPv6 raw socket; the kernel fills
//! the ICMPv6 checksum for those.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::sync::Arc;

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::EtherTypes;
use pnet_packet::icmpv6::Icmpv6Types;
use pnet_packet::icmpv6::ndp::{
    Icmpv6Codes, MutableNeighborAdvertPacket, NdpOption, NdpOptionTypes, NeighborAdvertFlags,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::link::Link;

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];
/// All-nodes link-local multicast (RFC 4291 §2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A gratuitous ARP request for `ip` from `mac` (RFC 5227 §3: sender and target protocol
/// addresses both the VIP, target hardware address zero), 28 bytes.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut frame = [0u8; 28];
    let mut arp = MutableArpPacket::new(&mut frame).expect("28 bytes hold an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(MacAddr::from(mac));
    arp.set_sender_proto_addr(ip);
    arp.set_target_hw_addr(MacAddr::zero());
    arp.set_target_proto_addr(ip);
    frame
}

/// An unsolicited neighbour advertisement for `ip` at `mac` (RFC 4861 §4.4, §7.2.6), without
/// its checksum (the kernel computes it), 32 bytes.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut message = [0u8; 32];
    let mut na = MutableNeighborAdvertPacket::new(&mut message)
        .expect("32 bytes hold an NA with one option");
    na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
    na.set_icmpv6_code(Icmpv6Codes::NoCode);
    // Override: replace whatever the receiver cached. Not solicited, not a router.
    na.set_flags(NeighborAdvertFlags::Override);
    na.set_target_addr(ip);
    na.set_options(&[NdpOption {
        option_type: NdpOptionTypes::TargetLLAddr,
        length: 1, // in units of 8 bytes: type, length and the 6-byte address
        data: mac.to_vec(),
    }]);
    message
}

/// Sends gratuitous ARP and unsolicited NAs on one link. Clones share the sockets.
#[derive(Clone)]
pub struct Announcer {
    link: Link,
    arp: Option<Arc<Socket>>,
    na: Option<Arc<Socket>>,
}

impl Announcer {
    /// Opens the sockets each family needs (`v4`, `v6`: whether there are VIPs of that family).
    pub fn open(link: &Link, v4: bool, v6: bool) -> io::Result<Self> {
        let arp = if v4 {
            // Protocol 0: this socket sends ARP but is not bound to receive any frame.
            let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(0)))?;
            s.set_nonblocking(true)?;
            Some(Arc::new(s))
        } else {
            None
        };
        let na = if v6 {
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
            s.bind_device(Some(link.name.as_bytes()))?;
            // RFC 4861 §7.1.2: a receiver drops NAs whose hop limit is not 255.
            s.set_multicast_hops_v6(255)?;
            s.set_multicast_if_v6(link.index)?;
            s.set_nonblocking(true)?;
            // Never read, yet it receives every ICMPv6 packet of the link: keep its queue as
            // small as the kernel allows.
            s.set_recv_buffer_size(1)?;
            Some(Arc::new(s))
        } else {
            None
        };
        Ok(Self {
            link: link.clone(),
            arp,
            na,
        })
    }

    /// One gratuitous ARP for `ip`, broadcast on the link.
    pub fn arp(&self, ip: Ipv4Addr) -> io::Result<()> {
        let socket = self
            .arp
            .as_ref()
            .ok_or_else(|| io::Error::other("announcer opened without IPv4"))?;
        let frame = gratuitous_arp(self.link.mac, ip);
        socket.send_to(&frame, &link_broadcast(self.link.index)?)?;
        Ok(())
    }

    /// One unsolicited neighbour advertisement for `ip`, to all nodes on the link.
    pub fn na(&self, ip: Ipv6Addr) -> io::Result<()> {
        let socket = self
            .na
            .as_ref()
            .ok_or_else(|| io::Error::other("announcer opened without IPv6"))?;
        let message = unsolicited_na(self.link.mac, ip);
        let to = SocketAddrV6::new(ALL_NODES, 0, 0, self.link.index);
        socket.send_to(&message, &SockAddr::from(to))?;
        Ok(())
    }
}

/// The `sockaddr_ll` of an ARP broadcast on interface `index`.
fn link_broadcast(index: u32) -> io::Result<SockAddr> {
    syscall::socket::link_layer_addr(index, ETH_P_ARP, BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    #[test]
    fn gratuitous_arp_names_the_vip_as_sender_and_target() {
        let p = gratuitous_arp(MAC, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(&p[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &MAC);
        assert_eq!(&p[14..18], &[10, 0, 0, 100]);
        assert_eq!(&p[18..24], &[0; 6]);
        assert_eq!(&p[24..28], &[10, 0, 0, 100]);
    }

    #[test]
    fn unsolicited_na_sets_override_and_carries_the_mac() {
        let ip: Ipv6Addr = "fd00::100".parse().unwrap();
        let p = unsolicited_na(MAC, ip);
        assert_eq!((p[0], p[1], p[4]), (136, 0, 0x20));
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..32], &MAC);
    }
}
