//! Where the admin API runs: a thread and runtime of its own, started and stopped by the node;
//! the optional health listener likewise, on another.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{AdminContext, Endpoint};

/// The admin address (or the health listener's) could not be bound, or its thread started.
#[derive(Debug, thiserror::Error)]
#[error("{} API: cannot listen on {addr}: {source}", endpoint.as_str())]
pub struct AdminBindError {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// An admin listener, if one is configured. It runs on a thread and runtime of its own, so a
/// health check is never queued behind the data plane's tasks: a busy node still answers its
/// load balancer in front at once. The health listener has a thread of its own too, so not
/// even the admin API's own work can hold it up.
pub struct AdminServer {
    /// Where it listens; `None`: the admin API is off.
    pub addr: Option<SocketAddr>,
    stop: CancellationToken,
}

/// The admin listeners' accept queue. A connect flood arrives faster than any loop accepts
/// for a few milliseconds at a time; with the usual 128 the queue overflows, the kernel drops
/// SYNs, and a health check dropped with them waits a whole second for its retransmission.
/// (The kernel caps it at `net.core.somaxconn`.)
const BACKLOG: i32 = 4096;

/// A non-blocking listening socket on `addr` with a deep accept queue.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    // As std's bind does (and, like it, leaving IPV6_V6ONLY to the system): a restarted node
    // rebinds at once despite TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

impl AdminServer {
    /// Binds `addr` (if any) and serves `endpoint` there on a thread of its own.
    pub async fn start(
        addr: Option<SocketAddr>,
        endpoint: Endpoint,
        context: Arc<AdminContext>,
    ) -> Result<Self, AdminBindError> {
        let stop = CancellationToken::new();
        if let Some(addr) = addr {
            let bind_error = |source| AdminBindError {
                endpoint,
                addr,
                source,
            };
            let listener = bind(addr).map_err(bind_error)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(bind_error)?;
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("tandem-{}", endpoint.as_str()))
                .spawn(move || {
                    runtime.block_on(async move {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(listener) => {
                                super::listen::serve(listener, context, endpoint, stop).await
                            }
                            Err(e) => tracing::error!(error = %e, listener = endpoint.as_str(),
                                "admin API not started"),
                        }
                    });
                })
                .map_err(bind_error)?;
        }
        Ok(Self { addr, stop })
    }

    /// Stops accepting admin requests.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
