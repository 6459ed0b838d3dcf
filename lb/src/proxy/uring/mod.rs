//! The io_uring transport: one ring per data thread.
//!
//! A session on it runs on the thread's io_uring from accept to close: the backend connect
//! (its time limit a timeout linked to it in the kernel), receives, sends and the closes are
//! ring operations, submitted in one system call per batch when the thread would otherwise
//! sleep. Its sockets stay out of tokio's epoll set unless a rare path (back-pressure, splice)
//! needs readiness. On a busy node that removes most of the per-request and per-connection
//! system calls an epoll proxy pays, and the epoll wake-ups with them. `bench/uring` measured
//! the gain that motivated it.
//!
//! The ring itself, its buffers and ring-driven sockets are Tandem's syscall layer,
//! [`syscall::uring`]; this module is the relay and the [`Transport`](super::transport::Transport)
//! built on them.
//!
//! Used when `[node] io` is `auto` or names a ring, and only where the ring's start-up probe
//! saw it wake its thread promptly (`syscall::uring::probe`). Each data thread runs a
//! current-thread runtime with a ring of its own (see `crate::data_threads`): no task ever leaves
//! the thread, so no operation can reach another thread's ring.

mod relay;
mod transport;

pub use transport::Uring;
