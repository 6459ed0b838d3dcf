//! The UDP data plane: services with `protocol = "udp"`.
//!
//! A UDP service gets one SO_REUSEPORT socket per data thread, as a TCP service does; the
//! kernel hashes each client (address and port) to one of them, so a client's datagrams always
//! reach the same thread, and that thread's [`worker`] keeps its flow in a table of its own
//! ([`flows`], pure). A flow's first datagram picks a backend with the service's balancer; the
//! flow then has a socket of its own connected to that backend, so the backend's replies come
//! back to it alone and an ICMP port unreachable surfaces on it as a refused receive (passive
//! health). Replies leave through the service socket, from the service address.
//!
//! - [`flows`]: the bounded flow table on an injected clock, and the exchange count that ends a
//!   flow at its replies (`responses`).
//! - [`listener`]: binding the sockets and starting, reloading and stopping the workers.
//! - [`worker`]: one thread's loop for one service: batches in (`recvmmsg`), flows, batches out
//!   (`sendmmsg`), expiry, drain.

pub mod flows;
pub mod listener;
pub mod worker;
