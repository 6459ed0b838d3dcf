//! Listening sockets and their accept loops.
//!
//! A listener is bound once and survives reloads that keep its address: a reload only swaps the
//! service generation it hands new connections to ([`Listener::binding`]). When a service goes
//! away its listener stops accepting, takes what is already queued, and closes; its open
//! connections carry on to their natural end.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connect::is_local_exhaustion;
use super::session;
use crate::snapshot::ServiceRuntime;

/// Binds a listening socket the way a load balancer needs it.
///
/// SO_REUSEPORT lets a second process (an upgrade) or a rebind with new options share the
/// address; IP_FREEBIND lets a standby node listen on a VIP it does not hold yet. IPv6 sockets
/// are IPv6-only, so `0.0.0.0:80` and `[::]:80` can both be configured.
///
/// Must run inside the tokio runtime: the socket is registered with it here, so that starting
/// the accept loop later cannot fail.
pub fn bind(addr: SocketAddr, backlog: u32, freebind: bool) -> io::Result<Bound> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one syscall here
    // instead of one per client. Small request/response traffic must not wait on Nagle.
    socket.set_tcp_nodelay(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if freebind {
        if addr.is_ipv4() {
            socket.set_freebind_v4(true)?;
        } else {
            socket.set_freebind_v6(true)?;
        }
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    let control = socket.try_clone()?;
    let listener = register(socket)?;
    Ok(Bound {
        listener,
        control,
        backlog,
    })
}

/// Registers a listening socket with tokio's reactor, for accept readiness.
#[allow(unsafe_code)]
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: a `Socket` owns its descriptor, so it stays open and names the same socket
    // until the AsyncFd drops it or hands it back (`into_inner`).
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}

/// A bound, listening socket not yet accepting.
#[derive(Debug)]
pub struct Bound {
    listener: AsyncFd<Socket>,
    /// A duplicate of the descriptor, to change socket options in place later.
    control: Socket,
    backlog: u32,
}

/// A running accept loop.
#[derive(Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    backlog: u32,
    /// The service generation new connections are served with; reload stores into it.
    pub binding: Arc<ArcSwap<ServiceRuntime>>,
    /// A duplicate of the listening descriptor, to change socket options in place.
    control: Socket,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts accepting on `bound`; must run inside the tokio runtime.
    pub fn start(bound: Bound, service: Arc<ServiceRuntime>, sessions: TaskTracker) -> Self {
        let addr = service.config.listen;
        let Bound {
            listener,
            control,
            backlog,
        } = bound;
        let binding = Arc::new(ArcSwap::new(service));
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(
            listener,
            binding.clone(),
            stop.clone(),
            sessions,
        ));
        Self {
            addr,
            backlog,
            binding,
            control,
            stop,
            task,
        }
    }

    /// Applies a new backlog to the live socket: Linux accepts `listen()` again on a listening
    /// socket. Rebinding instead would risk resetting clients queued on the old socket.
    pub fn set_backlog(&mut self, backlog: u32) -> io::Result<()> {
        if backlog != self.backlog {
            self.control
                .listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
            self.backlog = backlog;
        }
        Ok(())
    }

    /// Stops accepting; connections already queued are still served. Returns when closed.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// First pause after the process ran out of file descriptors; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// While held at `max_conns`, look at the (possibly reloaded) limit again this often.
const LIMIT_RECHECK: Duration = Duration::from_secs(1);

/// Accepts one queued client, non-blocking and close-on-exec in the same call. The socket
/// is handed over unregistered: the session's transport decides whether it joins epoll.
fn accept(listener: &Socket) -> io::Result<(Socket, SocketAddr)> {
    let (socket, peer) = listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    let peer = peer
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a connection without an IP address"))?;
    Ok((socket, peer))
}

/// Waits for a client and accepts it.
async fn accept_next(listener: &AsyncFd<Socket>) -> io::Result<(Socket, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        match ready.try_io(|l| accept(l.get_ref())) {
            Ok(accepted) => return accepted,
            Err(_would_block) => continue,
        }
    }
}

async fn accept_loop(
    listener: AsyncFd<Socket>,
    binding: Arc<ArcSwap<ServiceRuntime>>,
    stop: CancellationToken,
    sessions: TaskTracker,
) {
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut backoff = MIN_BACKOFF;
    let mut other_errors = 0u64;
    let listen = binding.load().config.listen;
    loop {
        let current = binding.load_full();
        let max = u64::from(current.config.max_conns);
        if max > 0 && current.stats.active.load(Relaxed) >= max {
            // At the limit: leave new clients in the kernel's backlog until a slot frees,
            // as HAProxy's maxconn does, instead of accepting and dropping them.
            tokio::select! {
                _ = &mut stopped => break,
                _ = current.stats.slot_freed.notified() => {}
                _ = tokio::time::sleep(LIMIT_RECHECK) => {}
            }
            continue;
        }
        drop(current);
        let accepted = tokio::select! {
            biased;
            _ = &mut stopped => break,
            accepted = accept_next(&listener) => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                other_errors = 0;
                // Loaded after accept: a reload while we waited applies to this client.
                let service = binding.load_full();
                service.stats.connection_opened();
                sessions.spawn(session::serve(stream, peer, service));
            }
            Err(e) if is_local_exhaustion(&e) => {
                // Out of descriptors: the pending connection stays queued and accept would
                // fail again at once. Back off instead of spinning on it.
                tracing::warn!(%listen, error = %e, pause = ?backoff,
                    "accept failed for lack of resources; pausing");
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                // ECONNABORTED and the like concern one client only; but an error that keeps
                // coming back must not turn the loop into a spin.
                other_errors += 1;
                tracing::debug!(%listen, error = %e, "accept failed");
                if other_errors.is_multiple_of(64) {
                    tracing::warn!(%listen, error = %e, "accept keeps failing; pausing");
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(MIN_BACKOFF) => {}
                    }
                }
                continue;
            }
        }
    }
    serve_queued(listener, &binding, &sessions);
}

/// Accepts whatever the kernel already queued before the socket closes: closing a listener
/// resets the connections still in its queue, and those clients did nothing wrong.
fn serve_queued(
    listener: AsyncFd<Socket>,
    binding: &ArcSwap<ServiceRuntime>,
    sessions: &TaskTracker,
) {
    let service = binding.load_full();
    let listener = listener.into_inner();
    let mut served = 0usize;
    while let Ok((socket, peer)) = accept(&listener) {
        service.stats.connection_opened();
        sessions.spawn(session::serve(socket, peer, service.clone()));
        served += 1;
    }
    tracing::info!(listen = %service.config.listen, queued_served = served, "listener closed");
}
