//! The VRRP advertisement on the wire: VRRPv3 (RFC 5798 §5) over IPv4 and IPv6, and VRRPv2
//! (RFC 3768 §5) over IPv4.
//!
//! Pure: bytes in, bytes out. [`encode`] and [`decode`] handle the VRRP message only (what
//! follows the IP header); [`encode_into`] and [`decode_header`] do the same without allocating,
//! for the per-advert path of a running instance; [`parse_ipv4`] strips the IPv4 header a raw IPv4 socket delivers, and
//! [`check_ttl`] applies the TTL / hop-limit rule of RFC 5798 §7.1 (for IPv6 the caller reads the
//! hop limit from a control message).
//!
//! Both versions share one header layout (RFC 5798 §5.2, RFC 3768 §5.3):
//!
//! ```text
//!  0               1               2               3
//! | Ver | Type    | Virtual Rtr ID| Priority      | Count Addrs   |
//! | v3: rsvd(4) + Max Adver Int(12, cs)           | Checksum      |
//! | v2: Auth Type | Adver Int (s) |               | Checksum      |
//! | addresses (4 or 16 bytes each) ...                            |
//! | v2 only: Authentication Data, 8 bytes                         |
//! ```
//!
//! The checksums differ: v3 sums a pseudo-header (source, destination, zero, protocol 112, VRRP
//! length) before the message (RFC 5798 §5.2.8); v2 sums the message alone (RFC 3768 §5.3.8).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4, RFC 3768 §5.2.4).
pub const PROTOCOL: u8 = 112;
/// The TTL / hop limit every advert is sent with and must arrive with (RFC 5798 §5.1.1.3,
/// §5.1.2.3, §7.1).
pub const TTL: u8 = 255;
/// The IPv4 multicast group adverts go to (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts go to (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Length of the fixed header both versions share (RFC 5798 §5.2, RFC 3768 §5.3).
const HEADER_LEN: usize = 8;
/// Length of the VRRPv2 authentication data that follows the addresses (RFC 3768 §5.3.10).
const V2_AUTH_LEN: usize = 8;
/// The only packet type: ADVERTISEMENT (RFC 5798 §5.2.2, RFC 3768 §5.3.2).
const TYPE_ADVERTISEMENT: u8 = 1;
/// VRRPv2 "No Authentication" (RFC 3768 §5.3.6.1); the only auth type we send or accept.
const V2_AUTH_NONE: u8 = 0;
/// The 12-bit Max Adver Int in centiseconds (RFC 5798 §5.2.7).
const V3_MAX_INTERVAL_CS: u16 = 0x0fff;

/// The protocol version of one advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// VRRPv2, RFC 3768: IPv4 only, interval in whole seconds, checksum without pseudo-header.
    V2,
    /// VRRPv3, RFC 5798: IPv4 or IPv6, interval in centiseconds, checksum with pseudo-header.
    V3,
}

impl Version {
    /// The value of the 4-bit version field.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The wire value of `interval` in this version's unit, if it is exactly representable:
    /// v3 counts centiseconds in 12 bits (1..=4095, RFC 5798 §5.2.7), v2 whole seconds in 8 bits
    /// (1..=255, RFC 3768 §5.3.7). Zero is never valid: a master must advertise.
    pub fn wire_interval(self, interval: Duration) -> Option<u16> {
        let (unit_ns, max) = match self {
            Version::V3 => (10_000_000u128, u128::from(V3_MAX_INTERVAL_CS)),
            Version::V2 => (1_000_000_000u128, u128::from(u8::MAX)),
        };
        let ns = interval.as_nanos();
        if !ns.is_multiple_of(unit_ns) {
            return None;
        }
        let units = ns / unit_ns;
        if units == 0 || units > max {
            return None;
        }
        u16::try_from(units).ok()
    }

    fn interval_from_wire(self, units: u16) -> Duration {
        match self {
            Version::V3 => Duration::from_millis(u64::from(units) * 10),
            Version::V2 => Duration::from_secs(u64::from(units)),
        }
    }
}

/// One VRRP advertisement, as sent or as received.
///
/// `interval` is a plain [`Duration`]; on the wire it becomes the v3 Max Adver Int in
/// centiseconds or the v2 Adver Int in seconds. [`encode`] refuses a duration that is not exactly
/// a whole number of that unit, so `decode(encode(a)) == a` always holds (see
/// [`Version::wire_interval`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// v2 or v3.
    pub version: Version,
    /// Virtual router id, 1..=255 (RFC 5798 §5.2.3).
    pub vrid: u8,
    /// The sender's priority: 255 for the address owner, 0 for "I am stopping" (§5.2.4).
    pub priority: u8,
    /// The sender's advertisement interval (v3: Max Adver Int; v2: Adver Int).
    pub interval: Duration,
    /// The virtual addresses, all of the same family as the IP header (§5.2.9).
    pub addresses: Vec<IpAddr>,
}

/// Why an advert could not be encoded. Each is a caller bug or a configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Source, destination and addresses must all be IPv4 or all IPv6.
    #[error("source, destination and virtual addresses mix IPv4 and IPv6")]
    MixedFamily,
    /// VRRPv2 is defined for IPv4 only (RFC 3768 §5.1).
    #[error("VRRPv2 carries IPv4 only")]
    V2OverIpv6,
    /// The address count is one byte (RFC 5798 §5.2.5).
    #[error("{0} virtual addresses; an advert carries at most 255")]
    TooManyAddresses(usize),
    /// The interval is zero, too long, or not a whole number of the version's unit.
    #[error("interval {0:?} is not representable (v3: 10 ms steps up to 40.95 s; v2: 1..=255 s)")]
    Interval(Duration),
    /// VRID 0 is not a virtual router (RFC 5798 §5.2.3).
    #[error("virtual router id 0 is reserved")]
    Vrid,
}

/// Why a received packet was dropped. [`DecodeError::reason`] gives a short, stable label for a
/// drop counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed header (VRRP) or than 20 bytes (IPv4).
    #[error("packet too short: {0} bytes")]
    Short(usize),
    /// The version field is neither 2 nor 3 (RFC 5798 §7.1).
    #[error("unsupported VRRP version {0}")]
    Version(u8),
    /// Not an ADVERTISEMENT (RFC 5798 §5.2.2: unknown types MUST be discarded).
    #[error("unknown VRRP packet type {0}")]
    Type(u8),
    /// The length does not match the address count (RFC 5798 §7.1: complete packet).
    #[error("{count} addresses do not fit a {len}-byte message")]
    AddressCount {
        /// The Count IPvX Addr field.
        count: u8,
        /// The VRRP message length received.
        len: usize,
    },
    /// The checksum does not verify (RFC 5798 §5.2.8, RFC 3768 §5.3.8).
    #[error("bad VRRP checksum")]
    Checksum,
    /// A VRRPv2 auth type other than 0 (RFC 3768 §5.3.6); we neither send nor accept auth.
    #[error("unsupported VRRPv2 auth type {0}")]
    Auth(u8),
    /// The advertisement interval is zero.
    #[error("advertisement interval is zero")]
    Interval,
    /// Source and destination differ in family, or VRRPv2 arrived over IPv6.
    #[error("address family does not match the packet's version or IP header")]
    Family,
    /// VRID 0 (RFC 5798 §5.2.3).
    #[error("virtual router id 0 is reserved")]
    Vrid,
    /// The TTL / hop limit is not 255 (RFC 5798 §7.1): the packet crossed a router.
    #[error("TTL {0}, expected 255")]
    Ttl(u8),
    /// The IPv4 header is malformed (version, IHL, or total length).
    #[error("malformed IPv4 header")]
    IpHeader,
}

impl DecodeError {
    /// A short, stable label for a `reason` counter label.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Short(_) => "short",
            DecodeError::Version(_) => "version",
            DecodeError::Type(_) => "type",
            DecodeError::AddressCount { .. } => "address_count",
            DecodeError::Checksum => "checksum",
            DecodeError::Auth(_) => "auth",
            DecodeError::Interval => "interval",
            DecodeError::Family => "family",
            DecodeError::Vrid => "vrid",
            DecodeError::Ttl(_) => "ttl",
            DecodeError::IpHeader => "ip_header",
        }
    }
}

/// Encodes `advert` as the VRRP message (no IP header) sent from `src` to `dst`, with its
/// checksum: v3 over the pseudo-header and message (RFC 5798 §5.2.8), v2 over the message alone
/// (RFC 3768 §5.3.8). A v2 message ends with auth type 0 and eight zero bytes of auth data, as
/// sent by routers that use no authentication.
pub fn encode(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(advert, src, dst, &mut out)?;
    Ok(out)
}

/// [`encode`] into `out`, which is cleared first: a caller that reuses one buffer allocates
/// nothing per advert. On error `out` is left empty.
pub fn encode_into(
    advert: &Advert,
    src: IpAddr,
    dst: IpAddr,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    if advert.vrid == 0 {
        return Err(EncodeError::Vrid);
    }
    let v4 = src.is_ipv4();
    if dst.is_ipv4() != v4 || advert.addresses.iter().any(|a| a.is_ipv4() != v4) {
        return Err(EncodeError::MixedFamily);
    }
    if advert.version == Version::V2 && !v4 {
        return Err(EncodeError::V2OverIpv6);
    }
    let count = u8::try_from(advert.addresses.len())
        .map_err(|_| EncodeError::TooManyAddresses(advert.addresses.len()))?;
    let interval = advert
        .version
        .wire_interval(advert.interval)
        .ok_or(EncodeError::Interval(advert.interval))?;

    let addr_len = if v4 { 4 } else { 16 };
    let auth_len = match advert.version {
        Version::V2 => V2_AUTH_LEN,
        Version::V3 => 0,
    };
    out.reserve(HEADER_LEN + addr_len * advert.addresses.len() + auth_len);
    out.push((advert.version.number() << 4) | TYPE_ADVERTISEMENT);
    out.push(advert.vrid);
    out.push(advert.priority);
    out.push(count);
    match advert.version {
        // rsvd (4 bits, zero) + Max Adver Int (12 bits); wire_interval keeps it within 12 bits.
        Version::V3 => out.extend_from_slice(&interval.to_be_bytes()),
        Version::V2 => {
            out.push(V2_AUTH_NONE);
            // wire_interval keeps a v2 interval within one byte.
            out.push(interval as u8);
        }
    }
    out.extend_from_slice(&[0, 0]); // checksum, filled below
    for addr in &advert.addresses {
        match addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    out.resize(out.len() + auth_len, 0);

    let sum = match advert.version {
        Version::V3 => checksum(pseudo_header_sum(src, dst, out.len()), out),
        Version::V2 => checksum(0, out),
    };
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Decodes and validates one VRRP message (no IP header) that arrived from `src` to `dst`.
///
/// Returns the version found; the caller compares it (and the VRID) with its configuration.
/// Checks run in this order, so a drop counter names the first failure: length, version,
/// address family, length vs address count, checksum, type, VRID, v2 auth type, interval.
///
/// Strictness, on purpose:
/// - the length must be exactly what the address count implies (plus 8 bytes of v2 auth data);
/// - a v3 checksum must include the pseudo-header (RFC 5798 §5.2.8). Some old implementations
///   computed it over the message only; those packets are dropped as `checksum`;
/// - a v2 auth type other than 0 is dropped as `auth`; v2 auth data is ignored;
/// - the v3 reserved bits are ignored (RFC 5798 §5.2.6).
///
/// No input panics.
pub fn decode(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, DecodeError> {
    let header = decode_header(bytes, src, dst)?;
    let addr_len = if src.is_ipv4() { 4 } else { 16 };
    let addr_end = HEADER_LEN + addr_len * usize::from(header.count);
    let addresses = bytes[HEADER_LEN..addr_end]
        .chunks_exact(addr_len)
        // A chunk is 4 bytes (IPv4) or 16 (IPv6): the first conversion fails only for IPv6.
        .map(|chunk| match <[u8; 4]>::try_from(chunk) {
            Ok(a) => IpAddr::from(a),
            Err(_) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(chunk);
                IpAddr::from(a)
            }
        })
        .collect();
    Ok(Advert {
        version: header.version,
        vrid: header.vrid,
        priority: header.priority,
        interval: header.interval,
        addresses,
    })
}

/// An advert's fields but its addresses, as [`decode_header`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    pub interval: Duration,
    /// How many virtual addresses follow.
    pub count: u8,
}

/// Every check of [`decode`], without collecting the addresses: allocates nothing.
pub fn decode_header(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Header, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Short(bytes.len()));
    }
    let version = match bytes[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        other => return Err(DecodeError::Version(other)),
    };
    let v4 = src.is_ipv4();
    if dst.is_ipv4() != v4 || (version == Version::V2 && !v4) {
        return Err(DecodeError::Family);
    }
    let count = bytes[3];
    let addr_len = if v4 { 4 } else { 16 };
    let auth_len = match version {
        Version::V2 => V2_AUTH_LEN,
        Version::V3 => 0,
    };
    let addr_end = HEADER_LEN + addr_len * usize::from(count);
    if bytes.len() != addr_end + auth_len {
        return Err(DecodeError::AddressCount {
            count,
            len: bytes.len(),
        });
    }
    let initial = match version {
        Version::V3 => pseudo_header_sum(src, dst, bytes.len()),
        Version::V2 => 0,
    };
    // Summing a message together with its own checksum yields 0xffff, i.e. a complement of 0.
    if checksum(initial, bytes) != 0 {
        return Err(DecodeError::Checksum);
    }
    let kind = bytes[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DecodeError::Type(kind));
    }
    let vrid = bytes[1];
    if vrid == 0 {
        return Err(DecodeError::Vrid);
    }
    let units = match version {
        Version::V3 => u16::from_be_bytes([bytes[4], bytes[5]]) & V3_MAX_INTERVAL_CS,
        Version::V2 => {
            if bytes[4] != V2_AUTH_NONE {
                return Err(DecodeError::Auth(bytes[4]));
            }
            u16::from(bytes[5])
        }
    };
    if units == 0 {
        return Err(DecodeError::Interval);
    }
    Ok(Header {
        version,
        vrid,
        priority: bytes[2],
        interval: version.interval_from_wire(units),
        count,
    })
}

/// What [`parse_ipv4`] reads from an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Meta {
    /// Source address: the sender's primary address, used in the tie-break (RFC 5798 §6.4.3).
    pub src: Ipv4Addr,
    /// Destination: the multicast group or, for unicast peers, our address.
    pub dst: Ipv4Addr,
    /// Must be 255 (see [`check_ttl`]).
    pub ttl: u8,
    /// 112 for VRRP; a raw socket opened for protocol 112 delivers nothing else.
    pub protocol: u8,
}

/// Splits what a Linux raw IPv4 socket delivers into the header fields and the payload.
///
/// Honours the IHL (header options are skipped) and the total length (trailing bytes beyond it
/// are not payload). Linux hands the header over unmodified, total length in network order;
/// the kernel has already verified the header checksum, so it is not checked again.
pub fn parse_ipv4(bytes: &[u8]) -> Result<(Ipv4Meta, &[u8]), DecodeError> {
    const MIN_HEADER: usize = 20; // RFC 791 §3.1: IHL is at least 5 words
    if bytes.len() < MIN_HEADER {
        return Err(DecodeError::Short(bytes.len()));
    }
    if bytes[0] >> 4 != 4 {
        return Err(DecodeError::IpHeader);
    }
    let header_len = usize::from(bytes[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if header_len < MIN_HEADER || total_len < header_len || total_len > bytes.len() {
        return Err(DecodeError::IpHeader);
    }
    // RFC 791 §3.1 layout: TTL at byte 8, protocol at 9, source at 12..16, destination at 16..20.
    let meta = Ipv4Meta {
        ttl: bytes[8],
        protocol: bytes[9],
        src: Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]),
        dst: Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]),
    };
    Ok((meta, &bytes[header_len..total_len]))
}

/// RFC 5798 §7.1: the receiver MUST drop an advert whose IPv4 TTL or IPv6 hop limit is not 255,
/// which proves it was not forwarded by a router.
pub fn check_ttl(ttl: u8) -> Result<(), DecodeError> {
    if ttl == TTL {
        Ok(())
    } else {
        Err(DecodeError::Ttl(ttl))
    }
}

/// The unfolded one's complement sum of the v3 pseudo-header. For IPv4 it is source,
/// destination, zero, protocol, 16-bit length (as for UDP); for IPv6 it is RFC 2460 §8.1's
/// source, destination, 32-bit length, 24 zero bits, next header. Both sum the same words.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u32 {
    let mut sum = 0u32;
    for addr in [src, dst] {
        sum += match addr {
            IpAddr::V4(a) => add_words(0, &a.octets()),
            IpAddr::V6(a) => add_words(0, &a.octets()),
        };
    }
    // At most 8 + 255 * 16 bytes, so the length fits 16 bits; the u32 split keeps IPv6 exact.
    let len = len as u32;
    sum + (len >> 16) + (len & 0xffff) + u32::from(PROTOCOL)
}

/// Adds `bytes` as big-endian 16-bit words to `sum` (an odd last byte is padded with zero).
/// Carries are folded later; a u32 holds any VRRP message's sum without overflow.
fn add_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// The Internet checksum (RFC 1071): the one's complement of the one's complement sum of
/// `initial` and `bytes`.
fn checksum(initial: u32, bytes: &[u8]) -> u16 {
    let mut sum = add_words(initial, bytes);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests;
