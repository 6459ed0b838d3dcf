//! Registering sockets with tokio's reactor.
//!
//! tokio's `AsyncFd::register_with_interest` is unsafe because any `AsRawFd` could hand it a
//! descriptor that closes or changes under it. A `socket2::Socket` cannot: it owns its
//! descriptor, reports that same one for life and closes it only when dropped. So for sockets
//! the registration is safe, and this is the one place that says so.

use std::io;

use socket2::Socket;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers `socket` with the reactor of the runtime entered, for readiness of `interest`.
///
/// # Panics
/// Outside a tokio runtime with I/O enabled, as tokio's registration does.
pub fn register(socket: Socket, interest: Interest) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: a `Socket` owns its descriptor, so it stays open and names the same socket
    // until the AsyncFd drops it or hands it back (`into_inner`).
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(io::Error::from)
}

/// As [`register`], for any other descriptor the caller owns (an epoll instance).
pub fn register_owned(
    fd: std::os::fd::OwnedFd,
    interest: Interest,
) -> io::Result<AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an `OwnedFd` owns its descriptor, so it stays open and names the same object
    // until the AsyncFd drops it or hands it back.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
