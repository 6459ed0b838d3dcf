//! The relay on io_uring, for a data plane that runs on one thread.
//!
//! Accepting and connecting stay on tokio's epoll reactor; once a session is connected, its
//! receives and sends go through the thread's io_uring, submitted in one system call per
//! batch when the thread would otherwise sleep. On a busy node that removes most of the
//! per-request system calls that an epoll proxy pays (a read and a write per direction plus
//! the epoll wake-up). `bench/uring` measured the gain that motivated it.
//!
//! Used when `[node] io` is `auto` or `io_uring` and the node runs one worker thread; a ring
//! per thread on the work-stealing runtime would let tasks migrate away from their ring.

mod buffers;
mod relay;
mod ring;

pub use relay::relay;
pub use ring::{flush, install, installed};
