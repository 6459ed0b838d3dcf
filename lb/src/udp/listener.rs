//! A UDP service's sockets, one per data thread, and the workers serving them.
//!
//! Bound once, kept across reloads that keep the service's address (a reload stores the new
//! generation, which new flows use; flows already open keep theirs). Stopping one (the service
//! removed, or the node stopping) turns its workers to draining: flows already open are served
//! until they end, and the workers close their sockets when their tables are empty (or the
//! drain deadline drops them).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use socket2::Socket;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::worker;
use crate::generation::ServiceGeneration;
use crate::service_socket::{self, Kind};

/// What the kernel may queue for a service socket: a burst of small datagrams waits here while
/// its thread is busy. Capped by `net.core.rmem_max` unless the process may exceed it.
const RECEIVE_BUFFER: usize = 4 << 20;

/// Bound service sockets not yet served: one per data runtime.
#[derive(Debug)]
pub struct Bound {
    sockets: Vec<(Handle, AsyncFd<Socket>)>,
}

/// Binds `addr` once for each of `runtimes` (options: [`crate::service_socket`]), each
/// registered with its runtime's reactor here, so that starting the workers cannot fail.
pub fn bind(addr: SocketAddr, freebind: bool, runtimes: &[Handle]) -> io::Result<Bound> {
    let mut sockets = Vec::with_capacity(runtimes.len());
    for runtime in runtimes {
        let socket = udp_socket(addr, freebind)?;
        let _entered = runtime.enter();
        let registered = syscall::reactor::register(socket, Interest::READABLE)?;
        sockets.push((runtime.clone(), registered));
    }
    Ok(Bound { sockets })
}

fn udp_socket(addr: SocketAddr, freebind: bool) -> io::Result<Socket> {
    let socket = service_socket::new(Kind::Udp, addr, freebind)?;
    // Best effort: the kernel caps it at rmem_max, which is what a node without tuning gets.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A UDP service's running workers.
#[derive(Debug)]
pub struct UdpListener {
    pub addr: SocketAddr,
    /// The generation new flows are served with; reload stores into it.
    pub generation: Arc<ArcSwap<ServiceGeneration>>,
    stop: CancellationToken,
}

impl UdpListener {
    /// Starts a worker on each socket of `bound`, on the runtime it was bound for. The
    /// workers are tracked by `sessions`, so a drain waits for their flows.
    pub fn start(bound: Bound, service: Arc<ServiceGeneration>, sessions: &TaskTracker) -> Self {
        let addr = service.config.listen;
        let generation = Arc::new(ArcSwap::new(service));
        let stop = CancellationToken::new();
        for (runtime, socket) in bound.sockets {
            let work = worker::run(socket, generation.clone(), stop.clone());
            runtime.spawn(sessions.track_future(work));
        }
        Self {
            addr,
            generation,
            stop,
        }
    }

    /// Turns the workers to draining: no new flow; open ones are served to their end, then
    /// the sockets close.
    pub fn stop(self) {
        self.stop.cancel();
    }
}
