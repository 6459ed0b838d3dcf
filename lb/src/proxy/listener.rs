//! Listening sockets and their accept loops.
//!
//! A listener is bound once and survives reloads that keep its address: a reload only swaps the
//! service generation it hands new connections to ([`Listener::generation`]). When a service goes
//! away its listener stops accepting and is retired (see [`retire`]): it lets no new handshake
//! begin, serves with the old config every client whose handshake had begun or was queued, and
//! closes; its open connections carry on to their natural end.
//!
//! A listener is one SO_REUSEPORT socket per data thread (see [`crate::data_threads`]), each with
//! its own accept loop on its own thread: the kernel spreads the clients over them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::Socket;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

use super::connect::is_local_exhaustion;
use super::relay::reset_on_close;
use super::session;
use crate::generation::ServiceGeneration;
use crate::logging::Throttle;
use crate::service_socket::{self, Kind};
use crate::stats::SourceSlot;

/// Binds a listening socket the way a load balancer needs it (see [`crate::service_socket`]).
///
/// One socket is bound for each of `runtimes`, and registered with that runtime here, so that
/// starting the accept loops later cannot fail.
pub fn bind(
    addr: SocketAddr,
    backlog: u32,
    freebind: bool,
    runtimes: &[Handle],
) -> io::Result<Bound> {
    let mut bound = Bound {
        sockets: Vec::with_capacity(runtimes.len()),
        control: Vec::with_capacity(runtimes.len()),
        backlog,
    };
    for runtime in runtimes {
        let socket = listening_socket(addr, backlog, freebind)?;
        bound.control.push(socket.try_clone()?);
        let _entered = runtime.enter();
        bound.sockets.push((runtime.clone(), register(socket)?));
    }
    Ok(bound)
}

fn listening_socket(addr: SocketAddr, backlog: u32, freebind: bool) -> io::Result<Socket> {
    let socket = service_socket::new(Kind::Tcp, addr, freebind)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one syscall here
    // instead of one per client. Small request/response traffic must not wait on Nagle.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket)
}

/// Registers a listening socket with the reactor of the runtime entered, for accept readiness.
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    syscall::reactor::register(socket, Interest::READABLE)
}

/// Bound, listening sockets not yet accepting: one per data runtime.
#[derive(Debug)]
pub struct Bound {
    sockets: Vec<(Handle, AsyncFd<Socket>)>,
    /// Duplicates of the descriptors, to change socket options in place later.
    control: Vec<Socket>,
    backlog: u32,
}

/// A running accept loop.
#[derive(Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    backlog: u32,
    /// The service generation new connections are served with; reload stores into it.
    pub generation: Arc<ArcSwap<ServiceGeneration>>,
    /// Duplicates of the listening descriptors, to change socket options in place.
    control: Vec<Socket>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Listener {
    /// Starts accepting on each socket of `bound`, on the runtime it was bound for.
    pub fn start(bound: Bound, service: Arc<ServiceGeneration>, sessions: TaskTracker) -> Self {
        let addr = service.config.listen;
        let Bound {
            sockets,
            control,
            backlog,
        } = bound;
        let generation = Arc::new(ArcSwap::new(service));
        let stop = CancellationToken::new();
        let tasks = sockets
            .into_iter()
            .map(|(runtime, listener)| {
                runtime.spawn(accept_loop(
                    listener,
                    generation.clone(),
                    stop.clone(),
                    sessions.clone(),
                ))
            })
            .collect();
        Self {
            addr,
            backlog,
            generation,
            control,
            stop,
            tasks,
        }
    }

    /// Applies a new backlog to the live socket: Linux accepts `listen()` again on a listening
    /// socket. Rebinding instead would risk resetting clients queued on the old socket.
    pub fn set_backlog(&mut self, backlog: u32) -> io::Result<()> {
        if backlog != self.backlog {
            for socket in &self.control {
                socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
            }
            self.backlog = backlog;
        }
        Ok(())
    }

    /// Starts [`Listener::stop`] without waiting: with many listeners, each retires (see
    /// [`retire`]) beside the others.
    pub fn stop_accepting(&self) {
        self.stop.cancel();
    }

    /// Stops accepting; connections already queued are still served. Returns when closed.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// First pause after the process ran out of file descriptors; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// While held at `max_conns`, look at the (possibly reloaded) limit again this often.
const LIMIT_RECHECK: Duration = Duration::from_secs(1);
/// How long a retired listener waits for the handshakes begun before it stopped taking new
/// ones (a round trip: the client's final ACK), serving each, before it closes.
pub const RETIRE_GRACE: Duration = Duration::from_millis(250);

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
    generation: Arc<ArcSwap<ServiceGeneration>>,
    stop: CancellationToken,
    sessions: TaskTracker,
) {
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut backoff = MIN_BACKOFF;
    let mut other_errors = 0u64;
    // Clients reset for `max_conns_per_source`: one line at most every 10 s per accept loop.
    let mut rejections = Throttle::default();
    let listen = generation.load().config.listen;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stopped => break,
            accepted = accept_next(&listener) => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                other_errors = 0;
                // Before `max_conns`: a client turned away must not wait for a slot first.
                let Ok(source) = source_slot(&generation.load(), &stream, peer, &mut rejections)
                else {
                    continue;
                };
                // Loaded once a slot is free: a reload while we waited applies to this client.
                let service = take_slot(&generation, stopped.as_mut()).await;
                sessions.spawn(session::serve(stream, peer, service, source));
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
    retire(listener, &generation, &sessions).await;
}

/// With `max_conns_per_source`, a place for the client's address: `Ok(None)` without the
/// limit, `Err` (the client reset, counted and, at most every 10 s, logged) when its address
/// holds its limit already. Refused at once, like HAProxy's `tcp-request connection reject`: a
/// client held in the backlog instead would hold up everyone queued behind it.
fn source_slot(
    service: &ServiceGeneration,
    client: &Socket,
    peer: SocketAddr,
    rejections: &mut Throttle,
) -> Result<Option<SourceSlot>, ()> {
    let max = service.config.max_conns_per_source;
    if max == 0 {
        return Ok(None);
    }
    if let Some(slot) = SourceSlot::take(&service.stats, peer.ip(), max) {
        return Ok(Some(slot));
    }
    service
        .stats
        .rejected_per_source
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    reset_on_close(client);
    if let Some(clients) = rejections.note(tokio::time::Instant::now()) {
        tracing::warn!(service = %service.config.name, client = %peer,
            max_conns_per_source = max, clients,
            "clients reset: their address holds max_conns_per_source connections (logged at most once per 10 s per thread)");
    }
    Err(())
}

/// Holds an accepted client until its service is below `max_conns`, then counts it open and
/// returns the generation to serve it with. At the limit a listener accepts no further
/// client, so the rest wait in the kernel's backlog, as with HAProxy's maxconn. The slot is
/// taken after accept, not before: with one socket per data thread, a slot held by a loop
/// still waiting for its next client could stall a client queued on another thread's socket.
/// A listener told to stop serves the client at once, like everything already queued.
async fn take_slot(
    generation: &ArcSwap<ServiceGeneration>,
    mut stopped: Pin<&mut WaitForCancellationFuture<'_>>,
) -> Arc<ServiceGeneration> {
    loop {
        let service = generation.load_full();
        if service.stats.try_open(service.config.max_conns) {
            return service;
        }
        tokio::select! {
            _ = stopped.as_mut() => {
                service.stats.connection_opened();
                return service;
            }
            _ = service.stats.slot_freed.notified() => {}
            _ = tokio::time::sleep(LIMIT_RECHECK) => {}
        }
    }
}

/// Closes a listener without resetting a client. Closing a listening socket resets every
/// connection in its queue (established by the kernel, never accepted) and every handshake
/// still under way on it, and those clients did nothing wrong. So first no new handshake may
/// begin ([`refuse_new_handshakes`]: a SYN that comes now is dropped, the client sends it again
/// a second later and is refused by then); then for [`RETIRE_GRACE`] the handshakes already
/// begun complete and every client queued is served, with the service as it was; then it
/// closes, and new clients are refused (RST) at once.
///
/// What it cannot save: a handshake whose final ACK takes longer than the grace (a client more
/// than a quarter of a second away) is reset when that ACK comes.
async fn retire(
    listener: AsyncFd<Socket>,
    generation: &ArcSwap<ServiceGeneration>,
    sessions: &TaskTracker,
) {
    let service = generation.load_full();
    let listen = service.config.listen;
    if let Err(e) = refuse_new_handshakes(listener.get_ref()) {
        // Closed at once, as before: a client in the last moment may be reset.
        tracing::warn!(%listen, error = %e, "could not stop new handshakes on a retired listener");
    }
    let serve_queued = |served: &mut usize| {
        while let Ok((socket, peer)) = accept(listener.get_ref()) {
            service.stats.connection_opened();
            sessions.spawn(session::serve(socket, peer, service.clone(), None));
            *served += 1;
        }
    };
    let mut served = 0usize;
    let grace = tokio::time::sleep(RETIRE_GRACE);
    tokio::pin!(grace);
    loop {
        serve_queued(&mut served);
        tokio::select! {
            () = &mut grace => break,
            ready = listener.readable() => match ready {
                Ok(mut ready) => ready.clear_ready(),
                Err(_) => break,
            },
        }
    }
    serve_queued(&mut served);
    drop(listener);
    tracing::info!(%listen, queued_served = served, "listener closed");
}

/// Makes the kernel drop every SYN that reaches `listener` (flags SYN without ACK) and pass
/// everything else, the final ACKs of handshakes already begun among them: no new client can
/// be established on it, so none can be queued there when it closes. A classic BPF socket
/// filter; on a TCP socket it sees each segment from its TCP header on.
fn refuse_new_handshakes(listener: &Socket) -> io::Result<()> {
    use socket2::SockFilter;
    // Opcodes of classic BPF (linux/filter.h).
    const LOAD_BYTE_AT: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const AND: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    // The TCP header's flags byte (RFC 9293 §3.1), and its SYN and ACK bits.
    const FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let program = [
        SockFilter::new(LOAD_BYTE_AT, 0, 0, FLAGS),
        SockFilter::new(AND, 0, 0, SYN | ACK),
        // A SYN alone: skip one, to the drop; anything else: on, to the pass.
        SockFilter::new(JUMP_IF_EQUAL, 1, 0, SYN),
        SockFilter::new(RETURN, 0, 0, u32::MAX),
        SockFilter::new(RETURN, 0, 0, 0),
    ];
    listener.attach_filter(&program)
}
