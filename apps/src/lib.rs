//! Application high availability: keep an operator's application running on the node that
//! should run it, restart it where it fails, and give the role up when restarts do not help.
//!
//! Split like `vrrp`: [`supervisor`] is the pure core, every decision about one application
//! (start, restart with backoff, give up, enable again) as a function of inputs and the time,
//! tested on a fake clock. [`app`] is its shell: a task per application that runs the program
//! (through `runner`) and its checks (through `healthcheck`) and carries the decisions out.
//! [`set`] runs a node's applications, reloaded by difference. Which role an application
//! follows, and what its failure does to the election, is the daemon's to wire: an
//! application only takes a "run" input and gives a "failed" output.
#![forbid(unsafe_code)]

pub mod app;
pub mod checks;
pub mod set;
pub mod supervisor;

pub use app::{App, AppSpec, AppStatus, Ask};
pub use checks::Check;
pub use set::{Apps, UnknownApp};
pub use supervisor::{Action, Input, Policy, State, Supervisor};
