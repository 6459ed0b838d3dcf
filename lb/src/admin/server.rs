//! Where the admin API runs: a thread and runtime of its own, started and stopped by the node.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::AdminContext;

/// The admin address could not be bound (or its thread started).
#[derive(Debug, thiserror::Error)]
#[error("admin API: cannot listen on {addr}: {source}")]
pub struct AdminBindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The admin listener, if one is configured. It runs on a thread and runtime of its own, so a
/// health check is never queued behind the data plane's tasks: a busy node still answers its
/// load balancer in front at once.
pub struct AdminServer {
    /// Where it listens; `None`: the admin API is off.
    pub addr: Option<SocketAddr>,
    stop: CancellationToken,
}

impl AdminServer {
    /// Binds `addr` (if any) and serves the admin API there on a thread of its own.
    pub async fn start(
        addr: Option<SocketAddr>,
        context: Arc<AdminContext>,
    ) -> Result<Self, AdminBindError> {
        let stop = CancellationToken::new();
        if let Some(addr) = addr {
            let bind_error = |source| AdminBindError { addr, source };
            let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(bind_error)?;
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tandem-admin".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(listener) => super::serve(listener, context, stop).await,
                            Err(e) => tracing::error!(error = %e, "admin API not started"),
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
