//! A session's socket on the io_uring path: its receives, sends, shutdown and close go through
//! the ring, and it joins tokio's epoll set only if a rare path needs readiness.
//!
//! Registering every socket with epoll costs two `epoll_ctl` calls per socket and a wake-up
//! callback on each of its packets, for readiness the ring path never asks for. So a
//! `RingStream` starts unregistered; back-pressure writes and splice, which do wait on
//! readiness, register a duplicate of the descriptor the first time they need it.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use socket2::Socket;
use tokio::net::TcpStream;

use super::ring;

pub struct RingStream {
    /// Closed through the ring in `drop`, not by `OwnedFd`'s own drop.
    fd: ManuallyDrop<OwnedFd>,
    /// The same socket, registered with tokio's reactor, once something needed readiness.
    epoll: OnceLock<TcpStream>,
}

impl RingStream {
    /// Takes a connected or connecting non-blocking socket.
    pub fn new(socket: Socket) -> Self {
        Self {
            fd: ManuallyDrop::new(socket.into()),
            epoll: OnceLock::new(),
        }
    }

    /// The socket as a tokio stream, for waiting on readiness. The first call registers a
    /// duplicate descriptor with the reactor; it closes with this stream.
    pub fn epoll(&self) -> io::Result<&TcpStream> {
        if let Some(stream) = self.epoll.get() {
            return Ok(stream);
        }
        let duplicate = self.as_fd().try_clone_to_owned()?;
        let stream = TcpStream::from_std(std::net::TcpStream::from(duplicate))?;
        Ok(self.epoll.get_or_init(|| stream))
    }
}

impl AsFd for RingStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for RingStream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for RingStream {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and `self.fd` is not used again.
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) };
        // Queued behind any operation still naming the descriptor, and sent with them.
        ring::close(fd);
    }
}
