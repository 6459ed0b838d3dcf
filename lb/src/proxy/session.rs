//! One client connection from accept to close: pick and connect a backend, optionally send a
//! PROXY header, relay, count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::connect::{NoBackend, connect_any};
use super::proxy_protocol;
use super::relay::{End, Meters, relay};
use super::uring;
use crate::snapshot::ServiceRuntime;

/// Serves one accepted client with the service generation current at accept time.
///
/// The caller has already counted the connection as open (`connection_opened`) at accept time,
/// so that `max_conns` holds even before this task first runs; it is counted closed here.
pub async fn serve(client: TcpStream, peer: SocketAddr, service: Arc<ServiceRuntime>) {
    let mut client = ResetIfAbandoned(client);
    let stats = &service.stats;
    let _closed = OnDrop(|| stats.connection_closed());
    // TCP_NODELAY is inherited from the listening socket (see `listener::bind`).

    let (slot, upstream) = match connect_any(&service, peer).await {
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
            let _ = client.0.set_zero_linger();
            return;
        }
    };
    let backend = slot.backend;
    let mut upstream = ResetIfAbandoned(upstream);

    if let Some(version) = service.config.proxy_protocol {
        let local = client.0.local_addr().unwrap_or(service.config.listen);
        let header = proxy_protocol::header(version, peer, local);
        if let Err(e) = upstream.0.write_all(&header).await {
            tracing::debug!(backend = %backend.state.addr, error = %e, "PROXY header not sent");
            let _ = client.0.set_zero_linger();
            return;
        }
    }

    let meters = Meters {
        client_to_backend: [&stats.bytes_in, &backend.state.bytes_in],
        backend_to_client: [&stats.bytes_out, &backend.state.bytes_out],
    };
    let idle_timeout = service.config.idle_timeout;
    let outcome = if uring::installed() {
        uring::relay(&client.0, &upstream.0, idle_timeout, meters).await
    } else {
        relay(&mut client.0, &mut upstream.0, idle_timeout, true, meters).await
    };
    match outcome.end {
        End::Finished => {}
        End::Idle => {
            stats.idle_timeouts.fetch_add(1, Relaxed);
            tracing::debug!(service = %service.config.name, client = %peer, "idle timeout");
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
struct ResetIfAbandoned(TcpStream);

impl Drop for ResetIfAbandoned {
    fn drop(&mut self) {
        if ABANDONING.load(Relaxed) {
            let _ = self.0.set_zero_linger();
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
