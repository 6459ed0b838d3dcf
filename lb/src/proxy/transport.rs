//! How a session's sockets do their I/O: through tokio's epoll reactor, or through the
//! thread's io_uring ([`super::uring::Uring`]). The session's logic (pick, connect with retry,
//! PROXY header, relay, counting) is written once over this trait.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::Socket;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use super::relay::{Meters, Outcome, Timeouts, relay};

pub trait Transport {
    /// A connected socket in this transport's hands.
    type Stream: AsFd + Send + Sync;

    /// Takes an accepted (non-blocking) client socket.
    fn adopt(socket: Socket) -> io::Result<Self::Stream>;

    /// Connects a fresh non-blocking socket to `addr`. Fails with `ErrorKind::TimedOut` when
    /// no answer came within `timeout`.
    fn connect(
        socket: Socket,
        addr: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Writes all of `bytes` (a PROXY header) before anything else goes out.
    fn write_all(
        stream: &mut Self::Stream,
        bytes: &[u8],
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Moves bytes both ways until the connection ends (see [`super::relay`]).
    fn relay<'a>(
        client: &'a mut Self::Stream,
        backend: &'a mut Self::Stream,
        timeouts: Timeouts,
        meters: Meters<'a>,
    ) -> impl Future<Output = Outcome> + Send + 'a;
}

/// Readiness from tokio's epoll reactor; reads and writes are system calls.
pub struct Epoll;

impl Transport for Epoll {
    type Stream = TcpStream;

    fn adopt(socket: Socket) -> io::Result<TcpStream> {
        TcpStream::from_std(socket.into())
    }

    async fn connect(socket: Socket, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let socket = TcpSocket::from_std_stream(socket.into());
        match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(result) => result,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
        stream.write_all(bytes).await
    }

    fn relay<'a>(
        client: &'a mut TcpStream,
        backend: &'a mut TcpStream,
        timeouts: Timeouts,
        meters: Meters<'a>,
    ) -> impl Future<Output = Outcome> + Send + 'a {
        relay(client, backend, timeouts, true, meters)
    }
}
