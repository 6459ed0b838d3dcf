//! One io_uring per data-plane thread, driven from inside the tokio runtime.
//!
//! Operations are queued in the submission ring as sessions ask for them and handed to the
//! kernel in one `io_uring_enter` when the thread is about to sleep ([`flush`], run from
//! tokio's park hook, which also collects what completed) or, should the thread stay busy,
//! when the driver task's turn comes (a backlog of queued operations wakes it), so a busy
//! thread pays one system call for a whole batch of receives and sends instead of one each.
//! The kernel signals an eventfd in tokio's epoll set when there is something to collect;
//! [`drive`] then enters the ring, reaps the completions and wakes the tasks waiting on them.
//!
//! Two kinds of ring ([`RingKind`]). A *deferring* ring (6.1 and later) leaves the kernel's
//! side of a completion to the thread's next enter instead of interrupting the thread as
//! packets arrive; a *plain* ring runs it as task work on the thread, cooperatively (at its
//! next system call, never by interrupting it) where the kernel has that (5.19 and later).
//! tokio sleeps in `epoll_wait`, so a sleeping thread learns of a completion only through the
//! eventfd, and for a deferring ring the kernel does not promise that signal: some kernels
//! post it one RCU grace period late, and can lose it (docs/ARCHITECTURE.md, "Waking a
//! ring"). A plain ring's task work wakes the thread itself. So no ring is used before
//! `probe` has seen it wake its thread promptly (see `crate::workers`).
//!
//! An operation outlives the future that started it when that future is dropped (a relay
//! ended by its idle timeout, say): its slot is then marked orphaned, the kernel is asked to
//! cancel it, and whatever buffer it held goes back to the pool only when its completion
//! arrives, because until then the kernel may still be using it.
//!
//! The ring belongs to its thread and is reached through a thread-local, never through a
//! handle held by a task: futures stay `Send` for `tokio::spawn`, and a future that somehow
//! ran on another thread would find no ring (or another one) and fail, not corrupt it.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use socket2::SockAddr;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::buffers::{BUF_SIZE, Buf, Buffers, GROUP};

/// Submission ring size: the most operations queued between two flushes before a flush is
/// forced.
const SQ_ENTRIES: u32 = 1024;

/// Completion ring size. Completions beyond it wait in the kernel (no loss) until the next
/// `io_uring_enter`.
const CQ_ENTRIES: u32 = 16 * 1024;

/// Queued operations that wake the driver to submit them without waiting for the thread to
/// park. Below it the park hook submits: one bigger batch is cheaper than several small ones.
const FLUSH_BACKLOG: usize = 16;

/// io_uring_enter's flag to collect completions (and, on a deferring ring, to run the work
/// that produces them).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// `user_data` of operations nobody waits for (cancels, linked timeouts, closes):
/// their completions are skipped.
const IGNORED: u64 = u64::MAX;

thread_local! {
    /// This thread's ring, from `Box::leak`. Never dropped while an operation is in
    /// flight: after the ring's descriptor closes, the kernel may still finish cancelled
    /// operations in the background, writing into the ring's buffers. Only [`uninstall`]
    /// takes it away, and frees it only when nothing is in flight.
    static CURRENT: Cell<Option<NonNull<Ring>>> = const { Cell::new(None) };
}

/// Which kind of ring a thread runs; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingKind {
    /// Completion work waits for the thread's next enter (`IORING_SETUP_DEFER_TASKRUN`).
    Deferring,
    /// Completion work runs as task work on the thread, cooperatively where the kernel can.
    Plain,
}

/// Tells rings apart, so an operation is only ever completed by the ring that started it.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

enum State {
    /// In the kernel; the waker of the task waiting for it.
    Waiting(Option<Waker>),
    /// Completed, result not yet taken.
    Done {
        res: i32,
        flags: u32,
    },
    /// Its future is gone: the completion only releases what the operation held.
    Orphaned,
    Free,
}

struct Slot {
    state: State,
    /// A buffer the kernel reads from while the operation runs (a send's data).
    holds: Option<u16>,
    /// A connect's address and time limit, which the kernel reads when it takes the entry:
    /// kept here, not in the future, which may be dropped before the ring is submitted.
    connect: Option<Box<ConnectArgs>>,
}

/// What a connect entry points to.
struct ConnectArgs {
    addr: SockAddr,
    timeout: types::Timespec,
}

struct Ring {
    id: u32,
    uring: IoUring,
    /// Completions are posted only when this thread enters the ring with GETEVENTS.
    defer: bool,
    /// The kernel raises `IORING_SQ_TASKRUN` when completion work waits for this thread.
    taskrun_flag: bool,
    /// The eventfd the kernel signals for this ring: what the driver task waits on.
    signal: OwnedFd,
    buffers: Buffers,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    /// Woken when operations back up in the queue, so a thread that never parks still
    /// submits (on the driver task's turn).
    flusher: Cell<Option<Waker>>,
    /// The task running [`drive`] for this ring.
    driver: Cell<Option<tokio::task::JoinHandle<()>>>,
}

/// What a receive brought.
pub enum Received {
    Data(Buf),
    /// The peer sent FIN.
    End,
    /// The kernel found the buffer pool empty; grow it or wait, then ask again.
    NoBuffers,
    Failed(io::Error),
}

impl Ring {
    /// Sets up a ring of `kind` and its buffer pool. Fails where io_uring is missing or
    /// forbidden (old kernels, `kernel.io_uring_disabled`, container seccomp profiles), and
    /// for a deferring ring where the kernel cannot defer (before 6.1).
    fn new(kind: RingKind) -> io::Result<Self> {
        let mut builder = IoUring::builder();
        builder
            .setup_cqsize(CQ_ENTRIES)
            // An entry that fails to start (a closed descriptor, say) must not hold back the
            // entries queued behind it: each gets its own completion.
            .setup_submit_all();
        let (uring, defer, taskrun_flag) = match kind {
            RingKind::Deferring => {
                // The kernel finishes an operation (a receive whose socket got data, say) only
                // when this thread next enters the ring, instead of interrupting the thread
                // the moment the data arrives, when the sending CPU may still hold the
                // socket's lock.
                let mut deferring = builder;
                deferring
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
                (deferring.build(SQ_ENTRIES)?, true, true)
            }
            RingKind::Plain => {
                // Task work that wakes the thread when it sleeps but never interrupts it when
                // it runs (5.19 and later); older kernels interrupt it.
                let mut cooperative = builder.clone();
                cooperative.setup_coop_taskrun().setup_taskrun_flag();
                match cooperative.build(SQ_ENTRIES) {
                    Ok(uring) => (uring, false, true),
                    Err(_) => (builder.build(SQ_ENTRIES)?, false, false),
                }
            }
        };
        let buffers = Buffers::register(&uring)?;
        // Signalled when completions, or work that will produce them, are waiting.
        // SAFETY: eventfd has no memory arguments; the descriptor it returns is ours.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let signal = unsafe { OwnedFd::from_raw_fd(raw) };
        uring.submitter().register_eventfd(signal.as_raw_fd())?;
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            uring,
            defer,
            taskrun_flag,
            signal,
            buffers,
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            flusher: Cell::new(None),
            driver: Cell::new(None),
        })
    }

    fn start(&self, entry: squeue::Entry, holds: Option<u16>) -> Op {
        let slot = self.slot(holds);
        self.start_in(slot, &[entry.user_data(slot as u64)])
    }

    /// Queues `entries` (an operation, or one linked to its timeout) for the operation in
    /// `slot`, failing it at once when they cannot be queued.
    fn start_in(&self, slot: usize, entries: &[squeue::Entry]) -> Op {
        if let Err(e) = self.push(entries) {
            // Never queued: the operation fails at once instead of waiting forever.
            let res = -e.raw_os_error().unwrap_or(libc::EIO);
            self.slots.borrow_mut()[slot].state = State::Done { res, flags: 0 };
        }
        Op {
            ring: self.id,
            slot,
            finished: false,
        }
    }

    fn slot(&self, holds: Option<u16>) -> usize {
        let mut slots = self.slots.borrow_mut();
        let fresh = Slot {
            state: State::Waiting(None),
            holds,
            connect: None,
        };
        match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = fresh;
                i
            }
            None => {
                slots.push(fresh);
                slots.len() - 1
            }
        }
    }

    fn release(&self, slot: usize) {
        self.slots.borrow_mut()[slot] = Slot {
            state: State::Free,
            holds: None,
            connect: None,
        };
        self.free.borrow_mut().push(slot);
    }

    /// Queues entries, all together (a linked pair must not be split by a submit); submits
    /// first when the queue has no room. Fails only when the kernel keeps refusing to take
    /// the queued operations.
    fn push(&self, entries: &[squeue::Entry]) -> io::Result<()> {
        let mut refused = 0;
        loop {
            // SAFETY: single-threaded, and no other handle to the submission queue is alive
            // (each use is confined to a call like this one).
            let mut sq = unsafe { self.uring.submission_shared() };
            // SAFETY: the entry's pointers (buffers in the pool, a connect's arguments in its
            // slot) stay valid until it completes, and so do the descriptors it names: their
            // owners wait for the operation, or cancel it, and close through the ring behind it.
            if unsafe { sq.push_multiple(entries) }.is_ok() {
                let before = sq.len() - entries.len();
                let backlog = before < FLUSH_BACKLOG && sq.len() >= FLUSH_BACKLOG;
                sq.sync();
                if backlog && let Some(flusher) = self.flusher.take() {
                    flusher.wake();
                }
                return Ok(());
            }
            drop(sq);
            if let Err(e) = self.submit() {
                // Completions backed up (EBUSY): reaping what is there makes room, and the
                // next submit also flushes the overflow. Anything else will not clear up.
                refused += 1;
                if refused > 3 {
                    return Err(e);
                }
                self.reap();
            }
        }
    }

    /// Hands everything queued to the kernel.
    fn submit(&self) -> io::Result<()> {
        if self.pending() == 0 && !self.overflowed() && !self.work_waiting() {
            return Ok(());
        }
        self.enter()
    }

    /// Submits what is queued and, on a deferring ring, has the kernel finish the work
    /// waiting for this thread, posting its completions.
    fn enter(&self) -> io::Result<()> {
        let getevents = if self.defer || self.overflowed() || self.work_waiting() {
            IORING_ENTER_GETEVENTS
        } else {
            0
        };
        loop {
            let to_submit = self.pending() as u32;
            // SAFETY: no argument pointer; every queued entry is valid (see `push`).
            let entered = unsafe {
                self.uring
                    .submitter()
                    .enter::<libc::sigset_t>(to_submit, 0, getevents, None)
            };
            match entered {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the kernel holds completion work for this thread to run (where it says so).
    fn work_waiting(&self) -> bool {
        // SAFETY: as in `push`.
        self.taskrun_flag && unsafe { self.uring.submission_shared() }.taskrun()
    }

    /// Operations started and not yet finished by the kernel (orphans included).
    fn in_flight(&self) -> usize {
        self.slots
            .borrow()
            .iter()
            .filter(|slot| !matches!(slot.state, State::Free | State::Done { .. }))
            .count()
    }

    /// Entries queued and not yet taken by the kernel.
    fn pending(&self) -> usize {
        // SAFETY: as in `push`.
        unsafe { self.uring.submission_shared() }.len()
    }

    /// Submits until the kernel has taken every queued entry, reaping between tries to make
    /// room. For the moments a queued entry must not outlive its descriptor.
    fn submit_everything(&self) -> io::Result<()> {
        let mut tries = 0;
        loop {
            let result = self.submit();
            if self.pending() == 0 {
                return Ok(());
            }
            tries += 1;
            if tries > 8 {
                return Err(result
                    .err()
                    .unwrap_or_else(|| io::ErrorKind::WouldBlock.into()));
            }
            self.reap();
        }
    }

    /// Completions the kernel kept aside because the completion ring was full.
    fn overflowed(&self) -> bool {
        // SAFETY: as in `push`.
        unsafe { self.uring.submission_shared() }.cq_overflow()
    }

    /// Takes every completion posted so far and wakes the tasks waiting for them.
    fn reap(&self) {
        let mut wake = Vec::new();
        let mut orphans = Vec::new();
        {
            // SAFETY: single-threaded; the only handle to the completion queue.
            let cq = unsafe { self.uring.completion_shared() };
            let mut slots = self.slots.borrow_mut();
            for cqe in cq {
                if cqe.user_data() == IGNORED {
                    continue;
                }
                let Some(slot) = usize::try_from(cqe.user_data())
                    .ok()
                    .and_then(|i| slots.get_mut(i))
                else {
                    continue;
                };
                if cqueue::buffer_select(cqe.flags()).is_some() {
                    self.buffers.taken();
                }
                match std::mem::replace(&mut slot.state, State::Free) {
                    State::Waiting(waker) => {
                        slot.state = State::Done {
                            res: cqe.result(),
                            flags: cqe.flags(),
                        };
                        wake.extend(waker);
                    }
                    State::Orphaned => orphans.push((cqe.user_data() as usize, cqe.flags())),
                    other => slot.state = other,
                }
            }
        }
        for (slot, flags) in orphans {
            self.drop_result(slot, flags);
        }
        for waker in wake {
            waker.wake();
        }
    }

    /// Releases an orphaned operation's slot and any buffer it held or was given.
    fn drop_result(&self, slot: usize, flags: u32) {
        if let Some(id) = cqueue::buffer_select(flags) {
            self.buffers.give_back(id);
        }
        let held = self.slots.borrow_mut()[slot].holds.take();
        if let Some(id) = held {
            self.buffers.give_back(id);
        }
        self.release(slot);
    }

    /// The future of operation `slot` was dropped before it took the result.
    fn orphan(&self, slot: usize) {
        let state = std::mem::replace(&mut self.slots.borrow_mut()[slot].state, State::Orphaned);
        match state {
            State::Done { flags, .. } => self.drop_result(slot, flags),
            State::Waiting(_) => {
                let cancel = opcode::AsyncCancel::new(slot as u64)
                    .build()
                    .user_data(IGNORED);
                // Should even the cancel be refused (a kernel refusing every submit), the
                // operation ends with its socket's next event and its completion frees the slot.
                let _ = self.push(&[cancel]);
                // Submit now, all of it: a queued operation names its socket by descriptor,
                // and the socket may be about to close. A `RingStream` closes through the ring,
                // behind this entry, and needs no more; a descriptor closed any other way
                // would free its number while the operation still waits to name it. Orphans
                // come from aborts and timeouts, off the per-request path.
                if let Err(e) = self.submit_everything() {
                    tracing::error!(error = %e, "io_uring refuses submissions: an operation on a closing socket stays queued");
                }
            }
            State::Orphaned | State::Free => {}
        }
    }
}

/// Runs `f` on this thread's ring if it is the one with id `id` (any ring for `None`).
fn with_ring<T>(id: Option<u32>, f: impl FnOnce(&Ring) -> T) -> Option<T> {
    let ring = CURRENT.get()?;
    // SAFETY: CURRENT holds a pointer from `Box::leak` that stays valid until `uninstall`
    // takes it out of CURRENT, which no `f` can do: `f` is synchronous and `uninstall` is not
    // reachable from a ring operation.
    let ring = unsafe { ring.as_ref() };
    match id {
        Some(id) if id != ring.id => None,
        _ => Some(f(ring)),
    }
}

/// A duplicate of this thread's ring's eventfd, for the start-up probe to see when the kernel
/// signals it.
pub fn signal_fd() -> io::Result<OwnedFd> {
    with_ring(None, |ring| ring.signal.try_clone()).unwrap_or_else(|| Err(no_ring()))
}

/// Whether this thread has a ring: the relay uses it when it does.
pub fn installed() -> bool {
    with_ring(None, |_| ()).is_some()
}

/// Receives from `fd` into a buffer the kernel picks when bytes arrive.
pub async fn recv(fd: RawFd) -> Received {
    let entry = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), BUF_SIZE as u32)
        .buf_group(GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT);
    let Some(op) = with_ring(None, |ring| ring.start(entry, None)) else {
        return Received::Failed(no_ring());
    };
    let op_ring = op.ring;
    let (res, flags) = op.await;
    let picked = cqueue::buffer_select(flags);
    if res > 0 {
        if let Some(id) = picked {
            return Received::Data(Buf {
                ring: op_ring,
                id,
                len: res as usize,
            });
        }
        return Received::Failed(io::Error::other("receive completed without a buffer"));
    }
    if let Some(id) = picked {
        give_back(Buf {
            ring: op_ring,
            id,
            len: 0,
        });
    }
    match res {
        0 => Received::End,
        e if -e == libc::ENOBUFS => Received::NoBuffers,
        e => Received::Failed(io::Error::from_raw_os_error(-e)),
    }
}

/// Sends `buf[from..]` to `fd`; resolves to the bytes sent and the buffer, handed back.
///
/// The send does not wait for room: on a full socket it ends at once with what fitted (or
/// `WouldBlock`), so a pool buffer is never held hostage by a peer that stopped reading.
pub async fn send(fd: RawFd, buf: Buf, from: usize) -> (io::Result<usize>, Buf) {
    let op = with_ring(Some(buf.ring), |ring| {
        let data = &ring.buffers.bytes(&buf)[from..];
        let entry = opcode::Send::new(types::Fd(fd), data.as_ptr(), data.len() as u32)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
            .build();
        ring.start(entry, Some(buf.id))
    });
    let Some(op) = op else {
        return (Err(no_ring()), buf);
    };
    let (res, _) = op.await;
    let sent = if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    };
    (sent, buf)
}

/// Connects `fd` to `addr`, giving up after `timeout`. The time limit is a timeout linked to
/// the connect in the kernel, so a connection costs no timer of ours.
pub async fn connect(fd: RawFd, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let op = with_ring(None, |ring| {
        let slot = ring.slot(None);
        let args = Box::new(ConnectArgs {
            addr: SockAddr::from(addr),
            timeout: types::Timespec::from(timeout),
        });
        let entries = [
            opcode::Connect::new(types::Fd(fd), args.addr.as_ptr().cast(), args.addr.len())
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(slot as u64),
            opcode::LinkTimeout::new(&args.timeout)
                .build()
                .user_data(IGNORED),
        ];
        // The box's contents do not move when it does: the pointers above stay valid.
        ring.slots.borrow_mut()[slot].connect = Some(args);
        ring.start_in(slot, &entries)
    });
    let Some(op) = op else {
        return Err(no_ring());
    };
    match op.await.0 {
        0 => Ok(()),
        // The linked timeout fired and cancelled the connect.
        e if -e == libc::ECANCELED => Err(io::ErrorKind::TimedOut.into()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

/// Closes `fd` with the next submission, after every entry queued before it (which may
/// still name the descriptor). Until then the number stays taken, so nothing can reuse it.
///
/// Only operations the kernel starts at once during the submit may precede a close: one it
/// hands to a worker thread (a shutdown, say) looks the descriptor up later, and would find
/// the closed number reused by another connection's socket.
pub fn close(fd: OwnedFd) {
    let raw = fd.as_raw_fd();
    let entry = opcode::Close::new(types::Fd(raw))
        .build()
        .user_data(IGNORED);
    if with_ring(None, |ring| ring.push(&[entry]).is_ok()) == Some(true) {
        // The ring closes it now.
        let _ = fd.into_raw_fd();
    }
    // Otherwise `fd` drops here and closes at once.
}

/// Copies `buf[from..]` into `out` (as much as fits); returns the bytes copied.
pub fn copy_into(buf: &Buf, from: usize, out: &mut [u8]) -> usize {
    with_ring(Some(buf.ring), |ring| {
        let rest = &ring.buffers.bytes(buf)[from..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        n
    })
    .unwrap_or(0)
}

/// Returns a received buffer to the pool once its bytes are sent on.
pub fn give_back(buf: Buf) {
    with_ring(Some(buf.ring), |ring| ring.buffers.give_back(buf.id));
}

/// After the kernel found the pool empty: adds buffers if every one is still out (none came
/// back since), so a burst of receives failing together grows the pool once, not once each.
/// True when receiving again now can succeed; false when the pool is at its limit with every
/// buffer out.
pub fn grow_buffers() -> bool {
    with_ring(None, |ring| {
        if ring.buffers.all_out() {
            ring.buffers.grow()
        } else {
            true
        }
    })
    .unwrap_or(false)
}

fn no_ring() -> io::Error {
    io::Error::other("io_uring operation outside the thread that owns the ring")
}

/// One operation in flight; resolves to the completion's result and flags.
struct Op {
    ring: u32,
    slot: usize,
    finished: bool,
}

impl Future for Op {
    type Output = (i32, u32);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(i32, u32)> {
        let slot = self.slot;
        let polled = with_ring(Some(self.ring), |ring| {
            let mut slots = ring.slots.borrow_mut();
            let entry = &mut slots[slot];
            match &mut entry.state {
                State::Done { res, flags } => {
                    let out = (*res, *flags);
                    drop(slots);
                    ring.release(slot);
                    Poll::Ready(out)
                }
                State::Waiting(waker) => {
                    match waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
                // Not reachable while this future exists; fail rather than hang.
                State::Orphaned | State::Free => Poll::Ready((-libc::ECANCELED, 0)),
            }
        });
        let out = polled.unwrap_or(Poll::Ready((-libc::EBADFD, 0)));
        if out.is_ready() {
            self.finished = true;
        }
        out
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if !self.finished {
            with_ring(Some(self.ring), |ring| ring.orphan(self.slot));
        }
    }
}

/// Sets up this thread's ring of `kind` and starts the task that reaps it. Call from inside
/// a current-thread runtime built with `on_thread_park(flush)`, on a thread with no ring.
pub fn install(kind: RingKind) -> io::Result<()> {
    if installed() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "this thread already has a ring",
        ));
    }
    let ring = Ring::new(kind)?;
    // SAFETY: the eventfd stays open as long as the ring, and `uninstall` ends the driver
    // (dropping this AsyncFd) before it drops the ring, or never drops the ring.
    let fd = unsafe {
        AsyncFd::register_with_interest(RingFd(ring.signal.as_raw_fd()), Interest::READABLE)
    }
    .map_err(io::Error::from)?;
    let id = ring.id;
    let ring = NonNull::from(Box::leak(Box::new(ring)));
    CURRENT.set(Some(ring));
    let driver = tokio::spawn(drive(id, fd));
    with_ring(Some(id), |ring| ring.driver.set(Some(driver)));
    Ok(())
}

/// Takes this thread's ring away, for a ring its start-up probe turned down, leaving the
/// thread free for another. The ring is closed and freed when nothing is in flight after a
/// few tries to finish it; otherwise (returns false) it is left open and unused for the
/// thread's lifetime, since the kernel may still write into its buffers.
pub async fn uninstall() -> bool {
    let Some(ring) = CURRENT.get() else {
        return true;
    };
    let idle = |ring: &Ring| {
        let _ = ring.submit_everything();
        ring.reap();
        ring.in_flight() == 0 && ring.pending() == 0
    };
    let mut tries = 0;
    while with_ring(None, idle) == Some(false) && tries < 50 {
        tries += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let freed = with_ring(None, idle) == Some(true);
    // No await between the last look and this: nothing can start an operation on it now.
    CURRENT.set(None);
    // SAFETY: from `Box::leak` in `install`, and out of CURRENT, so no one else reaches it.
    let driver = unsafe { ring.as_ref() }.driver.take();
    // The driver owns the AsyncFd on the eventfd: it must be gone (deregistered) before the
    // eventfd closes, or its deregistration could name a reused descriptor. It finds no ring
    // on its next turn anyway and ends.
    if let Some(driver) = driver {
        driver.abort();
        let _ = driver.await;
    }
    if freed {
        // SAFETY: from `Box::leak` in `install`; no operation is in flight or queued, the
        // driver is gone, and CURRENT no longer hands it out. The ring's descriptor closes
        // before its buffers are freed (field order).
        drop(unsafe { Box::from_raw(ring.as_ptr()) });
    }
    freed
}

/// Submits what this thread queued, and collects what the kernel finished meanwhile. Runs
/// each time the thread is about to wait for events: a session woken here runs at once
/// (tokio then does not sleep), without a round through epoll.
pub fn flush() {
    with_ring(None, |ring| {
        if let Err(e) = ring.submit() {
            tracing::debug!(error = %e, "io_uring submit deferred");
        }
        ring.reap();
        if ring.work_waiting()
            && let Some(flusher) = ring.flusher.take()
        {
            // An enter runs a bounded batch of deferred completions (20 on 6.18) and the rest
            // wait, with no new signal coming for them: the driver's turn enters again
            // before the thread may sleep.
            flusher.wake();
        }
    });
}

/// Collects completions whenever the ring's eventfd is signalled (on a deferring ring, the
/// kernel then holds finished work that this thread's next enter turns into completions),
/// and submits what was queued whenever it is woken for that.
///
/// The driver never reads the eventfd's count: tokio's epoll registration is edge-triggered,
/// and every signal is a new edge. (Only the start-up probe reads it.)
async fn drive(id: u32, fd: AsyncFd<RingFd>) {
    loop {
        let readable = std::future::poll_fn(|cx| {
            let polled = with_ring(Some(id), |ring| {
                if ring.pending() > 0 || ring.work_waiting() {
                    let _ = ring.submit();
                    ring.reap();
                }
                ring.flusher.set(Some(cx.waker().clone()));
            });
            if polled.is_none() {
                // Taken down (`uninstall`): nothing left to drive.
                return Poll::Ready(Err(no_ring()));
            }
            fd.poll_read_ready(cx)
        })
        .await;
        let mut ready = match readable {
            Ok(ready) => ready,
            Err(e) => {
                if installed() {
                    tracing::error!(error = %e, "io_uring completions can no longer be awaited");
                }
                return;
            }
        };
        let reaped = with_ring(Some(id), |ring| {
            // A deferring ring's signal means work waits for an enter; a plain ring's means
            // completions were posted, with more task work possibly behind them.
            let entered = if ring.defer {
                ring.enter()
            } else {
                ring.submit()
            };
            if let Err(e) = entered {
                tracing::debug!(error = %e, "io_uring enter failed; retried at the next wake");
            }
            ring.reap();
            if ring.overflowed() {
                // Completions the ring had no room for come back with the next enter.
                let _ = ring.submit();
                ring.reap();
            }
        });
        ready.clear_ready();
        if reaped.is_none() {
            tracing::error!("io_uring driver running outside the thread that owns the ring");
            return;
        }
    }
}

struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::proxy::uring::buffers::CHUNK;

    fn bytes(buf: &Buf) -> Vec<u8> {
        with_ring(None, |ring| ring.buffers.bytes(buf).to_vec()).unwrap()
    }

    /// A runtime like the daemon's: one thread, queued operations submitted at each park.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flush)
            .build()
            .unwrap()
    }

    /// Installs this thread's ring of `kind`. A kernel that has deferral (6.1 on) must give
    /// it when asked: a ring that silently never defers would pass every other test.
    fn ring_or_skip(kind: RingKind) -> bool {
        match install(kind) {
            Ok(()) => {
                let deferring = with_ring(None, |ring| ring.defer).unwrap();
                assert_eq!(deferring, kind == RingKind::Deferring, "the ring asked for");
                true
            }
            Err(e) if kind == RingKind::Deferring && !kernel_at_least(6, 1) => {
                eprintln!("SKIPPED: kernels before 6.1 have no deferring ring ({e})");
                false
            }
            Err(e) if std::env::var_os("TANDEM_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") => {
                panic!("io_uring is not usable here ({e}) but TANDEM_REQUIRE_PRIVILEGED=1")
            }
            Err(e) => {
                eprintln!("SKIPPED: io_uring is not usable here ({e})");
                false
            }
        }
    }

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        found >= (major, minor)
    }

    /// Two test functions running `$body(kind)` on a deferring ring and on a plain one.
    macro_rules! both_rings {
        ($body:ident, $deferring:ident, $plain:ident) => {
            #[test]
            fn $deferring() {
                $body(RingKind::Deferring);
            }

            #[test]
            fn $plain() {
                $body(RingKind::Plain);
            }
        };
    }

    both_rings!(
        holding_more_buffers_than_the_first_chunk_grows_the_pool,
        holding_more_buffers_than_the_first_chunk_grows_the_pool_deferring,
        holding_more_buffers_than_the_first_chunk_grows_the_pool_plain
    );

    fn holding_more_buffers_than_the_first_chunk_grows_the_pool(kind: RingKind) {
        runtime().block_on(async {
            if !ring_or_skip(kind) {
                return;
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut pairs = Vec::new();
            for i in 0..CHUNK + 8 {
                let mut sender = TcpStream::connect(addr).await.unwrap();
                let (receiver, _) = listener.accept().await.unwrap();
                sender.write_all(&[i as u8; 10]).await.unwrap();
                pairs.push((sender, receiver));
            }
            // Every message is held, as a relay stalled on a slow peer holds its buffer.
            let (mut held, mut empty_pool) = (Vec::new(), 0);
            for (i, (_, receiver)) in pairs.iter().enumerate() {
                let buf = loop {
                    match recv(receiver.as_raw_fd()).await {
                        Received::Data(buf) => break buf,
                        Received::NoBuffers => {
                            empty_pool += 1;
                            assert!(grow_buffers(), "the pool may grow far beyond one chunk");
                        }
                        Received::End => panic!("connection {i} ended"),
                        Received::Failed(e) => panic!("connection {i}: {e}"),
                    }
                };
                assert_eq!(
                    bytes(&buf),
                    [i as u8; 10],
                    "connection {i} got its own bytes"
                );
                held.push(buf);
            }
            assert_eq!(empty_pool, 1, "one chunk ran out, once");
            for buf in held {
                give_back(buf);
            }
        });
    }

    both_rings!(
        a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works,
        a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works_deferring,
        a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works_plain
    );

    fn a_receive_dropped_before_it_completes_is_cancelled_and_the_socket_still_works(
        kind: RingKind,
    ) {
        runtime().block_on(async {
            if !ring_or_skip(kind) {
                return;
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut sender = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (receiver, _) = listener.accept().await.unwrap();
            // Nothing to receive yet: the receive waits in the kernel until it is dropped.
            let waiting = recv(receiver.as_raw_fd());
            let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), waiting);
            assert!(timed_out.await.is_err());
            // Had the cancelled receive survived, it would take these bytes and lose them.
            sender.write_all(b"after").await.unwrap();
            let next = recv(receiver.as_raw_fd());
            match tokio::time::timeout(std::time::Duration::from_secs(10), next).await {
                Ok(Received::Data(buf)) => {
                    assert_eq!(bytes(&buf), b"after");
                    give_back(buf);
                }
                _ => panic!("the bytes sent after the cancel arrive at the next receive"),
            }
        });
    }

    both_rings!(
        a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly,
        a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly_deferring,
        a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly_plain
    );

    /// Every operation the relay uses, on one connection: connect, receive, send back the
    /// received buffer, see the peer's FIN, close through the ring.
    fn a_connection_made_on_the_ring_echoes_bytes_then_ends_cleanly(kind: RingKind) {
        use tokio::io::AsyncReadExt;
        runtime().block_on(async {
            if !ring_or_skip(kind) {
                return;
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM.nonblocking(),
                None,
            )
            .unwrap();
            let patience = Duration::from_secs(10);
            connect(socket.as_raw_fd(), listener.local_addr().unwrap(), patience)
                .await
                .expect("connected through the ring");
            let (mut peer, _) = listener.accept().await.unwrap();
            let fd = socket.as_raw_fd();
            for round in 0..200u32 {
                let message = format!("message {round}");
                peer.write_all(message.as_bytes()).await.unwrap();
                let mut echoed = vec![0u8; message.len()];
                let mut got = 0;
                while got < message.len() {
                    let buf = match tokio::time::timeout(patience, recv(fd)).await {
                        Ok(Received::Data(buf)) => buf,
                        Ok(Received::NoBuffers) => {
                            assert!(grow_buffers());
                            continue;
                        }
                        Ok(Received::End) => panic!("round {round}: ended early"),
                        Ok(Received::Failed(e)) => panic!("round {round}: {e}"),
                        Err(_) => panic!("round {round}: no completion (a lost wake-up?)"),
                    };
                    let (sent, buf) = send(fd, buf, 0).await;
                    assert_eq!(sent.unwrap(), buf.len, "a small send fits at once");
                    give_back(buf);
                    got += peer.read(&mut echoed[got..]).await.unwrap();
                }
                assert_eq!(echoed, message.as_bytes(), "round {round}");
            }
            peer.shutdown().await.unwrap();
            match tokio::time::timeout(patience, recv(fd)).await {
                Ok(Received::End) => {}
                _ => panic!("the peer's FIN arrives as the end"),
            }
            close(socket.into());
            let mut rest = Vec::new();
            let read = tokio::time::timeout(patience, peer.read_to_end(&mut rest)).await;
            assert_eq!(
                read.unwrap().unwrap(),
                0,
                "closed through the ring: a clean EOF"
            );
        });
    }

    both_rings!(
        a_connect_nobody_answers_ends_with_its_linked_timeout,
        a_connect_nobody_answers_ends_with_its_linked_timeout_deferring,
        a_connect_nobody_answers_ends_with_its_linked_timeout_plain
    );

    fn a_connect_nobody_answers_ends_with_its_linked_timeout(kind: RingKind) {
        runtime().block_on(async {
            if !ring_or_skip(kind) {
                return;
            }
            // A listener that never accepts, its queue full: the kernel drops further SYNs.
            let hole =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            hole.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            hole.listen(0).unwrap();
            let addr = hole.local_addr().unwrap().as_socket().unwrap();
            let mut fillers = Vec::new();
            for _ in 0..4 {
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM.nonblocking(),
                    None,
                )
                .unwrap();
                let _ = s.connect(&addr.into());
                fillers.push(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM.nonblocking(),
                None,
            )
            .unwrap();
            let limit = Duration::from_millis(200);
            let outcome = tokio::time::timeout(
                Duration::from_secs(10),
                connect(socket.as_raw_fd(), addr, limit),
            )
            .await
            .expect("the kernel's timeout ends the connect, not ours");
            assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::TimedOut);
        });
    }

    both_rings!(
        a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion,
        a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion_deferring,
        a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion_plain
    );

    /// The promise the start-up probe makes: a ring it keeps wakes its thread for each
    /// completion. 200 round trips, each finding the ring's thread asleep, take milliseconds;
    /// a ring whose wake-ups wait for a grace period needs seconds. The plain ring wakes its
    /// thread through task work, on every kernel, so its probe must keep it.
    fn a_ring_its_probe_keeps_wakes_its_sleeping_thread_for_every_completion(kind: RingKind) {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        runtime().block_on(async {
            if !ring_or_skip(kind) {
                return;
            }
            let seen = super::super::probe::probe(kind).await.unwrap();
            match (seen.verdict(kind), kind) {
                (Ok(()), _) => {}
                (Err(why), RingKind::Deferring) => {
                    eprintln!("SKIPPED: this kernel's deferring ring is turned down: {why}");
                    return;
                }
                (Err(why), RingKind::Plain) => panic!("the plain ring was turned down: {why}"),
            }
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            let peer = std::thread::spawn(move || {
                theirs
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let start = tokio::time::Instant::now();
                for round in 0..200u32 {
                    theirs.write_all(&round.to_be_bytes()).unwrap();
                    let mut back = [0u8; 4];
                    theirs.read_exact(&mut back).unwrap();
                    assert_eq!(u32::from_be_bytes(back), round);
                }
                start.elapsed()
            });
            let fd = ours.as_raw_fd();
            let mut echoed = 0;
            while echoed < 800 {
                let buf = match tokio::time::timeout(Duration::from_secs(10), recv(fd)).await {
                    Ok(Received::Data(buf)) => buf,
                    Ok(Received::NoBuffers) => {
                        assert!(grow_buffers());
                        continue;
                    }
                    other => panic!("after {echoed} bytes: {:?}", other.map(|_| ())),
                };
                let (sent, buf) = send(fd, buf, 0).await;
                echoed += sent.unwrap();
                give_back(buf);
            }
            let took = peer.join().unwrap();
            assert!(
                took < Duration::from_secs(2),
                "200 round trips took {took:?}: the ring's thread was not woken for each"
            );
        });
    }

    #[test]
    fn a_ring_taken_down_leaves_the_thread_free_for_another() {
        runtime().block_on(async {
            if !ring_or_skip(RingKind::Plain) {
                return;
            }
            assert!(uninstall().await, "nothing was in flight");
            assert!(!installed());
            install(RingKind::Plain).expect("a second ring after the first is gone");
            // The new ring works: a probe's round trips go through it.
            let seen = super::super::probe::probe(RingKind::Plain).await.unwrap();
            assert!(!seen.round_trips.is_empty(), "{seen:?}");
        });
    }

    #[test]
    fn a_ring_taken_down_with_an_operation_in_flight_stays_open_but_leaves_the_thread() {
        runtime().block_on(async {
            if !ring_or_skip(RingKind::Plain) {
                return;
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let _sender = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (receiver, _) = listener.accept().await.unwrap();
            let fd = receiver.as_raw_fd();
            // A receive on a socket nobody writes to: in flight until the end of the test.
            let waiting = tokio::spawn(async move { matches!(recv(fd).await, Received::End) });
            tokio::task::yield_now().await;
            assert!(!uninstall().await, "the receive is still in the kernel");
            assert!(!installed(), "the thread no longer uses that ring");
            install(RingKind::Plain).expect("a new ring in its place");
            let seen = super::super::probe::probe(RingKind::Plain).await.unwrap();
            assert!(!seen.round_trips.is_empty(), "{seen:?}");
            waiting.abort();
        });
    }
}
