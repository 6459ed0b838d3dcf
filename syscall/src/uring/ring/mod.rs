//! One io_uring per data-plane thread, driven from inside the tokio runtime.
//!
//! Operations are queued in the submission ring as sessions ask for them and handed to the
//! kernel in one `io_uring_enter` when the thread is about to sleep ([`flush`], run from
//! tokio's park hook, which also collects what completed) or, should the thread stay busy,
//! when the driver task's turn comes (a backlog of queued operations wakes it), so a busy
//! thread pays one system call for a whole batch of receives and sends instead of one each.
//! The kernel signals an eventfd in tokio's epoll set when there is something to collect;
//! `driver::drive` then enters the ring, reaps the completions and wakes the tasks waiting on them.
//!
//! Two kinds of ring ([`RingKind`]). A *deferring* ring (6.1 and later) leaves the kernel's
//! side of a completion to the thread's next enter instead of interrupting the thread as
//! packets arrive; a *plain* ring runs it as task work on the thread, cooperatively (at its
//! next system call, never by interrupting it) where the kernel has that (5.19 and later).
//! tokio sleeps in `epoll_wait`, so a sleeping thread learns of a completion only through the
//! eventfd, and for a deferring ring the kernel does not promise that signal: some kernels
//! post it one RCU grace period late, and can lose it (docs/ARCHITECTURE.md, "Waking a
//! ring"). A plain ring's task work wakes the thread itself. So no ring is used before
//! `probe` has seen it wake its thread promptly (see `lb::data_threads`).
//!
//! An operation outlives the future that started it when that future is dropped (a relay
//! ended by its idle timeout, say): its slot is then marked orphaned, the kernel is asked to
//! cancel it, and whatever buffer it held goes back to the pool only when its completion
//! arrives, because until then the kernel may still be using it.
//!
//! The ring belongs to its thread and is reached through a thread-local, never through a
//! handle held by a task: futures stay `Send` for `tokio::spawn`, and a future that somehow
//! ran on another thread would find no ring (or another one) and fail, not corrupt it.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::task::Waker;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use socket2::SockAddr;

use super::buffers::{Buf, Buffers};

mod driver;
mod ops;
#[cfg(test)]
mod tests;

pub use driver::{flush, install, installed, signal_fd, uninstall};
use ops::Op;
pub use ops::{close, connect, copy_into, give_back, grow_buffers, recv, send};

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
    /// The task running `driver::drive` for this ring.
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

fn no_ring() -> io::Error {
    io::Error::other("io_uring operation outside the thread that owns the ring")
}
