//! ICMP checks: one echo request over an unprivileged ping socket, and its reply.

use std::io;
use std::time::Duration;

use super::CheckError;

/// ICMP echo request type and echo reply type (RFC 792).
const ICMP_ECHO_REQUEST: u8 = 8;
pub(super) const ICMP_ECHO_REPLY: u8 = 0;

pub(super) async fn icmp(addr: std::net::IpAddr, timeout: Duration) -> Result<(), CheckError> {
    let std::net::IpAddr::V4(v4) = addr else {
        return Err(CheckError::InvalidSpec(format!(
            "icmp check of {addr}: IPv4 only"
        )));
    };
    // A blocking socket with a receive timeout on a blocking thread: gateway checks are few, and
    // this keeps the crate free of `unsafe` (an async raw socket would need it).
    tokio::task::spawn_blocking(move || ping(v4, timeout))
        .await
        .map_err(|e| CheckError::Io(io::Error::other(e)))?
}

fn ping(addr: std::net::Ipv4Addr, timeout: Duration) -> Result<(), CheckError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(CheckError::Io)?;
    // Connected: the kernel hands this socket only packets from `addr`.
    let to = std::net::SocketAddr::from((addr, 0));
    socket.connect(&to.into()).map_err(CheckError::Connect)?;
    let id = (std::process::id() & 0xffff) as u16;
    let seq = fastrand::u16(..);
    let request = echo_request(id, seq);
    socket.send(&request).map_err(CheckError::Io)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(CheckError::Timeout(timeout));
        }
        // A timeout under a microsecond would round to zero, which means "wait forever".
        let left = left.max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(left))
            .map_err(CheckError::Io)?;
        let n = match std::io::Read::read(&mut &socket, &mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CheckError::Timeout(timeout));
            }
            Err(e) => return Err(CheckError::Io(e)),
        };
        if is_echo_reply(&buf[..n], id, seq) {
            return Ok(());
        }
    }
}

/// An ICMP echo request with identifier `id` and sequence `seq`, and its checksum.
pub(super) fn echo_request(id: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = ICMP_ECHO_REQUEST;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(b"tandem\0\0");
    let sum = internet_checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Whether `packet` (an IPv4 datagram, as a raw socket delivers it) is the reply to our echo.
pub(super) fn is_echo_reply(packet: &[u8], id: u16, seq: u16) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let header = usize::from(first & 0x0f) * 4;
    let Some(icmp) = packet.get(header..) else {
        return false;
    };
    icmp.len() >= 8
        && icmp[0] == ICMP_ECHO_REPLY
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

/// RFC 1071 one's-complement sum.
pub(super) fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
