//! The data plane's threads.
//!
//! With `threads = 1` the node's one runtime is also its data plane. With more, each data
//! thread runs a single-thread runtime of its own (with its own io_uring where the node uses
//! one) and accepts on its own SO_REUSEPORT socket of every service: the kernel spreads new
//! connections over those sockets, and a connection then lives on the thread that accepted it
//! from accept to close. No task moves between threads and no connection wakes another thread,
//! which is what lets each thread keep a ring (a ring belongs to the thread that submits to
//! it). The control plane (signals, reload, health checks, VRRP) keeps the main thread.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::config::IoMode;
use crate::proxy::uring;

/// How a node's data plane moves bytes, as `/status` and the start-up line say it.
pub type IoName = &'static str;

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("io = \"io_uring\" but this node cannot use io_uring: {0}")]
    IoUring(std::io::Error),
    #[error("cannot start data-plane thread {index}: {source}")]
    Thread {
        index: usize,
        source: std::io::Error,
    },
}

/// The runtimes that accept and serve client connections.
pub struct Workers {
    /// One per data thread; each listening address gets one socket per entry.
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    io: IoName,
}

impl Workers {
    /// The calling runtime serves the connections itself (`threads = 1`). Must run on the
    /// runtime `cli::build_runtime` made, whose park hook submits the ring's operations.
    pub fn here(io: IoMode) -> Result<Self, WorkersError> {
        Ok(Self {
            handles: vec![Handle::current()],
            threads: Vec::new(),
            stop: CancellationToken::new(),
            io: start_io(io)?,
        })
    }

    /// Starts `count` data threads and returns once each has its runtime and, where `io`
    /// asks for one, its ring; fails (stopping those started) if any cannot.
    pub fn start(count: usize, io: IoMode) -> Result<Self, WorkersError> {
        let mut workers = Self {
            handles: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
            stop: CancellationToken::new(),
            io: "epoll",
        };
        let mut names = Vec::with_capacity(count);
        for index in 0..count {
            let (ready, started) = mpsc::channel();
            let stop = workers.stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tandem-data-{index}"))
                .spawn(move || run_worker(index, io, stop, ready))
                .map_err(|source| WorkersError::Thread { index, source });
            let thread = match spawned {
                Ok(thread) => thread,
                Err(e) => {
                    workers.stop();
                    return Err(e);
                }
            };
            workers.threads.push(thread);
            let outcome = started.recv().unwrap_or_else(|_| {
                Err(WorkersError::Thread {
                    index,
                    source: std::io::Error::other("the thread ended while starting"),
                })
            });
            match outcome {
                Ok((handle, name)) => {
                    workers.handles.push(handle);
                    names.push(name);
                }
                Err(e) => {
                    workers.stop();
                    return Err(e);
                }
            }
        }
        workers.io = if names.iter().all(|n| *n == "io_uring") {
            "io_uring"
        } else if names.iter().all(|n| *n == "epoll") {
            "epoll"
        } else {
            "mixed"
        };
        Ok(workers)
    }

    /// The data runtimes: listeners bind one socket for each and accept on it there.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// "io_uring", "epoll", or "mixed" if only some threads got a ring.
    pub fn io(&self) -> IoName {
        self.io
    }

    /// Ends the data threads and waits for them. Sessions still running there are dropped on
    /// their own thread (their sockets closed, or reset once the node abandoned them).
    pub fn stop(mut self) {
        self.stop.cancel();
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }
}

impl Drop for Workers {
    /// A node that fails to start after its data threads did lets them end with it.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Started = Result<(Handle, IoName), WorkersError>;

fn run_worker(index: usize, io: IoMode, stop: CancellationToken, ready: mpsc::Sender<Started>) {
    let runtime = match crate::cli::runtime_for_one_thread() {
        Ok(runtime) => runtime,
        Err(source) => {
            let _ = ready.send(Err(WorkersError::Thread { index, source }));
            return;
        }
    };
    runtime.block_on(async {
        let started = start_io(io).map(|name| (Handle::current(), name));
        let failed = started.is_err();
        let _ = ready.send(started);
        if !failed {
            stop.cancelled().await;
        }
    });
    // Dropping the runtime here drops its remaining tasks on this thread, where their ring is.
    drop(runtime);
}

/// Sets up io_uring for this thread where `io` allows it and the kernel lets it, and says
/// which way bytes will move on this thread.
fn start_io(io: IoMode) -> Result<IoName, WorkersError> {
    if io == IoMode::Epoll {
        return Ok("epoll");
    }
    if uring::installed() {
        return Ok("io_uring");
    }
    match uring::install() {
        Ok(()) => Ok("io_uring"),
        Err(e) if io == IoMode::IoUring => Err(WorkersError::IoUring(e)),
        Err(e) => {
            tracing::info!(error = %e, "io_uring not available: relaying with epoll");
            Ok("epoll")
        }
    }
}
