//! The operations a session awaits (receive, send, connect, close) and the future that waits
//! for one's completion, on this thread's ring.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types};
use socket2::SockAddr;

use super::{ConnectArgs, IGNORED, Received, State, no_ring, with_ring};
use crate::uring::buffers::{BUF_SIZE, Buf, GROUP};

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

/// One operation in flight; resolves to the completion's result and flags.
pub(super) struct Op {
    pub(super) ring: u32,
    pub(super) slot: usize,
    pub(super) finished: bool,
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
