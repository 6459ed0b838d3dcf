//! Application high availability: keep an operator's application running on the node that
//! should run it, restart it where it fails, and give the role up when restarts do not help.
//!
//! Split like `vrrp`: [`supervisor`] is the pure core, every decision about one application
//! (start, restart with backoff, give up, enable again) as a function of inputs and the time,
//! tested on a fake clock. The shell that runs the program and its checks, and that turns a
//! failed application into a lost role, is the daemon's.
#![forbid(unsafe_code)]

pub mod supervisor;

pub use supervisor::{Action, Input, Policy, State, Supervisor};
