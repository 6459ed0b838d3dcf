//! One client connection from accept to close: pick and connect a backend, optionally send a
//! PROXY header, relay, count.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use socket2::Socket;

use super::connect::{NoBackend, connect_any};
use super::proxy_protocol;
use super::relay::{End, Meters, Timeouts, reset_on_close};
use super::transport::{Epoll, Transport};
use super::uring::Uring;
use crate::generation::ServiceGeneration;
use crate::stats::SourceSlot;

/// Serves one accepted client with the service generation current at accept time, on the
/// thread's io_uring when it has one, else on epoll.
///
/// The accept loop has already counted the connection as open (it took a `max_conns` slot,
/// and with `max_conns_per_source` a place for the client's address: `source`), so that the
/// limits hold even before this task first runs; it is counted closed here.
pub async fn serve(
    client: Socket,
    peer: SocketAddr,
    service: Arc<ServiceGeneration>,
    source: Option<SourceSlot>,
) {
    if syscall::uring::installed() {
        serve_on::<Uring>(client, peer, service, source).await
    } else {
        serve_on::<Epoll>(client, peer, service, source).await
    }
}

async fn serve_on<T: Transport>(
    client: Socket,
    peer: SocketAddr,
    service: Arc<ServiceGeneration>,
    source: Option<SourceSlot>,
) {
    let _source = source;
    let stats = &service.stats;
    let _closed = OnDrop(|| stats.connection_closed());
    // TCP_NODELAY is inherited from the listening socket (see `listener::bind`).
    let mut client = match T::adopt(client) {
        Ok(stream) => ResetIfAbandoned(stream),
        Err(e) => {
            tracing::warn!(service = %service.config.name, client = %peer, error = %e,
                "accepted connection could not be set up: closed");
            return;
        }
    };

    let (slot, upstream) = match connect_any::<T>(&service, peer).await {
        Ok(found) => found,
        Err(why) => {
            stats.refused.fetch_add(1, Relaxed);
            match why {
                NoBackend::NoneUsable => tracing::debug!(service = %service.config.name,
                    client = %peer, "no usable backend: client refused"),
                NoBackend::LocalResources(e) => tracing::warn!(service = %service.config.name,
                    client = %peer, error = %e, "out of local resources: client refused"),
            }
            // A reset tells the client at once that nobody will answer (no hang, no half-open).
            reset_on_close(&client.0);
            return;
        }
    };
    let backend = slot.backend;
    let mut upstream = ResetIfAbandoned(upstream);

    if let Some(version) = service.config.proxy_protocol {
        let local = socket2::SockRef::from(&client.0)
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(service.config.listen);
        let header = proxy_protocol::header(version, peer, local);
        if let Err(e) = T::write_all(&mut upstream.0, &header).await {
            tracing::debug!(backend = %backend.state.addr, error = %e, "PROXY header not sent");
            reset_on_close(&client.0);
            return;
        }
    }

    let meters = Meters {
        client_to_backend: [&stats.bytes_in, &backend.state.bytes_in],
        backend_to_client: [&stats.bytes_out, &backend.state.bytes_out],
    };
    let timeouts = Timeouts {
        idle: service.config.idle_timeout,
        first_byte: service.config.first_byte_timeout,
    };
    let outcome = T::relay(&mut client.0, &mut upstream.0, timeouts, meters).await;
    match outcome.end {
        End::Finished => {}
        End::Idle => {
            stats.idle_timeouts.fetch_add(1, Relaxed);
            tracing::debug!(service = %service.config.name, client = %peer, "idle timeout");
        }
        End::NoFirstByte => {
            stats.first_byte_timeouts.fetch_add(1, Relaxed);
            tracing::debug!(service = %service.config.name, client = %peer,
                "no byte either way within first_byte_timeout: closed");
        }
        End::Failed(e) => {
            tracing::debug!(service = %service.config.name, client = %peer,
                backend = %backend.state.addr, error = %e, "connection aborted")
        }
    }
}

/// Set when the node gives up on the connections still open (the drain deadline passed).
static ABANDONING: AtomicBool = AtomicBool::new(false);

/// From now on, sessions dropped before they finish close their sockets with a reset: a
/// client whose download is cut off by a shutdown must not mistake the end for completion.
pub fn abandon_open_sessions() {
    ABANDONING.store(true, Relaxed);
}

/// A session's socket that is reset, not closed cleanly, if the node abandons the session.
struct ResetIfAbandoned<S: AsFd>(S);

impl<S: AsFd> Drop for ResetIfAbandoned<S> {
    fn drop(&mut self) {
        if ABANDONING.load(Relaxed) {
            reset_on_close(&self.0);
        }
    }
}

/// Runs a closure when dropped: the counters stay right however a session ends.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
