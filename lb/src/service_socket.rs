//! The socket a service listens on, TCP or UDP, with the options every one needs.
//!
//! SO_REUSEADDR and SO_REUSEPORT let each data thread bind a socket of its own to the same
//! address (the kernel spreads clients over them), and let a rebind with new options or a second
//! process (an upgrade) share it. IPv6 sockets are IPv6-only, so `0.0.0.0:53` and `[::]:53` can
//! both be configured. IP_FREEBIND lets a standby node bind a VIP it does not hold yet.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Which kind of service the socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
}

/// A non-blocking, close-on-exec socket of `kind` for `addr` with the shared options set
/// (module docs), not yet bound: the caller adds what its protocol needs, then binds.
pub fn new(kind: Kind, addr: SocketAddr, freebind: bool) -> io::Result<Socket> {
    let (ty, protocol) = match kind {
        Kind::Tcp => (Type::STREAM, Protocol::TCP),
        Kind::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(
        Domain::for_address(addr),
        ty.nonblocking().cloexec(),
        Some(protocol),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if freebind {
        if addr.is_ipv4() {
            socket.set_freebind_v4(true)?;
        } else {
            socket.set_freebind_v6(true)?;
        }
    }
    Ok(socket)
}
