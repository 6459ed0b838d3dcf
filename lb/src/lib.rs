//! Tandem's daemon: config, data plane, reload and the `tandem` CLI.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`]. Everything else is a library so the
//! end-to-end tests in `tests/` can build the same binary and drive it as a real process.
//!
//! Unsafe code is forbidden: what shares memory or descriptors with the kernel (the io_uring
//! rings, raw socket calls) is the `syscall` crate's, behind safe functions.
#![forbid(unsafe_code)]

pub mod admin;
pub mod anycast;
pub mod applications;
pub mod balance;
pub mod cli;
pub mod config;
pub mod data_plane;
pub mod data_threads;
pub mod demo;
pub mod events;
pub mod failover;
pub mod generation;
pub mod health;
pub mod logging;
pub mod node;
pub mod passive;
pub mod pool;
pub mod proxy;
pub mod registry;
pub mod sd_notify;
pub mod service_socket;
pub mod stats;
pub mod tasks;
pub mod udp;
