//! The io_uring transport: from accept to close, a session's sockets never enter tokio's epoll
//! set on the common path. The connect and its time limit, receives, sends, the FIN and the
//! close are all queued on the thread's ring and submitted in batches.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockRef, Socket};

use syscall::uring::{self, RingStream};

use crate::proxy::relay::{Meters, Outcome, Timeouts};
use crate::proxy::transport::Transport;

pub struct Uring;

impl Transport for Uring {
    type Stream = RingStream;

    fn adopt(socket: Socket) -> io::Result<RingStream> {
        Ok(RingStream::new(socket))
    }

    async fn connect(
        socket: Socket,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<RingStream> {
        // Owned from here, so a dropped connect closes its socket behind the cancel.
        let stream = RingStream::new(socket);
        uring::connect(stream.as_raw_fd(), addr, timeout).await?;
        Ok(stream)
    }

    async fn write_all(stream: &mut RingStream, bytes: &[u8]) -> io::Result<()> {
        // A socket just connected has room for a header: one plain send, no ring round trip.
        let sent = match SockRef::from(&*stream).send_with_flags(bytes, libc::MSG_NOSIGNAL) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if sent < bytes.len() {
            super::relay::write_all_when_writable(stream.epoll()?, &bytes[sent..], &|_| {}).await?;
        }
        Ok(())
    }

    fn relay<'a>(
        client: &'a mut RingStream,
        backend: &'a mut RingStream,
        timeouts: Timeouts,
        meters: Meters<'a>,
    ) -> impl Future<Output = Outcome> + Send + 'a {
        super::relay::relay(client, backend, timeouts, meters)
    }
}
