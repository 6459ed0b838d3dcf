//! Moves bytes both ways between a client and a backend until both sides are done.
//!
//! Memory is the point of this design: an idle connection owns no buffer at all. Reads go into
//! one scratch buffer per thread and are written straight through to the other socket; only
//! when that write would block does the connection take a buffer of its own for the unsent
//! rest, and it gives it back as soon as the stream goes quiet. Thousands of idle keep-alive
//! connections then cost little more than their sockets.
//!
//! Half-close is honoured: a FIN from one side becomes `shutdown(Write)` towards the other, and
//! the other direction keeps flowing until it finishes too.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::splice::Pipe;

/// Size of the per-thread scratch buffer and of a connection's own buffer while it streams.
/// 64 KiB keeps bulk transfers at few syscalls per megabyte.
const BUF_SIZE: usize = 64 * 1024;

/// Back-pressure buffers kept per thread for reuse, so a stream that stalls and resumes often
/// does not allocate and zero 64 KiB each time.
const SPARE_MAX: usize = 16;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; BUF_SIZE].into_boxed_slice());
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn take_buffer() -> Box<[u8]> {
    SPARE
        .with_borrow_mut(|spare| spare.pop())
        .unwrap_or_else(|| vec![0; BUF_SIZE].into_boxed_slice())
}

pub(crate) fn give_back_buffer(buf: Box<[u8]>) {
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARE_MAX {
            spare.push(buf);
        }
    });
}

/// Counters a direction adds its bytes to as they move (service and backend totals).
#[derive(Clone, Copy)]
pub struct Meters<'a> {
    pub client_to_backend: [&'a AtomicU64; 2],
    pub backend_to_client: [&'a AtomicU64; 2],
}

/// How long a relay lets a connection sit quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Nothing moved either way for this long: the relay ends ([`End::Idle`]).
    pub idle: Duration,
    /// Nothing moved at all, either way, this long after the relay started: it ends
    /// ([`End::NoFirstByte`]). Zero: off. A server that speaks first moves a byte with its
    /// greeting, so only a client that waits for nothing and sends nothing meets it.
    pub first_byte: Duration,
}

impl Timeouts {
    /// The quiet time allowed now: until a first byte moved, the shorter of the two.
    pub(crate) fn allowed(&self, moved_any: bool) -> Duration {
        if moved_any || self.first_byte.is_zero() {
            self.idle
        } else {
            self.first_byte.min(self.idle)
        }
    }

    /// Why a relay that stayed quiet for [`Self::allowed`] ends.
    pub(crate) fn expired(&self, moved_any: bool) -> End {
        if moved_any || self.first_byte.is_zero() || self.first_byte >= self.idle {
            End::Idle
        } else {
            End::NoFirstByte
        }
    }
}

/// Why a relay ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached end of stream and were shut down in turn.
    Finished,
    /// Nothing moved in either direction for the idle timeout.
    Idle,
    /// No byte moved in either direction within the first-byte timeout.
    NoFirstByte,
    /// A socket failed (typically a reset from one peer).
    Failed(io::Error),
}

/// What a finished relay reports.
#[derive(Debug)]
pub struct Outcome {
    pub end: End,
    pub client_to_backend: u64,
    pub backend_to_client: u64,
}

/// Relays until both directions finish, one fails, or nothing moves for as long as
/// `timeouts` allow. With `splice`, a direction that carries a bulk stream moves it with
/// splice(2).
pub async fn relay(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    timeouts: Timeouts,
    splice: bool,
    meters: Meters<'_>,
) -> Outcome {
    let mut up = Half::new(splice); // client -> backend
    let mut down = Half::new(splice); // backend -> client
    let mut last_activity = Instant::now();
    let mut moved_any = false;
    let idle = tokio::time::sleep_until(deadline(last_activity, timeouts.allowed(false)));
    tokio::pin!(idle);

    let end = poll_fn(|cx| {
        let mut moved = false;
        let up_state = up.poll(
            cx,
            client,
            backend,
            down.done,
            &mut moved,
            meters.client_to_backend,
        );
        let down_state = down.poll(
            cx,
            backend,
            client,
            up.done,
            &mut moved,
            meters.backend_to_client,
        );
        match (up_state, down_state) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => {
                return Poll::Ready(End::Failed(e));
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(End::Finished),
            _ => {}
        }
        if moved {
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

    pass_abort_on(&end, client, backend, down.done, up.done);
    Outcome {
        end,
        client_to_backend: up.bytes,
        backend_to_client: down.bytes,
    }
}

/// After a failed relay, passes the abort on as an abort: a peer whose incoming stream was cut
/// short sees a reset, not a clean end of stream it could take for a complete response. A peer
/// that already received everything and our FIN (`to_client_done`, `to_backend_done`) keeps
/// its clean close.
pub(crate) fn pass_abort_on(
    end: &End,
    client: &impl AsFd,
    backend: &impl AsFd,
    to_client_done: bool,
    to_backend_done: bool,
) {
    if matches!(end, End::Failed(_)) {
        if !to_client_done {
            reset_on_close(client);
        }
        if !to_backend_done {
            reset_on_close(backend);
        }
    }
}

/// Makes closing `socket` send a reset instead of a FIN (SO_LINGER with a zero timeout).
pub(crate) fn reset_on_close(socket: &impl AsFd) {
    let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
}

/// Whether nothing has moved for `timeout` since `last_activity`, with `idle` as the timer
/// that wakes the relay to ask. The timer is re-armed only when it fires, not on every
/// transfer: a busy connection touches the timer wheel once per idle period at most.
pub(crate) fn idle_for(
    mut idle: Pin<&mut tokio::time::Sleep>,
    cx: &mut Context<'_>,
    last_activity: Instant,
    timeout: Duration,
) -> bool {
    while idle.as_mut().poll(cx).is_ready() {
        let at = deadline(last_activity, timeout);
        if Instant::now() >= at {
            return true;
        }
        idle.as_mut().reset(at);
    }
    false
}

/// `from + timeout`, saturating far in the future instead of overflowing.
pub(crate) fn deadline(from: Instant, timeout: Duration) -> Instant {
    from.checked_add(timeout)
        .unwrap_or_else(|| from + Duration::from_secs(100 * 365 * 86_400))
}

/// One direction of the relay.
struct Half {
    /// Bytes read but not yet written, `buf[start..end]`; `None` while nothing is pending.
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// The source sent FIN.
    eof: bool,
    /// FIN was passed on: this direction is finished.
    done: bool,
    bytes: u64,
    /// Splice is allowed for this relay.
    splice: bool,
    /// A read filled the whole buffer: this is a bulk stream, switch to splice when possible.
    bulk: bool,
    /// Set while the direction is splicing.
    pipe: Option<Pipe>,
}

impl Half {
    fn new(splice: bool) -> Self {
        Self {
            buf: None,
            start: 0,
            end: 0,
            eof: false,
            done: false,
            bytes: 0,
            splice,
            bulk: false,
            pipe: None,
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut TcpStream,
        dst: &mut TcpStream,
        other_done: bool,
        moved: &mut bool,
        meters: [&AtomicU64; 2],
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(pipe) = &mut self.pipe {
                let mut drained = 0;
                let flushed = pipe.poll_drain(cx, dst, &mut drained);
                count(&mut self.bytes, drained, moved, meters);
                ready!(flushed)?;
                match pipe.poll_fill(cx, src) {
                    Poll::Ready(Ok(0)) => self.eof = true,
                    Poll::Ready(Ok(_)) => {
                        *moved = true;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
                // End of stream or quiet: the (empty) pipe goes back to the pool.
                if let Some(pipe) = self.pipe.take() {
                    pipe.give_back();
                }
                if !self.eof {
                    return Poll::Pending;
                }
            }

            // 1. Whatever is pending goes first: no new read until the destination took it.
            if let Some(buf) = &self.buf {
                while self.start < self.end {
                    let n = ready!(Pin::new(&mut *dst).poll_write(cx, &buf[self.start..self.end]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.start += n;
                    count(&mut self.bytes, n, moved, meters);
                }
                self.start = 0;
                self.end = 0;
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                // When the other direction is finished too, the relay ends now and closing the
                // sockets sends this FIN; an explicit shutdown would be a wasted syscall. (dst
                // has nothing unread, its own FIN was read, so the close is clean, not a reset.)
                if !other_done {
                    ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }

            if self.bulk {
                self.bulk = false;
                if let Some(pipe) = Pipe::take() {
                    if let Some(buf) = self.buf.take() {
                        give_back_buffer(buf);
                    }
                    self.pipe = Some(pipe);
                    continue;
                }
            }

            // 2. Read. While streaming against back-pressure, read into our own buffer (no
            //    extra copy); otherwise into the thread's scratch and write straight through.
            if let Some(buf) = self.buf.as_mut() {
                let mut rb = ReadBuf::new(buf);
                match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                    Poll::Pending => {
                        // Quiet again: give the buffer back (it is empty here).
                        if let Some(buf) = self.buf.take() {
                            give_back_buffer(buf);
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.eof = true;
                        }
                        self.bulk = self.splice && n == BUF_SIZE;
                        self.end = n;
                        *moved = true;
                    }
                }
                continue;
            }

            let step = SCRATCH.with_borrow_mut(|scratch| {
                let mut rb = ReadBuf::new(scratch);
                match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let n = rb.filled().len();
                *moved = true;
                if n == 0 {
                    self.eof = true;
                    return Poll::Ready(Ok(()));
                }
                self.bulk = self.splice && n == BUF_SIZE;
                let written = match Pin::new(&mut *dst).poll_write(cx, &scratch[..n]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(m)) => m,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => 0,
                };
                count(&mut self.bytes, written, moved, meters);
                if written < n {
                    // The destination is full: keep the rest in a buffer of our own.
                    let mut own = take_buffer();
                    own[..n - written].copy_from_slice(&scratch[written..n]);
                    self.buf = Some(own);
                    self.start = 0;
                    self.end = n - written;
                }
                Poll::Ready(Ok(()))
            });
            ready!(step)?;
        }
    }
}

/// Adds `n` moved bytes to the direction's total and to the shared meters.
fn count(total: &mut u64, n: usize, moved: &mut bool, meters: [&AtomicU64; 2]) {
    if n > 0 {
        *moved = true;
        *total += n as u64;
        for m in meters {
            m.fetch_add(n as u64, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(300);

    #[test]
    fn until_a_byte_moves_the_first_byte_timeout_rules() {
        let t = Timeouts {
            idle: IDLE,
            first_byte: Duration::from_secs(30),
        };
        assert_eq!(t.allowed(false), Duration::from_secs(30));
        assert!(matches!(t.expired(false), End::NoFirstByte));
        assert_eq!(t.allowed(true), IDLE);
        assert!(matches!(t.expired(true), End::Idle));
    }

    #[test]
    fn a_first_byte_timeout_of_zero_or_beyond_the_idle_one_changes_nothing() {
        for first_byte in [Duration::ZERO, IDLE, IDLE * 2] {
            let t = Timeouts {
                idle: IDLE,
                first_byte,
            };
            assert_eq!(t.allowed(false), IDLE, "{first_byte:?}");
            assert!(matches!(t.expired(false), End::Idle), "{first_byte:?}");
        }
    }
}
