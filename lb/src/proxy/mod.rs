//! The TCP data plane: listeners, backend connects with retry, the relay, PROXY headers.

pub mod connect;
pub mod listener;
pub mod proxy_protocol;
pub mod relay;
pub mod session;
pub mod splice;
pub mod transport;
pub mod uring;
