//! The relay on io_uring: the same contract as [`crate::proxy::relay`] (half-close, idle
//! timeout, counters, resets passed on), with receives and sends queued on the thread's ring.
//!
//! Each direction is a loop: receive into a pool buffer, send it on, give the buffer back,
//! receive again. A send that finds the destination full does not wait holding the pool
//! buffer: the unsent rest moves to a buffer of the connection's own, written out through the
//! epoll path as the destination drains (as on the epoll relay), so peers that stop reading
//! cannot drain the shared pool. A receive that fills a whole buffer marks a bulk stream,
//! which then moves by splice(2) through the epoll path until it goes quiet, as on the epoll
//! relay: zero-copy beats batching once the bytes are many.

use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Poll, ready};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use syscall::uring::{self, BUF_SIZE, Received, RingStream};

use crate::proxy::relay::{
    End, Meters, Outcome, Timeouts, deadline, give_back_buffer, idle_for, pass_abort_on,
    take_buffer,
};
use crate::proxy::splice::Pipe;

/// How long a receive waits before asking again when every pool buffer is out (the pool is
/// at its limit: thousands of connections each stalled with a buffer unsent).
const NO_BUFFER_PAUSE: Duration = Duration::from_millis(5);

/// One direction's progress, shared with the relay that watches both. Atomics only so the
/// relay stays `Send` for `tokio::spawn`: a single thread ever touches them.
#[derive(Default)]
struct Direction {
    bytes: AtomicU64,
    /// FIN was passed on (or the relay ends and closing sends it): this direction is finished.
    done: AtomicBool,
}

/// Relays until both directions finish, one fails, or nothing moves for as long as
/// `timeouts` allow.
pub async fn relay(
    client: &RingStream,
    backend: &RingStream,
    timeouts: Timeouts,
    meters: Meters<'_>,
) -> Outcome {
    let up = Direction::default(); // client -> backend
    let down = Direction::default(); // backend -> client
    let moved = AtomicBool::new(false);
    let mut up_pump = pin!(pump(
        client,
        backend,
        &up,
        &down,
        &moved,
        meters.client_to_backend
    ));
    let mut down_pump = pin!(pump(
        backend,
        client,
        &down,
        &up,
        &moved,
        meters.backend_to_client
    ));
    let mut last_activity = Instant::now();
    let mut moved_any = false;
    let mut idle = pin!(tokio::time::sleep_until(deadline(
        last_activity,
        timeouts.allowed(false)
    )));
    let (mut up_over, mut down_over) = (false, false);

    let end = poll_fn(|cx| {
        if !up_over && let Poll::Ready(result) = up_pump.as_mut().poll(cx) {
            up_over = true;
            if let Err(e) = result {
                return Poll::Ready(End::Failed(e));
            }
        }
        if !down_over && let Poll::Ready(result) = down_pump.as_mut().poll(cx) {
            down_over = true;
            if let Err(e) = result {
                return Poll::Ready(End::Failed(e));
            }
        }
        if up_over && down_over {
            return Poll::Ready(End::Finished);
        }
        if moved.swap(false, Relaxed) {
            last_activity = Instant::now();
            moved_any = true;
        }
        if idle_for(
            idle.as_mut(),
            cx,
            last_activity,
            timeouts.allowed(moved_any),
        ) {
            return Poll::Ready(timeouts.expired(moved_any));
        }
        Poll::Pending
    })
    .await;

    pass_abort_on(
        &end,
        client,
        backend,
        down.done.load(Relaxed),
        up.done.load(Relaxed),
    );
    Outcome {
        end,
        client_to_backend: up.bytes.load(Relaxed),
        backend_to_client: down.bytes.load(Relaxed),
    }
}

/// Moves bytes from `src` to `dst` until `src` ends, then passes the FIN on.
async fn pump(
    src: &RingStream,
    dst: &RingStream,
    this: &Direction,
    other: &Direction,
    moved: &AtomicBool,
    meters: [&AtomicU64; 2],
) -> io::Result<()> {
    let count = |n: usize| {
        moved.store(true, Relaxed);
        this.bytes
            .store(this.bytes.load(Relaxed) + n as u64, Relaxed);
        for m in meters {
            m.fetch_add(n as u64, Relaxed);
        }
    };
    loop {
        let mut buf = match uring::recv(src.as_raw_fd()).await {
            Received::Data(buf) => buf,
            Received::End => break,
            Received::NoBuffers => {
                if !uring::grow_buffers() {
                    tokio::time::sleep(NO_BUFFER_PAUSE).await;
                }
                continue;
            }
            Received::Failed(e) => return Err(e),
        };
        moved.store(true, Relaxed);
        let bulk = buf.len() == BUF_SIZE;
        let (result, back) = uring::send(dst.as_raw_fd(), buf, 0).await;
        buf = back;
        let sent = match result {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                uring::give_back(buf);
                return Err(e);
            }
        };
        count(sent);
        if sent < buf.len() {
            // The destination is full: keep the rest in a back-pressure buffer of the epoll
            // relay's (reused per thread) and free the pool buffer.
            let mut own = take_buffer();
            let kept = uring::copy_into(&buf, sent, &mut own);
            uring::give_back(buf);
            // Boxed, like the splice below: rare paths, kept out of every idle session's
            // future (memory per idle connection is a figure operators compare).
            let written = match dst.epoll() {
                Ok(dst) => Box::pin(write_all_when_writable(dst, &own[..kept], &count)).await,
                Err(e) => Err(e),
            };
            give_back_buffer(own);
            written?;
        } else {
            uring::give_back(buf);
        }
        if bulk && Box::pin(splice_while_streaming(src.epoll()?, dst.epoll()?, &count)).await? {
            break;
        }
    }
    // End of stream. When the other direction is finished too, the relay ends now and closing
    // the sockets sends this FIN; a shutdown would be a wasted syscall.
    if !other.done.load(Relaxed) {
        // A plain system call: the ring would hand a shutdown to a kernel worker thread.
        socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write)?;
    }
    this.done.store(true, Relaxed);
    Ok(())
}

/// Writes `bytes` to `dst` as it drains (readiness through epoll).
pub(super) async fn write_all_when_writable(
    dst: &TcpStream,
    mut bytes: &[u8],
    count: &impl Fn(usize),
) -> io::Result<()> {
    while !bytes.is_empty() {
        dst.writable().await?;
        match dst.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                count(n);
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Splices `src` into `dst` through a pipe until `src` has nothing more to give right now.
/// True when `src` reached end of stream. Without a pipe to spare, returns at once.
async fn splice_while_streaming(
    src: &TcpStream,
    dst: &TcpStream,
    count: &impl Fn(usize),
) -> io::Result<bool> {
    let Some(mut pipe) = Pipe::take() else {
        return Ok(false);
    };
    // The first splice does not ask tokio: the receive that sent us here filled a whole
    // buffer, so more is most likely waiting, and a socket that has only just joined tokio's
    // reactor has no readiness recorded yet (see `Pipe::fill_now`).
    match pipe.fill_now(src) {
        Ok(0) => {
            pipe.give_back();
            return Ok(true);
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => {
            pipe.give_back();
            return Err(e);
        }
    }
    let result = poll_fn(|cx| {
        loop {
            let mut drained = 0;
            let flushed = pipe.poll_drain(cx, dst, &mut drained);
            if drained > 0 {
                count(drained);
            }
            ready!(flushed)?;
            match pipe.poll_fill(cx, src) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(true)),
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // The thread's turn is used up (tokio's cooperative budget), not the stream:
                // yield and carry on splicing.
                Poll::Pending if !tokio::task::coop::has_budget_remaining() => {
                    return Poll::Pending;
                }
                // Quiet: the pipe is empty (drained above); back to receiving on the ring.
                Poll::Pending => return Poll::Ready(Ok(false)),
            }
        }
    })
    .await;
    pipe.give_back();
    result
}
