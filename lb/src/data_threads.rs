//! The data plane's threads.
//!
//! With `threads = 1` the node's one runtime is also its data plane. With more, each data
//! thread runs a single-thread runtime of its own (with its own io_uring where the node uses
//! one) and accepts on its own SO_REUSEPORT socket of every service: the kernel spreads new
//! connections over those sockets, and a connection then lives on the thread that accepted it
//! from accept to close. No task moves between threads and no connection wakes another thread,
//! which is what lets each thread keep a ring (a ring belongs to the thread that submits to
//! it). The control plane (signals, reload, health checks) keeps the main thread; the VRRP
//! election has a thread of its own (`vrrp::instance`).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::config::IoMode;
use syscall::uring::{self, RingKind};

/// A current-thread runtime: everything on one thread, with no cross-thread hand-offs. It
/// submits the thread's io_uring operations (if the thread has a ring) each time it is about
/// to wait for events: one system call per batch.
pub fn runtime_for_one_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(uring::flush)
        .build()
}

/// How a node's data plane moves bytes as a whole, as `/status` and the start-up line say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoSummary {
    /// Every data thread has a ring (of whichever kind).
    IoUring,
    /// No data thread has a ring.
    Epoll,
    /// Some have one, some not (a ring turned down on some threads only).
    Mixed,
}

impl IoSummary {
    /// Sums up the data threads' transports.
    pub fn of(threads: &[ThreadIo]) -> Self {
        let rings = threads.iter().filter(|t| t.kind != IoKind::Epoll).count();
        if rings == threads.len() {
            Self::IoUring
        } else if rings == 0 {
            Self::Epoll
        } else {
            Self::Mixed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
            Self::Mixed => "mixed",
        }
    }
}

/// How one data thread moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    Epoll,
    IoUringDeferring,
    IoUringPlain,
}

impl IoKind {
    /// The name `[node] io` uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epoll => "epoll",
            Self::IoUringDeferring => "io_uring_deferring",
            Self::IoUringPlain => "io_uring_plain",
        }
    }

    fn ring(kind: RingKind) -> Self {
        match kind {
            RingKind::Deferring => Self::IoUringDeferring,
            RingKind::Plain => Self::IoUringPlain,
        }
    }
}

/// What one data thread uses, and the evidence it was chosen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadIo {
    pub kind: IoKind,
    /// What was tried and measured, in a sentence.
    pub why: String,
    /// The median probe round trip of each ring tried.
    pub probes: Vec<(IoKind, Duration)>,
}

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataThreadsError {
    #[error("io = \"{}\" but no ring it allows can serve here: {why}", .io.as_str())]
    NoPromptRing { io: IoMode, why: String },
    #[error("cannot start data-plane thread {index}: {source}")]
    Thread {
        index: usize,
        source: std::io::Error,
    },
}

/// The runtimes that accept and serve client connections.
pub struct DataThreads {
    /// One per data thread; each listening address gets one socket per entry.
    runtimes: Vec<Handle>,
    joins: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    /// How each data thread moves bytes, in thread order.
    io: Vec<ThreadIo>,
}

impl DataThreads {
    /// The calling runtime serves the connections itself (`threads = 1`). Must run on the
    /// runtime [`runtime_for_one_thread`] made, whose park hook submits the ring's operations, and
    /// before anything busy runs on it (the ring's probe wants a thread that sleeps).
    pub async fn here(io: IoMode) -> Result<Self, DataThreadsError> {
        Ok(Self {
            runtimes: vec![Handle::current()],
            joins: Vec::new(),
            stop: CancellationToken::new(),
            io: vec![start_io(0, io).await?],
        })
    }

    /// Starts `count` data threads and returns once each has its runtime and, where `io`
    /// asks for one, its ring (the threads probe their rings at the same time); fails
    /// (stopping those started) if any cannot.
    pub fn start(count: usize, io: IoMode) -> Result<Self, DataThreadsError> {
        let mut threads = Self {
            runtimes: Vec::with_capacity(count),
            joins: Vec::with_capacity(count),
            stop: CancellationToken::new(),
            io: Vec::with_capacity(count),
        };
        let mut starting = Vec::with_capacity(count);
        for index in 0..count {
            let (ready, started) = mpsc::channel();
            let stop = threads.stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tandem-data-{index}"))
                .spawn(move || run_data_thread(index, io, stop, ready))
                .map_err(|source| DataThreadsError::Thread { index, source });
            match spawned {
                Ok(thread) => threads.joins.push(thread),
                Err(e) => {
                    threads.stop();
                    return Err(e);
                }
            }
            starting.push((index, started));
        }
        for (index, started) in starting {
            let outcome = started.recv().unwrap_or_else(|_| {
                Err(DataThreadsError::Thread {
                    index,
                    source: std::io::Error::other("the thread ended while starting"),
                })
            });
            match outcome {
                Ok((handle, thread_io)) => {
                    threads.runtimes.push(handle);
                    threads.io.push(thread_io);
                }
                Err(e) => {
                    threads.stop();
                    return Err(e);
                }
            }
        }
        Ok(threads)
    }

    /// The data runtimes: listeners bind one socket for each and accept on it there.
    pub fn runtimes(&self) -> &[Handle] {
        &self.runtimes
    }

    /// How the data plane moves bytes, in a word.
    pub fn io(&self) -> IoSummary {
        IoSummary::of(&self.io)
    }

    /// How each data thread moves bytes, and why.
    pub fn threads_io(&self) -> &[ThreadIo] {
        &self.io
    }

    /// Ends the data threads and waits for them. Sessions still running there are dropped on
    /// their own thread (their sockets closed, or reset once the node abandoned them).
    pub fn stop(mut self) {
        self.stop.cancel();
        for thread in std::mem::take(&mut self.joins) {
            let _ = thread.join();
        }
    }
}

impl Drop for DataThreads {
    /// A node that fails to start after its data threads did lets them end with it.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Started = Result<(Handle, ThreadIo), DataThreadsError>;

fn run_data_thread(
    index: usize,
    io: IoMode,
    stop: CancellationToken,
    ready: mpsc::Sender<Started>,
) {
    let runtime = match runtime_for_one_thread() {
        Ok(runtime) => runtime,
        Err(source) => {
            let _ = ready.send(Err(DataThreadsError::Thread { index, source }));
            return;
        }
    };
    runtime.block_on(async {
        let started = start_io(index, io)
            .await
            .map(|thread_io| (Handle::current(), thread_io));
        let failed = started.is_err();
        let _ = ready.send(started);
        if !failed {
            stop.cancelled().await;
        }
    });
    // Dropping the runtime here drops its remaining tasks on this thread, where their ring is.
    drop(runtime);
}

/// The rings `io` lets a thread use, best first.
fn candidates(io: IoMode) -> &'static [RingKind] {
    match io {
        IoMode::Epoll => &[],
        IoMode::Auto | IoMode::IoUring => &[RingKind::Deferring, RingKind::Plain],
        IoMode::IoUringDeferring => &[RingKind::Deferring],
        IoMode::IoUringPlain => &[RingKind::Plain],
    }
}

/// Chooses how data thread `index` moves bytes, by evidence: each ring `io` allows, best
/// first, is set up and must wake the thread promptly in a probe (`uring::probe`) before it
/// is kept. `auto` falls back to epoll; a mode that names a ring refuses to start instead.
/// Logs one line with what was measured and chosen.
async fn start_io(index: usize, io: IoMode) -> Result<ThreadIo, DataThreadsError> {
    let mut notes = Vec::new();
    let mut probes = Vec::new();
    for &ring in candidates(io) {
        let kind = IoKind::ring(ring);
        if let Err(e) = uring::install(ring) {
            notes.push(format!("{} cannot be set up ({e})", kind.as_str()));
            continue;
        }
        let verdict = match uring::probe(ring).await {
            Ok(seen) => {
                if let Some(median) = seen.median() {
                    probes.push((kind, median));
                }
                seen.verdict(ring).map(|()| seen.summary())
            }
            Err(e) => Err(format!("the probe could not run ({e})")),
        };
        match verdict {
            Ok(summary) => {
                notes.push(format!(
                    "{} woke its thread promptly: {summary}",
                    kind.as_str()
                ));
                return Ok(chosen(index, kind, notes, probes));
            }
            Err(why) => notes.push(format!("{} turned down: {why}", kind.as_str())),
        }
        if !uring::uninstall().await {
            notes.push("(its ring stays open, unused: operations were still in flight)".into());
        }
    }
    match io {
        IoMode::Epoll => notes.push("io = \"epoll\"".into()),
        IoMode::Auto => notes.push("relaying with epoll".into()),
        _ => {
            return Err(DataThreadsError::NoPromptRing {
                io,
                why: notes.join("; "),
            });
        }
    }
    Ok(chosen(index, IoKind::Epoll, notes, probes))
}

fn chosen(
    index: usize,
    kind: IoKind,
    notes: Vec<String>,
    probes: Vec<(IoKind, Duration)>,
) -> ThreadIo {
    let why = notes.join("; ");
    tracing::info!(
        thread = index,
        io = kind.as_str(),
        "data thread {index}: {why}"
    );
    ThreadIo { kind, why, probes }
}
