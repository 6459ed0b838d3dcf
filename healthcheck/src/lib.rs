//! `healthcheck` owns one question: is this backend alive.
//!
//! - [`status`] is the pure core: rise/fall counting over probe results, with the time passed in
//!   (no I/O, no clock), so every threshold rule is tested exactly.
//! - [`check`] holds the checkers (tcp, http, command, process, icmp). One probe is one async call,
//!   bounded by a timeout, that answers `Ok(())` or a [`CheckError`] whose text is short enough to
//!   show an operator as "last error".
//! - [`monitor`] runs one task per target: probes on an interval with start-up jitter (so a
//!   reload does not probe every backend at the same instant), applies rise/fall, and publishes
//!   each up/down transition on a broadcast channel. The data plane can also eject a backend at
//!   once when its own connects fail ([`Monitor::eject`]); only active probes bring it back.
//!
//! It knows nothing of `lb` or `vrrp`: the daemon subscribes to [`Transition`]s and applies them
//! to its pools.
#![forbid(unsafe_code)]

pub mod check;
pub mod monitor;
pub mod status;

pub use check::{CheckError, CheckSpec, HttpMethod, ProcessTarget, StatusMatcher, probe};
pub use monitor::{Monitor, Target, TargetId, Transition};
pub use status::{Change, HealthStatus, Thresholds};
