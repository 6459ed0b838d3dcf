//! A thread's ring from install to take-down, and the two ways its completions are collected:
//! the park hook ([`flush`]) and the driver task ([`drive`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::task::Poll;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{CURRENT, Ring, RingKind, no_ring, with_ring};

/// A duplicate of this thread's ring's eventfd, for the start-up probe to see when the kernel
/// signals it.
pub fn signal_fd() -> io::Result<OwnedFd> {
    with_ring(None, |ring| ring.signal.try_clone()).unwrap_or_else(|| Err(no_ring()))
}

/// Whether this thread has a ring: the relay uses it when it does.
pub fn installed() -> bool {
    with_ring(None, |_| ()).is_some()
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
    let id = with_ring(None, |ring| ring.id);
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
    if with_ring(None, |ring| ring.id) != id {
        // Another `uninstall` of this thread took it down while this one waited: it is not
        // ours to touch any more (it may be freed, or a new ring installed since, perhaps at
        // the same address, which is why rings are told apart by id).
        return false;
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
