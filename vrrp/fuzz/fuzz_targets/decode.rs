//! Arbitrary bytes into every decoder: nothing may panic, and whatever decodes re-encodes to an
//! advert that decodes the same.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a raw IPv4 datagram, the way the socket delivers it.
    if let Ok((meta, payload)) = vrrp::parse_ipv4(data) {
        let _ = vrrp::check_ttl(meta.ttl);
        round_trip(payload, meta.src.into(), meta.dst.into());
    }
    // As a bare VRRP message: the first byte picks the family, the next 32 bytes give the source
    // and destination (the IPv6 case, where they come from the socket, not the payload).
    if let Some((&family, rest)) = data.split_first()
        && rest.len() >= 32
    {
        let (addrs, message) = rest.split_at(32);
        let (src, dst) = if family & 1 == 0 {
            let s: [u8; 4] = addrs[0..4].try_into().unwrap();
            let d: [u8; 4] = addrs[4..8].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d))
        } else {
            let s: [u8; 16] = addrs[0..16].try_into().unwrap();
            let d: [u8; 16] = addrs[16..32].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d))
        };
        round_trip(message, src, dst);
    }
});

fn round_trip(message: &[u8], src: IpAddr, dst: IpAddr) {
    if let Ok(advert) = vrrp::decode(message, src, dst) {
        let bytes = vrrp::encode(&advert, src, dst).expect("a decoded advert encodes");
        assert_eq!(bytes.len(), message.len());
        assert_eq!(vrrp::decode(&bytes, src, dst), Ok(advert));
    }
}
