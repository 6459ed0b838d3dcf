//! UDP checks: one datagram out, a reply (with an expected prefix) back.
//!
//! The socket is connected to the target, so the kernel hands it only the target's replies,
//! and an ICMP port unreachable for the probe comes back as a refused receive: a backend whose
//! port is closed fails at once instead of at the timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::tcp::quote;
use super::{CheckError, QUOTE_LIMIT};

/// The largest datagram a reply can be: a reply is read whole, its prefix compared.
const MAX_REPLY: usize = 65_536;

pub(super) async fn udp(
    addr: SocketAddr,
    send: &[u8],
    expect: Option<&[u8]>,
) -> Result<(), CheckError> {
    let any = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0))
        .await
        .map_err(CheckError::Connect)?;
    socket.connect(addr).await.map_err(CheckError::Connect)?;
    socket.send(send).await.map_err(CheckError::Io)?;
    // Only as much of the reply as is compared (and quoted) is kept; the rest of the
    // datagram is discarded by the kernel with the read.
    let keep = expect.map_or(0, <[u8]>::len).max(QUOTE_LIMIT);
    let mut reply = vec![0u8; keep.min(MAX_REPLY)];
    let n = socket.recv(&mut reply).await.map_err(CheckError::Io)?;
    let Some(expect) = expect else {
        return Ok(());
    };
    let got = &reply[..n.min(reply.len())];
    if got.starts_with(expect) {
        Ok(())
    } else {
        Err(CheckError::Expect {
            expected: quote(expect),
            got: quote(got),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn echo_server(reply: &'static [u8]) -> SocketAddr {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((_, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(reply, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_reply_with_the_expected_prefix_passes_and_another_fails_quoting_it() {
        let addr = echo_server(b"PONG and more").await;
        udp(addr, b"PING", Some(b"PONG")).await.unwrap();
        udp(addr, b"PING", None).await.unwrap();
        let err = udp(addr, b"PING", Some(b"PANG")).await.unwrap_err();
        assert!(err.to_string().contains("PONG and more"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_fails_at_once_with_the_refusal() {
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let started = tokio::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), udp(closed, b"x", None))
            .await
            .expect("the refusal comes back, no timeout needed")
            .unwrap_err();
        assert!(
            matches!(&err, CheckError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
