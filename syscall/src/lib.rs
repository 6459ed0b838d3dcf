//! Tandem's syscall layer: the only crate with `unsafe` code.
//!
//! Everything here shares memory or descriptors with the kernel in ways the compiler cannot
//! check, so it lives in one place, behind safe functions whose contracts the rest of Tandem
//! (`lb`, `vrrp`, `healthcheck`, `runner`, which all forbid unsafe code) relies on. Each `unsafe` block
//! says why it holds in a `// SAFETY:` line.
//!
//! - [`uring`]: one io_uring per data thread, its provided receive buffers, sockets whose
//!   operations go through it, and the start-up probe that proves it wakes its thread.
//! - [`datagrams`]: batches of datagrams moved by one `recvmmsg` or `sendmmsg` each (UDP
//!   services).
//! - [`reactor`]: registering an owned socket with tokio's reactor.
//! - [`socket`]: what socket2 leaves to raw code: a receive with its control messages (and the
//!   kernel's receive timestamp), and a link-layer (`AF_PACKET`) destination address.
//! - [`thread`]: real-time scheduling for a thread that must run on time (the VRRP election).
//! - [`process`]: a child program killed when the daemon dies (applications).
//! - [`memory`]: locking the process's memory in RAM, so that thread never waits for a page.
//! - [`alloc_count`]: an allocator counting each thread's allocations, for tests that prove a
//!   path allocates nothing.

pub mod alloc_count;
pub mod datagrams;
pub mod memory;
pub mod process;
pub mod reactor;
pub mod socket;
pub mod thread;
pub mod uring;
