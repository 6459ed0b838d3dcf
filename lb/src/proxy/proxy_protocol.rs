//! PROXY protocol headers (HAProxy's spec, versions 1 and 2) that tell a backend who the client
//! really was. Only the encoder lives here: Tandem sends headers, it never parses them.

use std::net::{IpAddr, SocketAddr};

use crate::config::ProxyProtocol;

/// The v2 signature, spec section 2.2.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY (spec 2.2: high nibble version, low nibble command).
const V2_VERSION_PROXY: u8 = 0x21;
/// AF_INET + STREAM and AF_INET6 + STREAM (spec 2.2, byte 14).
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
/// AF_INET + DGRAM and AF_INET6 + DGRAM (spec 2.2, byte 14).
const V2_UDP4: u8 = 0x12;
const V2_UDP6: u8 = 0x22;

/// The header for a connection from `client` that arrived at `local` (the address the client
/// connected to: the VIP or listen address).
pub fn header(version: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(client, local);
    match version {
        ProxyProtocol::V1 => v1(src, dst),
        ProxyProtocol::V2 => v2(src, dst, false),
    }
}

/// The v2 header for a UDP flow from `client` to `local` (the service address): the spec's
/// DGRAM form, sent in front of every datagram of the flow (a datagram stands alone, so each
/// carries its own header).
pub fn header_dgram(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(client, local);
    v2(src, dst, true)
}

/// Both addresses in one family: an IPv4 client on a dual-stack listener shows up as
/// `::ffff:a.b.c.d`; unmap it when the other side is IPv4, map the other side otherwise.
fn same_family(client: SocketAddr, local: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    };
    let (c, l) = (unmap(client), unmap(local));
    match (c.ip(), l.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (c, l),
        _ => {
            let map = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
                IpAddr::V6(_) => a,
            };
            (map(c), map(l))
        }
    }
}

fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

fn v2(src: SocketAddr, dst: SocketAddr, datagram: bool) -> Vec<u8> {
    let (four, six) = if datagram {
        (V2_UDP4, V2_UDP6)
    } else {
        (V2_TCP4, V2_TCP6)
    };
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION_PROXY);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(four);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(six);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => unreachable!("same_family returns one family"),
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_header_names_client_and_listener() {
        let h = header(
            ProxyProtocol::V1,
            sa("192.0.2.7:51000"),
            sa("10.0.0.100:80"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.100 51000 80\r\n");
        let h = header(
            ProxyProtocol::V1,
            sa("[2001:db8::7]:51000"),
            sa("[2001:db8::1]:443"),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n");
    }

    #[test]
    fn v1_unmaps_ipv4_clients_of_a_dual_stack_listener() {
        let h = header(
            ProxyProtocol::V1,
            sa("[::ffff:192.0.2.7]:5"),
            sa("10.0.0.1:80"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 5 80\r\n");
    }

    #[test]
    fn v2_header_has_signature_family_and_addresses() {
        let h = header(
            ProxyProtocol::V2,
            sa("192.0.2.7:51000"),
            sa("10.0.0.100:80"),
        );
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[192, 0, 2, 7]);
        assert_eq!(&h[20..24], &[10, 0, 0, 100]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 51000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 80);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn v2_dgram_header_says_udp_and_carries_the_same_addresses() {
        let h = header_dgram(sa("192.0.2.7:5353"), sa("10.0.0.100:53"));
        let stream = header(ProxyProtocol::V2, sa("192.0.2.7:5353"), sa("10.0.0.100:53"));
        assert_eq!(h[13], 0x12, "AF_INET + DGRAM");
        assert_eq!(h[..13], stream[..13]);
        assert_eq!(h[14..], stream[14..]);
        let h6 = header_dgram(sa("[2001:db8::7]:1"), sa("[2001:db8::1]:53"));
        assert_eq!(h6[13], 0x22, "AF_INET6 + DGRAM");
    }

    #[test]
    fn v2_mixed_families_are_sent_as_ipv6() {
        let h = header(ProxyProtocol::V2, sa("192.0.2.7:1"), sa("[2001:db8::1]:80"));
        assert_eq!(h[13], 0x21);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[16..28], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    }
}
