use super::*;
use proptest::prelude::*;

const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const GROUP: IpAddr = IpAddr::V4(MULTICAST_V4);
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));

/// An Internet checksum written independently of the production code, for the known answers:
/// add every big-endian 16-bit word in a u64, fold the carries, complement.
fn ones_complement(parts: &[&[u8]]) -> u16 {
    let mut all: Vec<u8> = parts.concat();
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut sum: u64 = all
        .chunks(2)
        .map(|w| (u64::from(w[0]) << 8) | u64::from(w[1]))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    0xffff - sum as u16
}

fn advert(version: Version) -> Advert {
    Advert {
        version,
        vrid: 51,
        priority: 150,
        interval: Duration::from_secs(1),
        addresses: vec![VIP],
    }
}

fn v6(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// VRRPv2 (RFC 3768 §5.3), vrid 51, priority 150, 1 s, VIP 10.0.0.100, no authentication.
///
/// ```text
/// 0x21  version 2 | type 1        0x33  vrid 51
/// 0x96  priority 150              0x01  one address
/// 0x00  auth type 0 (none)        0x01  adver int 1 s
/// ck ck checksum                  0a 00 00 64  10.0.0.100
/// 00 x 8 authentication data
/// ```
/// Checksum over the message only (RFC 3768 §5.3.8), checksum field as zero:
/// 0x2133 + 0x9601 + 0x0001 + 0x0000 + 0x0a00 + 0x0064 + 4 x 0x0000 = 0xc199 (no carry);
/// complement 0xffff - 0xc199 = 0x3e66.
#[test]
fn v2_ipv4_known_answer_rfc3768_5_3() {
    let expected: [u8; 20] = [
        0x21, 0x33, 0x96, 0x01, 0x00, 0x01, 0x3e, 0x66, 0x0a, 0x00, 0x00, 0x64, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];
    let mut zeroed = expected;
    zeroed[6..8].fill(0);
    assert_eq!(ones_complement(&[&zeroed]), 0x3e66);

    let bytes = encode(&advert(Version::V2), SRC, GROUP).unwrap();
    assert_eq!(bytes, expected);
    assert_eq!(decode(&bytes, SRC, GROUP).unwrap(), advert(Version::V2));
}

/// VRRPv3 (RFC 5798 §5.2) over IPv4, vrid 51, priority 150, 100 cs, VIP 10.0.0.100, sent from
/// 10.0.0.1 to 224.0.0.18.
///
/// ```text
/// 0x31  version 3 | type 1        0x33  vrid 51
/// 0x96  priority 150              0x01  one address
/// 0x00 0x64  rsvd 0 | max adver int 100 cs (12 bits)
/// ck ck checksum                  0a 00 00 64  10.0.0.100
/// ```
/// Checksum (RFC 5798 §5.2.8) over the pseudo-header then the message:
/// pseudo-header 0x0a00 + 0x0001 (src) + 0xe000 + 0x0012 (dst) + 0x0070 (zero, protocol 112) +
/// 0x000c (length 12) = 0xea8f; message 0x3133 + 0x9601 + 0x0064 + 0x0a00 + 0x0064 = 0xd1fc;
/// total 0x1bc8b, folded 0xbc8b + 1 = 0xbc8c, complement 0x4373.
#[test]
fn v3_ipv4_known_answer_rfc5798_5_2() {
    let expected: [u8; 12] = [
        0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x43, 0x73, 0x0a, 0x00, 0x00, 0x64,
    ];
    let mut zeroed = expected;
    zeroed[6..8].fill(0);
    let pseudo = [10, 0, 0, 1, 224, 0, 0, 18, 0, 112, 0, 12];
    assert_eq!(ones_complement(&[&pseudo, &zeroed]), 0x4373);

    let bytes = encode(&advert(Version::V3), SRC, GROUP).unwrap();
    assert_eq!(bytes, expected);
    assert_eq!(decode(&bytes, SRC, GROUP).unwrap(), advert(Version::V3));
}

/// VRRPv3 over IPv6 from fe80::1 to ff02::12 with VIP 2001:db8::100 (24 bytes). The
/// pseudo-header is RFC 2460 §8.1's: addresses, 32-bit length 24, 24 zero bits, next header 112.
/// Words: 0xfe80 + 0x0001 + 0xff02 + 0x0012 + 0x0018 + 0x0070 + 0x3133 + 0x9601 + 0x0064 +
/// 0x2001 + 0x0db8 + 0x0100 = 0x2f46e, folded 0xf470, complement 0x0b8f.
#[test]
fn v3_ipv6_known_answer_rfc5798_5_2_8() {
    let src = v6("fe80::1");
    let dst = IpAddr::V6(MULTICAST_V6);
    let vip = v6("2001:db8::100");
    let a = Advert {
        addresses: vec![vip],
        ..advert(Version::V3)
    };
    let bytes = encode(&a, src, dst).unwrap();
    let mut expected = vec![0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x0b, 0x8f];
    expected.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0,
    ]);
    assert_eq!(bytes, expected);

    let mut zeroed = expected.clone();
    zeroed[6..8].fill(0);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    pseudo.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12]);
    pseudo.extend_from_slice(&[0, 0, 0, 24, 0, 0, 0, 112]);
    assert_eq!(ones_complement(&[&pseudo, &zeroed]), 0x0b8f);
    assert_eq!(decode(&bytes, src, dst).unwrap(), a);
}

#[test]
fn v3_checksum_covers_the_pseudo_header_rfc5798_5_2_8() {
    let bytes = encode(&advert(Version::V3), SRC, GROUP).unwrap();
    // The same bytes from another source fail: the source address is in the sum.
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(decode(&bytes, other, GROUP), Err(DecodeError::Checksum));
    // A v3 checksum computed over the message alone is rejected (strict, documented).
    let mut no_pseudo = bytes.clone();
    no_pseudo[6..8].fill(0);
    let sum = ones_complement(&[&no_pseudo]);
    no_pseudo[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(decode(&no_pseudo, SRC, GROUP), Err(DecodeError::Checksum));
}

#[test]
fn v2_checksum_ignores_the_addresses_of_the_ip_header_rfc3768_5_3_8() {
    let bytes = encode(&advert(Version::V2), SRC, GROUP).unwrap();
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(decode(&bytes, other, other).unwrap(), advert(Version::V2));
}

#[test]
fn v3_interval_is_centiseconds_and_reserved_bits_are_ignored_rfc5798_5_2_6() {
    let a = Advert {
        interval: Duration::from_millis(40_950),
        ..advert(Version::V3)
    };
    let mut bytes = encode(&a, SRC, GROUP).unwrap();
    assert_eq!(&bytes[4..6], &[0x0f, 0xff]);
    // Set the 4 reserved bits and fix the checksum: still decodes, same interval.
    bytes[4] |= 0xf0;
    bytes[6..8].fill(0);
    let sum = checksum(pseudo_header_sum(SRC, GROUP, bytes.len()), &bytes);
    bytes[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(decode(&bytes, SRC, GROUP).unwrap(), a);
}

#[test]
fn encode_rejects_what_the_wire_cannot_carry() {
    let v3 = advert(Version::V3);
    let v6_src = v6("fe80::1");
    assert_eq!(
        encode(&v3, v6_src, GROUP),
        Err(EncodeError::MixedFamily),
        "src and dst families differ"
    );
    let mixed = Advert {
        addresses: vec![VIP, v6("2001:db8::1")],
        ..v3.clone()
    };
    assert_eq!(encode(&mixed, SRC, GROUP), Err(EncodeError::MixedFamily));
    let v2_over_v6 = Advert {
        addresses: vec![v6("2001:db8::1")],
        ..advert(Version::V2)
    };
    assert_eq!(
        encode(&v2_over_v6, v6_src, IpAddr::V6(MULTICAST_V6)),
        Err(EncodeError::V2OverIpv6)
    );
    let many = Advert {
        addresses: vec![VIP; 256],
        ..v3.clone()
    };
    assert_eq!(
        encode(&many, SRC, GROUP),
        Err(EncodeError::TooManyAddresses(256))
    );
    let max = Advert {
        addresses: vec![VIP; 255],
        ..v3.clone()
    };
    assert_eq!(encode(&max, SRC, GROUP).unwrap().len(), 8 + 255 * 4);
    for (version, bad) in [
        (Version::V3, Duration::ZERO),
        (Version::V3, Duration::from_millis(40_960)),
        (Version::V3, Duration::from_millis(1_005)),
        (Version::V2, Duration::ZERO),
        (Version::V2, Duration::from_millis(1_500)),
        (Version::V2, Duration::from_secs(256)),
    ] {
        let a = Advert {
            interval: bad,
            ..advert(version)
        };
        assert_eq!(encode(&a, SRC, GROUP), Err(EncodeError::Interval(bad)));
    }
    let vrid0 = Advert { vrid: 0, ..v3 };
    assert_eq!(encode(&vrid0, SRC, GROUP), Err(EncodeError::Vrid));
}

/// Re-computes the checksum after a test edits a header field, so the decoder reaches the check
/// the test is about.
fn fix_checksum(bytes: &mut [u8], src: IpAddr, dst: IpAddr) {
    bytes[6..8].fill(0);
    let sum = match bytes[0] >> 4 {
        3 => checksum(pseudo_header_sum(src, dst, bytes.len()), bytes),
        _ => checksum(0, bytes),
    };
    bytes[6..8].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn decode_names_each_reason_for_a_drop() {
    let v3 = encode(&advert(Version::V3), SRC, GROUP).unwrap();
    let v2 = encode(&advert(Version::V2), SRC, GROUP).unwrap();
    let reason = |bytes: &[u8], src: IpAddr, dst: IpAddr| decode(bytes, src, dst).unwrap_err();

    assert_eq!(reason(&v3[..7], SRC, GROUP), DecodeError::Short(7));

    let mut b = v3.clone();
    b[0] = 0x41;
    assert_eq!(reason(&b, SRC, GROUP), DecodeError::Version(4));

    let mut b = v3.clone();
    b[0] = 0x32;
    fix_checksum(&mut b, SRC, GROUP);
    assert_eq!(reason(&b, SRC, GROUP), DecodeError::Type(2));

    let mut b = v3.clone();
    b[3] = 2;
    assert_eq!(
        reason(&b, SRC, GROUP),
        DecodeError::AddressCount { count: 2, len: 12 }
    );
    assert_eq!(
        reason(&v3[..11], SRC, GROUP),
        DecodeError::AddressCount { count: 1, len: 11 }
    );
    let mut long = v3.clone();
    long.extend_from_slice(&[0, 0]);
    assert!(matches!(
        reason(&long, SRC, GROUP),
        DecodeError::AddressCount { .. }
    ));

    let mut b = v3.clone();
    b[11] ^= 1;
    assert_eq!(reason(&b, SRC, GROUP), DecodeError::Checksum);

    let mut b = v2.clone();
    b[4] = 1; // simple text password (RFC 2338), no longer defined by RFC 3768
    fix_checksum(&mut b, SRC, GROUP);
    assert_eq!(reason(&b, SRC, GROUP), DecodeError::Auth(1));

    for mut b in [v3.clone(), v2.clone()] {
        b[5] = 0;
        if b[0] >> 4 == 3 {
            b[4] = 0;
        }
        fix_checksum(&mut b, SRC, GROUP);
        assert_eq!(reason(&b, SRC, GROUP), DecodeError::Interval);
    }

    let mut b = v3.clone();
    b[1] = 0;
    fix_checksum(&mut b, SRC, GROUP);
    assert_eq!(reason(&b, SRC, GROUP), DecodeError::Vrid);

    let v6_src = v6("fe80::1");
    assert_eq!(reason(&v3, v6_src, GROUP), DecodeError::Family);
    let v6_dst = IpAddr::V6(MULTICAST_V6);
    assert_eq!(reason(&v2, v6_src, v6_dst), DecodeError::Family);

    let labels: Vec<&str> = [
        DecodeError::Short(0),
        DecodeError::Version(0),
        DecodeError::Type(0),
        DecodeError::AddressCount { count: 0, len: 0 },
        DecodeError::Checksum,
        DecodeError::Auth(0),
        DecodeError::Interval,
        DecodeError::Family,
        DecodeError::Vrid,
        DecodeError::Ttl(0),
        DecodeError::IpHeader,
    ]
    .iter()
    .map(DecodeError::reason)
    .collect();
    assert_eq!(
        labels,
        [
            "short",
            "version",
            "type",
            "address_count",
            "checksum",
            "auth",
            "interval",
            "family",
            "vrid",
            "ttl",
            "ip_header"
        ]
    );
}

#[test]
fn v2_auth_data_is_ignored_rfc3768_5_3_10() {
    let mut b = encode(&advert(Version::V2), SRC, GROUP).unwrap();
    let n = b.len();
    b[n - 8..].copy_from_slice(b"garbage!");
    fix_checksum(&mut b, SRC, GROUP);
    assert_eq!(decode(&b, SRC, GROUP).unwrap(), advert(Version::V2));
}

#[test]
fn decode_accepts_an_advert_without_addresses() {
    let a = Advert {
        addresses: vec![],
        ..advert(Version::V3)
    };
    let bytes = encode(&a, SRC, GROUP).unwrap();
    assert_eq!(bytes.len(), 8);
    assert_eq!(decode(&bytes, SRC, GROUP).unwrap(), a);
}

/// A 20-byte IPv4 header with TTL 255, protocol 112, 10.0.0.1 -> 224.0.0.18. The header
/// checksum is left zero: the kernel checks it, `parse_ipv4` does not.
fn ipv4_header(ihl_words: u8, total_len: u16) -> Vec<u8> {
    // At least the 20 fixed bytes, even when the IHL claims fewer.
    let mut h = vec![0u8; usize::from(ihl_words.max(5)) * 4];
    h[0] = 0x40 | ihl_words;
    h[1] = 0xc0; // TOS internetwork control
    h[2..4].copy_from_slice(&total_len.to_be_bytes());
    h[8] = 255;
    h[9] = PROTOCOL;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&[224, 0, 0, 18]);
    h
}

#[test]
fn parse_ipv4_honours_ihl_and_total_length() {
    let vrrp = encode(&advert(Version::V3), SRC, GROUP).unwrap();
    // 24-byte header (one option word, e.g. router alert), then the message, then 3 bytes of
    // link padding that the total length excludes.
    let mut packet = ipv4_header(6, (24 + vrrp.len()) as u16);
    packet[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]);
    packet.extend_from_slice(&vrrp);
    packet.extend_from_slice(&[0xee; 3]);

    let (meta, payload) = parse_ipv4(&packet).unwrap();
    assert_eq!(
        meta,
        Ipv4Meta {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: MULTICAST_V4,
            ttl: 255,
            protocol: PROTOCOL,
        }
    );
    assert_eq!(payload, &vrrp[..]);
    assert_eq!(
        decode(payload, meta.src.into(), meta.dst.into()).unwrap(),
        advert(Version::V3)
    );
}

#[test]
fn parse_ipv4_rejects_malformed_headers() {
    assert_eq!(parse_ipv4(&[0x45; 19]), Err(DecodeError::Short(19)));
    let mut v6 = ipv4_header(5, 20);
    v6[0] = 0x65;
    assert_eq!(parse_ipv4(&v6), Err(DecodeError::IpHeader));
    assert_eq!(parse_ipv4(&ipv4_header(4, 20)), Err(DecodeError::IpHeader));
    let mut ihl_past_end = ipv4_header(5, 20);
    ihl_past_end[0] = 0x4f;
    assert_eq!(parse_ipv4(&ihl_past_end), Err(DecodeError::IpHeader));
    assert_eq!(parse_ipv4(&ipv4_header(5, 21)), Err(DecodeError::IpHeader));
    assert_eq!(parse_ipv4(&ipv4_header(6, 20)), Err(DecodeError::IpHeader));
    let bare = ipv4_header(5, 20);
    let (_, empty) = parse_ipv4(&bare).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn ttl_must_be_255_rfc5798_7_1() {
    assert_eq!(check_ttl(255), Ok(()));
    assert_eq!(check_ttl(254), Err(DecodeError::Ttl(254)));
    assert_eq!(check_ttl(1).unwrap_err().reason(), "ttl");
}

#[test]
fn wire_interval_units() {
    assert_eq!(
        Version::V3.wire_interval(Duration::from_millis(10)),
        Some(1)
    );
    assert_eq!(Version::V3.wire_interval(Duration::from_secs(1)), Some(100));
    assert_eq!(Version::V3.wire_interval(Duration::from_millis(15)), None);
    assert_eq!(
        Version::V2.wire_interval(Duration::from_secs(255)),
        Some(255)
    );
    assert_eq!(Version::V2.wire_interval(Duration::from_millis(10)), None);
}

fn any_ip(v4: bool) -> BoxedStrategy<IpAddr> {
    if v4 {
        any::<[u8; 4]>().prop_map(IpAddr::from).boxed()
    } else {
        any::<[u8; 16]>().prop_map(IpAddr::from).boxed()
    }
}

/// A valid advert with its source and destination: v2 over IPv4, v3 over either family.
fn any_advert() -> impl Strategy<Value = (Advert, IpAddr, IpAddr)> {
    (any::<bool>(), any::<bool>()).prop_flat_map(|(v3, v4)| {
        let v4 = v4 || !v3;
        let version = if v3 { Version::V3 } else { Version::V2 };
        let interval = if v3 {
            (1u64..=4095)
                .prop_map(|cs| Duration::from_millis(cs * 10))
                .boxed()
        } else {
            (1u64..=255).prop_map(Duration::from_secs).boxed()
        };
        (
            1u8..=255,
            any::<u8>(),
            interval,
            proptest::collection::vec(any_ip(v4), 0..20),
            any_ip(v4),
            any_ip(v4),
        )
            .prop_map(move |(vrid, priority, interval, addresses, src, dst)| {
                let a = Advert {
                    version,
                    vrid,
                    priority,
                    interval,
                    addresses,
                };
                (a, src, dst)
            })
    })
}

proptest! {
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        v4 in any::<bool>(),
        s in any::<[u8; 16]>(),
        d in any::<[u8; 16]>(),
    ) {
        let (src, dst) = if v4 {
            (IpAddr::from([s[0], s[1], s[2], s[3]]), IpAddr::from([d[0], d[1], d[2], d[3]]))
        } else {
            (IpAddr::from(s), IpAddr::from(d))
        };
        let _ = decode(&bytes, src, dst);
        if let Ok((meta, payload)) = parse_ipv4(&bytes) {
            let _ = decode(payload, meta.src.into(), meta.dst.into());
        }
    }

    /// Arbitrary headers with a valid length and checksum reach the later checks too.
    #[test]
    fn decode_never_panics_past_the_checksum(
        head in any::<[u8; 8]>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        v4 in any::<bool>(),
    ) {
        let (src, dst) = if v4 { (SRC, GROUP) } else { (v6("fe80::1"), IpAddr::V6(MULTICAST_V6)) };
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&body);
        fix_checksum(&mut bytes, src, dst);
        if let Ok(a) = decode(&bytes, src, dst) {
            prop_assert_eq!(encode(&a, src, dst).map(|b| b.len()), Ok(bytes.len()));
        }
        // The header alone passes and fails exactly where the whole advert does.
        let header = decode_header(&bytes, src, dst);
        let whole = decode(&bytes, src, dst);
        prop_assert_eq!(header.as_ref().err(), whole.as_ref().err());
        if let (Ok(h), Ok(a)) = (header, whole) {
            prop_assert_eq!(
                (h.version, h.vrid, h.priority, h.interval, usize::from(h.count)),
                (a.version, a.vrid, a.priority, a.interval, a.addresses.len())
            );
        }
    }

    /// Encoding into a used buffer gives the same bytes as a fresh encode.
    #[test]
    fn encode_into_a_used_buffer_gives_the_same_bytes(
        (advert, src, dst) in any_advert(),
        old in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut buf = old;
        encode_into(&advert, src, dst, &mut buf).unwrap();
        prop_assert_eq!(Ok(buf), encode(&advert, src, dst));
    }

    #[test]
    fn encode_then_decode_round_trips((advert, src, dst) in any_advert()) {
        let bytes = encode(&advert, src, dst).unwrap();
        prop_assert_eq!(decode(&bytes, src, dst), Ok(advert));
    }

    #[test]
    fn any_single_bit_flip_is_rejected(
        (advert, src, dst) in any_advert(),
        bit in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&advert, src, dst).unwrap();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // A flipped bit moves one 16-bit word by 2^k, which is never a multiple of 0xffff, so
        // the checksum catches it if an earlier check (version, family, count) does not.
        prop_assert!(decode(&bytes, src, dst).is_err());
    }
}
