//! One data thread's loop for one UDP service socket.
//!
//! The worker owns the service socket, an epoll instance holding the backend socket of each
//! of its flows, and its flow table. It waits (on tokio's reactor) for either to be readable:
//!
//! - the service socket: `recvmmsg` takes up to [`BATCH`] client datagrams; each finds its
//!   flow (or starts one: max_flows, a pick, a connected backend socket) and consecutive
//!   datagrams of one flow go to its backend together: a run of one size in one segmented
//!   send (UDP GSO: the kernel's stack carries it as one buffer and splits it into the
//!   datagrams at the end), the others in one `sendmmsg`;
//! - the epoll instance: its ready backend sockets are read with `recvmmsg`, their replies
//!   gathered, addressed to their clients and sent in one `sendmmsg` from the service socket.
//!
//! Nothing on this path allocates per datagram: the batches are allocated once, the flow
//! table grows only with new flows, and the kernel's message headers are built on the stack.
//! Expiry runs on a timer; a flow also ends at its replies (`responses`), when its backend
//! refuses (ICMP port unreachable), or when its backend went down (its next datagram picks
//! again). Told to stop, the worker drains: no new flow, open flows served until the table is
//! empty.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustix::event::{Timespec, epoll};
use socket2::{Domain, Socket, Type};
use syscall::datagrams::{self, Batch};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::flows::{Exchange, FlowId, FlowTable};
use crate::generation::ServiceGeneration;
use crate::pool::Hold;
use crate::proxy::connect::is_local_exhaustion;
use crate::proxy::proxy_protocol;
use crate::stats::{DropReason, FlowEnd, ServiceStats};

/// Datagrams one receive takes, and one reply batch holds.
const BATCH: usize = 32;
/// A slot holds any datagram whole: UDP's payload is at most 65,507 bytes over IPv4 (65,527
/// over IPv6 without jumbograms).
const SLOT: usize = 65_536;
/// Most flows one thread holds for one service. Each holds a socket (a descriptor and a few
/// KiB in the kernel), so this bounds what a flood of spoofed sources can cost; past it, the
/// flow quiet longest makes room.
pub const TABLE_CAPACITY: usize = 65_536;
/// Receive batches (or epoll rounds) served per wake-up before the thread's other tasks run.
const BATCHES_PER_TURN: usize = 16;
/// Receives from one backend socket per epoll round: a flow flooding replies cannot hold up
/// the others (level-triggered epoll reports it again).
const READS_PER_FLOW: usize = 4;
/// Expiry runs every quarter of `idle_timeout`, within these bounds.
const MIN_TICK: Duration = Duration::from_millis(10);
const MAX_TICK: Duration = Duration::from_secs(1);

/// One flow: its client is its key in the table.
struct Flow {
    /// The generation it started with: its backend is in this generation's pool.
    generation: Arc<ServiceGeneration>,
    index: usize,
    /// Counts the flow in its backend's `active` until dropped.
    hold: Hold,
    /// Connected to the backend: only its replies arrive here, and its refusals.
    socket: Socket,
    exchange: Exchange,
    /// The PROXY v2 header sent before each datagram; empty for none.
    header: Box<[u8]>,
    /// A reply has come: the backend answers (clears its failures once, not per datagram).
    answered: bool,
    /// Runs of equal-sized datagrams go to the backend in one segmented send (UDP GSO) until
    /// the kernel refuses one for this socket (its route's MTU, or no GSO): then one by one.
    segments: bool,
}

impl Flow {
    /// Its backend went down or was ejected: the client's next datagram picks again.
    fn backend_gone(&self) -> bool {
        !self.hold.state.up.load(Relaxed) || self.hold.state.ejected()
    }

    fn stats(&self) -> &ServiceStats {
        &self.generation.stats
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.generation.stats.connection_closed();
    }
}

/// What the worker waits on.
struct Io {
    socket: AsyncFd<Socket>,
    epoll: AsyncFd<OwnedFd>,
}

/// What the worker changes.
struct State {
    generation: Arc<ArcSwap<ServiceGeneration>>,
    table: FlowTable<Flow>,
    requests: Batch,
    replies: Batch,
    /// Reply slots filled, not yet sent.
    pending: usize,
    draining: bool,
}

/// Serves `socket` (a service socket, registered with this thread's reactor) until `stop`
/// is cancelled and its last flow has ended.
pub async fn run(
    socket: AsyncFd<Socket>,
    generation: Arc<ArcSwap<ServiceGeneration>>,
    stop: CancellationToken,
) {
    let listen = generation.load().config.listen;
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
        .map_err(io::Error::from)
        .and_then(|fd| syscall::reactor::register_owned(fd, Interest::READABLE));
    let epoll = match epoll {
        Ok(epoll) => epoll,
        Err(e) => {
            tracing::error!(%listen, error = %e, "UDP worker cannot start: no epoll instance");
            return;
        }
    };
    let io = Io { socket, epoll };
    let mut state = State {
        generation,
        table: FlowTable::new(TABLE_CAPACITY),
        requests: Batch::new(BATCH, SLOT),
        replies: Batch::new(BATCH, SLOT),
        pending: 0,
        draining: false,
    };
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let tick = state.tick();
    let expiry = tokio::time::sleep(tick);
    tokio::pin!(expiry);
    loop {
        if state.draining && state.table.is_empty() {
            break;
        }
        // Unbiased: under a flood of client datagrams the socket is always ready, and the
        // replies (epoll) and the expiry timer must still get their turns.
        tokio::select! {
            () = &mut stopped, if !state.draining => {
                state.draining = true;
                tracing::debug!(%listen, flows = state.table.len(), "UDP worker draining");
            }
            ready = io.socket.readable() => match ready {
                Ok(mut guard) => {
                    if state.requests_turn(&io) {
                        guard.clear_ready();
                    }
                }
                Err(e) => {
                    tracing::error!(%listen, error = %e, "UDP service socket failed");
                    break;
                }
            },
            ready = io.epoll.readable() => match ready {
                Ok(mut guard) => {
                    if state.replies_turn(&io) {
                        guard.clear_ready();
                    }
                }
                Err(e) => {
                    tracing::error!(%listen, error = %e, "UDP flow sockets' epoll failed");
                    break;
                }
            },
            () = &mut expiry => {
                state.expire(Instant::now());
                expiry.as_mut().reset(Instant::now() + state.tick());
            }
        }
    }
    for _ in 0..state.table.len() {
        if let Some((_, flow)) = state.table.pop_oldest() {
            flow.stats().flow_ends.add(FlowEnd::Stopped.index(), 1);
        }
    }
    tracing::debug!(%listen, "UDP worker done");
}

impl State {
    fn tick(&self) -> Duration {
        (self.generation.load().config.idle_timeout / 4).clamp(MIN_TICK, MAX_TICK)
    }

    /// Takes client datagrams until none is queued (true) or the turn is used up (false).
    fn requests_turn(&mut self, io: &Io) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            let n = match self.requests.recv(io.socket.get_ref().as_fd(), 0..BATCH) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    return true;
                }
            };
            self.on_requests(n, io);
        }
        false
    }

    /// Passes the `n` datagrams just received to their flows' backends.
    fn on_requests(&mut self, n: usize, io: &Io) {
        let now = Instant::now();
        let generation = self.generation.load_full();
        // A run: consecutive slots of one flow, sent in one call.
        let mut run: Option<(FlowId, usize)> = None;
        for i in 0..n {
            let client = match self.requests.peer(i) {
                Some(client) if !self.requests.truncated(i) => client,
                cut_or_unaddressed => {
                    // Not forwarded: the run so far goes, and this slot is left out of it.
                    if let Some((current, start)) = run.take() {
                        self.send_run(current, start..i);
                    }
                    if cut_or_unaddressed.is_some() {
                        generation.stats.drops.add(DropReason::Truncated.index(), 1);
                    }
                    continue;
                }
            };
            let same = run.is_some_and(|(current, _)| self.table.client(current) == Some(client));
            let id = if same {
                run.map(|(current, _)| current)
            } else {
                // Sent before anything else happens to its flow (a new flow may evict it).
                if let Some((current, start)) = run.take() {
                    self.send_run(current, start..i);
                }
                let id = self.flow_for(client, &generation, now, io);
                run = id.map(|id| (id, i));
                id
            };
            if let Some(id) = id {
                if let Some(flow) = self.table.get_mut(id) {
                    flow.exchange.request();
                }
                self.table.touch(id, now);
            }
        }
        if let Some((current, start)) = run {
            self.send_run(current, start..n);
        }
    }

    /// The flow of `client`: its open one, or a new one (`None`, counted, when it cannot
    /// have one).
    fn flow_for(
        &mut self,
        client: SocketAddr,
        generation: &Arc<ServiceGeneration>,
        now: Instant,
        io: &Io,
    ) -> Option<FlowId> {
        if let Some(id) = self.table.find(&client) {
            if !self.table.get_mut(id).is_some_and(|f| f.backend_gone()) {
                return Some(id);
            }
            self.end(id, FlowEnd::BackendDown);
        }
        if self.draining {
            generation.stats.drops.add(DropReason::Draining.index(), 1);
            return None;
        }
        self.open(client, generation, now, io)
    }

    /// Starts a flow for `client`: a place under `max_flows`, a backend, a socket connected to
    /// it, registered with the epoll instance.
    fn open(
        &mut self,
        client: SocketAddr,
        generation: &Arc<ServiceGeneration>,
        now: Instant,
        io: &Io,
    ) -> Option<FlowId> {
        let stats = &generation.stats;
        let config = &generation.config;
        if !stats.try_hold_flow(config.max_flows) {
            stats.drops.add(DropReason::MaxFlows.index(), 1);
            return None;
        }
        // Allocates only when a backend is full: the common path stays allocation-free.
        let mut excluded: Vec<usize> = Vec::new();
        let (index, hold) = loop {
            let Some(index) = generation.pool.pick(client.ip(), &excluded) else {
                stats.connection_closed();
                stats.refused.fetch_add(1, Relaxed);
                stats.drops.add(DropReason::NoBackend.index(), 1);
                tracing::debug!(service = %config.name, %client, "no usable backend: datagram dropped");
                return None;
            };
            match generation.pool.backends[index].try_hold() {
                Some(hold) => break (index, hold),
                None => excluded.push(index),
            }
        };
        let backend = hold.state.addr;
        let socket = match backend_socket(backend) {
            Ok(socket) => socket,
            Err(e) => {
                stats.connection_closed();
                let reason = if is_local_exhaustion(&e) {
                    DropReason::LocalResources
                } else {
                    DropReason::SendFailed
                };
                stats.drops.add(reason.index(), 1);
                tracing::debug!(service = %config.name, %client, %backend, error = %e,
                    "no socket for a new flow: datagram dropped");
                return None;
            }
        };
        let header = match config.proxy_protocol {
            Some(_) => proxy_protocol::header_dgram(client, config.listen).into_boxed_slice(),
            None => Box::default(),
        };
        hold.state.total.fetch_add(1, Relaxed);
        stats.accepted.fetch_add(1, Relaxed);
        let flow = Flow {
            generation: generation.clone(),
            index,
            hold,
            socket,
            exchange: Exchange::new(config.responses),
            header,
            answered: false,
            segments: true,
        };
        let (id, evicted) = self.table.insert(client, flow, now);
        if let Some((_, old)) = evicted {
            old.stats().flow_ends.add(FlowEnd::Evicted.index(), 1);
        }
        let registered = self.table.get_mut(id).map(|flow| {
            epoll::add(
                io.epoll.get_ref(),
                &flow.socket,
                epoll::EventData::new_u64(id.to_u64()),
                epoll::EventFlags::IN,
            )
        });
        if let Some(Err(e)) = registered {
            tracing::debug!(service = %config.name, %client, error = %e,
                "a new flow's socket cannot be watched: datagram dropped");
            self.table.remove(id);
            stats.drops.add(DropReason::LocalResources.index(), 1);
            return None;
        }
        Some(id)
    }

    /// Sends the datagrams in `slots` (all of flow `id`) to its backend, as many per call as
    /// the kernel takes: runs of one size in one segmented send, the rest in `sendmmsg`.
    fn send_run(&mut self, id: FlowId, slots: std::ops::Range<usize>) {
        let Some(flow) = self.table.get_mut(id) else {
            return;
        };
        let mut start = slots.start;
        let mut refusal = None;
        while start < slots.end {
            let (end, segmented) = next_send(
                &self.requests,
                start..slots.end,
                flow.header.len(),
                flow.segments,
            );
            let fd = flow.socket.as_fd();
            let sent = if segmented {
                self.requests.send_segmented(fd, start..end, &flow.header)
            } else {
                self.requests.send(fd, start..end, &flow.header, false)
            };
            match sent {
                Ok(0) => break,
                Ok(k) => {
                    let bytes: usize = (start..start + k)
                        .map(|i| self.requests.payload(i).len())
                        .sum();
                    let (stats, state) = (flow.stats(), &flow.hold.state);
                    stats.datagrams_in.fetch_add(k as u64, Relaxed);
                    stats.bytes_in.fetch_add(bytes as u64, Relaxed);
                    state.datagrams_in.fetch_add(k as u64, Relaxed);
                    state.bytes_in.fetch_add(bytes as u64, Relaxed);
                    start += k;
                }
                Err(e) if segmented && cannot_segment(&e) => {
                    tracing::debug!(backend = %flow.hold.state.addr, error = %e,
                        "no segmented sends to this backend: datagrams go one by one");
                    flow.segments = false;
                }
                Err(e) if is_full(&e) => {
                    let lost = (slots.end - start) as u64;
                    flow.stats().drops.add(DropReason::BufferFull.index(), lost);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    let lost = (slots.end - start) as u64;
                    flow.stats()
                        .drops
                        .add(DropReason::BackendRefused.index(), lost);
                    refusal = Some(e);
                    break;
                }
                Err(e) => {
                    tracing::debug!(backend = %flow.hold.state.addr, error = %e,
                        "datagram to backend not sent");
                    flow.stats().drops.add(DropReason::SendFailed.index(), 1);
                    start += 1;
                }
            }
        }
        if let Some(e) = refusal {
            self.refused(id, &e);
        }
    }

    /// Reads ready backend sockets until epoll has none (true) or the turn is used up
    /// (false), and sends their replies on.
    fn replies_turn(&mut self, io: &Io) -> bool {
        let mut drained = false;
        // On the stack: an epoll event holds a pointer type, which must not live across the
        // worker's awaits (the task moves between polls).
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); BATCH];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        for _ in 0..BATCHES_PER_TURN {
            let ready = match epoll::wait(io.epoll.get_ref(), &mut events, Some(&zero)) {
                Ok(([], _)) => {
                    drained = true;
                    break;
                }
                Ok((ready, _)) => ready,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "epoll_wait on UDP flow sockets failed");
                    drained = true;
                    break;
                }
            };
            let now = Instant::now();
            for event in ready.iter() {
                self.read_flow(FlowId::from_u64(event.data.u64()), now, io);
            }
        }
        self.flush_replies(io);
        drained
    }

    /// Takes flow `id`'s replies (a few receives at most) into the reply batch.
    fn read_flow(&mut self, id: FlowId, now: Instant, io: &Io) {
        let Some(client) = self.table.client(id) else {
            return;
        };
        for _ in 0..READS_PER_FLOW {
            if self.pending == BATCH {
                self.flush_replies(io);
            }
            let Some(flow) = self.table.get_mut(id) else {
                return;
            };
            let start = self.pending;
            match self.replies.recv(flow.socket.as_fd(), start..BATCH) {
                Ok(n) => {
                    let mut bytes = 0;
                    let mut complete = false;
                    for i in start..start + n {
                        self.replies.set_peer(i, client);
                        bytes += self.replies.payload(i).len();
                        complete = flow.exchange.reply();
                    }
                    self.pending += n;
                    let state = &flow.hold.state;
                    state.datagrams_out.fetch_add(n as u64, Relaxed);
                    state.bytes_out.fetch_add(bytes as u64, Relaxed);
                    if !flow.answered {
                        flow.answered = true;
                        state.record_connect_success();
                    }
                    if complete {
                        self.end(id, FlowEnd::Answered);
                        return;
                    }
                    self.table.touch(id, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.refused(id, &e);
                    return;
                }
                Err(e) => {
                    tracing::debug!(backend = %flow.hold.state.addr, error = %e,
                        "receive from backend failed: flow ended");
                    self.end(id, FlowEnd::Refused);
                    return;
                }
            }
        }
    }

    /// Sends the gathered replies to their clients from the service socket.
    fn flush_replies(&mut self, io: &Io) {
        let end = std::mem::take(&mut self.pending);
        let stats = self.generation.load();
        let stats = &stats.stats;
        let mut start = 0;
        while start < end {
            match self
                .replies
                .send(io.socket.get_ref().as_fd(), start..end, &[], true)
            {
                Ok(0) => break,
                Ok(k) => {
                    let bytes: usize = (start..start + k)
                        .map(|i| self.replies.payload(i).len())
                        .sum();
                    stats.datagrams_out.fetch_add(k as u64, Relaxed);
                    stats.bytes_out.fetch_add(bytes as u64, Relaxed);
                    start += k;
                }
                Err(e) if is_full(&e) => {
                    let lost = (end - start) as u64;
                    stats.drops.add(DropReason::BufferFull.index(), lost);
                    break;
                }
                Err(e) => {
                    tracing::debug!(client = ?self.replies.peer(start), error = %e,
                        "reply to client not sent");
                    stats.drops.add(DropReason::SendFailed.index(), 1);
                    start += 1;
                }
            }
        }
    }

    /// Flow `id`'s backend refused (ICMP port unreachable): a failure for passive health,
    /// and the flow ends, so the client's next datagram picks again.
    fn refused(&mut self, id: FlowId, error: &io::Error) {
        if let Some((client, flow)) = self.table.remove(id) {
            let consecutive = crate::passive::backend_failed(
                &flow.generation,
                flow.index,
                "refusals (ICMP port unreachable)",
                error,
            );
            tracing::debug!(service = %flow.generation.config.name, %client,
                backend = %flow.hold.state.addr, consecutive, "backend refused a flow");
            flow.stats().flow_ends.add(FlowEnd::Refused.index(), 1);
        }
    }

    fn end(&mut self, id: FlowId, why: FlowEnd) {
        if let Some((_, flow)) = self.table.remove(id) {
            flow.stats().flow_ends.add(why.index(), 1);
        }
    }

    /// Ends the flows idle for the service's `idle_timeout`.
    fn expire(&mut self, now: Instant) {
        let idle = self.generation.load().config.idle_timeout;
        while let Some((_, flow)) = self.table.pop_expired(now, idle) {
            let stats = flow.stats();
            stats.idle_timeouts.fetch_add(1, Relaxed);
            stats.flow_ends.add(FlowEnd::Idle.index(), 1);
        }
    }
}

/// A socket of its own for a flow, connected to its backend.
fn backend_socket(backend: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(backend),
        Type::DGRAM.nonblocking().cloexec(),
        Some(socket2::Protocol::UDP),
    )?;
    socket.connect(&backend.into())?;
    Ok(socket)
}

/// The next send of `slots` (each datagram to go with a `header`-byte prefix): where it ends,
/// and whether it is segmented (a run of two or more datagrams of one size, the last maybe
/// shorter, within what one segmented send carries) or a `sendmmsg` of the datagrams up to
/// the next such run (all of them when not `segments`).
fn next_send(
    batch: &Batch,
    slots: std::ops::Range<usize>,
    header: usize,
    segments: bool,
) -> (usize, bool) {
    let run_at = |start: usize| -> usize {
        let size = batch.payload(start).len();
        let mut end = start + 1;
        let mut bytes = header + size;
        while end < slots.end && end - start < datagrams::MAX_SEGMENTS {
            let len = batch.payload(end).len();
            bytes += header + len;
            if len > size || bytes > datagrams::MAX_SEGMENTED_BYTES {
                break;
            }
            end += 1;
            if len < size {
                break;
            }
        }
        end - start
    };
    if !segments {
        return (slots.end, false);
    }
    let first = run_at(slots.start);
    if first >= 2 {
        return (slots.start + first, true);
    }
    let mut end = slots.start + 1;
    while end < slots.end && run_at(end) < 2 {
        end += 1;
    }
    (end, false)
}

/// The kernel cannot send this socket's datagrams segmented: a segment longer than its
/// route's MTU allows (`EINVAL`, or `EMSGSIZE`), a device that cannot checksum them or IPsec
/// on the way (`EIO`), a kernel without UDP GSO (`ENOPROTOOPT`, `EOPNOTSUPP`).
fn cannot_segment(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EMSGSIZE | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// The send buffer is full: the datagram waits nowhere, it is dropped.
fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(sizes: &[usize]) -> Batch {
        let mut batch = Batch::new(sizes.len(), 65_536);
        for (i, &len) in sizes.iter().enumerate() {
            batch.set_len(i, len);
        }
        batch
    }

    /// The sends `next_send` cuts `sizes` into: (datagrams, segmented) each.
    fn cuts(sizes: &[usize], header: usize, segments: bool) -> Vec<(usize, bool)> {
        let batch = batch(sizes);
        let mut start = 0;
        let mut sends = Vec::new();
        while start < sizes.len() {
            let (end, segmented) = next_send(&batch, start..sizes.len(), header, segments);
            assert!(end > start);
            sends.push((end - start, segmented));
            start = end;
        }
        sends
    }

    #[test]
    fn runs_of_one_size_go_segmented_and_the_rest_in_one_sendmmsg_between_them() {
        // A run ends at a longer datagram, or takes a shorter one as its last.
        let sizes = [100, 100, 100, 40, 40, 500, 80, 900, 900, 900];
        assert_eq!(
            cuts(&sizes, 0, true),
            [(4, true), (1, false), (2, true), (3, true)]
        );
        // Growing sizes pair with nothing: one sendmmsg, up to a run.
        assert_eq!(cuts(&[10, 20, 30], 0, true), [(3, false)]);
        assert_eq!(
            cuts(&[10, 20, 20, 30], 0, true),
            [(1, false), (2, true), (1, false)]
        );
        // A socket that cannot segment: everything in sendmmsg.
        assert_eq!(cuts(&sizes, 0, false), [(10, false)]);
    }

    #[test]
    fn a_segmented_send_stays_within_the_kernels_bounds() {
        // 40 of 1,400 bytes with a 28-byte header each: 57,120 bytes, in one.
        assert_eq!(cuts(&[1400; 40], 28, true), [(40, true)]);
        // 8,000 bytes each: 8 fit under 65,000.
        assert_eq!(cuts(&[8000; 12], 0, true), [(8, true), (4, true)]);
        // As many small ones as a batch holds: no more than one segmented send carries.
        let many = vec![10; datagrams::MAX_BATCH];
        assert_eq!(cuts(&many, 0, true), [(datagrams::MAX_BATCH, true)]);
        // Two too long for one segmented send together: a sendmmsg.
        assert_eq!(cuts(&[40_000, 40_000], 0, true), [(2, false)]);
    }
}
