//! The io_uring transport, for a data plane that runs on one thread.
//!
//! A session on it runs on the thread's io_uring from accept to close: the backend connect
//! (its time limit a timeout linked to it in the kernel), receives, sends and the closes are
//! ring operations, submitted in one system call per batch when the thread would otherwise
//! sleep. Its sockets stay out of tokio's epoll set unless a rare path (back-pressure, splice)
//! needs readiness. On a busy node that removes most of the per-request and per-connection
//! system calls an epoll proxy pays, and the epoll wake-ups with them. `bench/uring` measured
//! the gain that motivated it.
//!
//! Used when `[node] io` is `auto` or `io_uring` and the node runs one worker thread; a ring
//! per thread on the work-stealing runtime would let tasks migrate away from their ring.

mod buffers;
mod relay;
mod ring;
mod stream;
mod transport;

pub use ring::{flush, install, installed};
pub use stream::RingStream;
pub use transport::Uring;
