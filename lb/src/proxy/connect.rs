//! Opening the backend side of a connection: connect with a timeout, retry on another backend.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::transport::Transport;
use crate::generation::ServiceGeneration;
use crate::pool::Slot;

/// Connects to `addr` over transport `T`, giving up after `timeout`.
pub async fn connect<T: Transport>(addr: SocketAddr, timeout: Duration) -> io::Result<T::Stream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    T::connect(socket, addr, timeout).await.map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {}", humantime::format_duration(timeout)),
            )
        } else {
            e
        }
    })
}

/// Why no backend connection could be made for a client.
#[derive(Debug)]
pub enum NoBackend {
    /// Nothing in the pool is usable (all down, drained or full), before or after retries.
    NoneUsable,
    /// This process is out of file descriptors or memory: not the backends' fault.
    LocalResources(io::Error),
}

/// Picks a backend for `client` and connects, moving on to another backend when a connect
/// fails, up to `retries` extra attempts. Returns the backend's connection slot (held until
/// dropped) and the stream.
pub async fn connect_any<T: Transport>(
    service: &ServiceGeneration,
    client: SocketAddr,
) -> Result<(Slot<'_>, T::Stream), NoBackend> {
    let pool = &service.pool;
    let config = &service.config;
    // Allocates only when a backend fails or is full: the common path stays allocation-free.
    let mut excluded: Vec<usize> = Vec::new();
    let mut failures = 0u32;
    loop {
        let index = pool
            .pick(client.ip(), &excluded)
            .ok_or(NoBackend::NoneUsable)?;
        let backend = &pool.backends[index];
        let Some(slot) = backend.try_acquire() else {
            // Filled up between pick and acquire: try another, it costs no attempt.
            excluded.push(index);
            continue;
        };
        let addr = backend.state.addr;
        match connect::<T>(addr, config.connect_timeout).await {
            Ok(stream) => {
                backend.state.record_connect_success();
                backend.state.total.fetch_add(1, Relaxed);
                return Ok((slot, stream));
            }
            Err(e) => {
                drop(slot);
                if is_local_exhaustion(&e) {
                    return Err(NoBackend::LocalResources(e));
                }
                let consecutive =
                    crate::passive::backend_failed(service, index, "connect failures", &e);
                failures += 1;
                let retry = failures <= config.retries;
                // One warning when a backend starts failing, not one per client.
                if consecutive == 1 {
                    tracing::warn!(service = %config.name, pool = %pool.name, backend = %addr,
                        error = %e, retry, "backend connect failed");
                } else {
                    tracing::debug!(service = %config.name, backend = %addr, error = %e,
                        consecutive, retry, "backend connect failed");
                }
                if !retry {
                    return Err(NoBackend::NoneUsable);
                }
                service.stats.retries.fetch_add(1, Relaxed);
                excluded.push(index);
            }
        }
    }
}

/// Errors that say this host, not the peer, ran out of something: descriptors, memory, or
/// ephemeral ports (EADDRNOTAVAIL on connect). Counting those against a backend would eject
/// healthy backends and burn retries.
pub fn is_local_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}
