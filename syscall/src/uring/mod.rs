//! One io_uring per data thread: the ring and its driver, the receive buffers the kernel
//! picks from, sockets whose operations go through the ring, and the start-up probe that
//! proves a ring wakes its thread before any client relies on it.
//!
//! Every function here acts on the calling thread's ring (a thread-local), never on a handle:
//! a future that somehow ran on another thread finds no ring, or another one, and fails
//! instead of corrupting it. The relay built on it is `lb::proxy::uring`.

mod buffers;
mod probe;
mod ring;
mod stream;

pub use buffers::{BUF_SIZE, Buf};
pub use probe::{WakeProbe, probe};
pub use ring::{
    Received, RingKind, close, connect, copy_into, flush, give_back, grow_buffers, install,
    installed, recv, send, signal_fd, uninstall,
};
pub use stream::RingStream;
