//! Notify scripts: programs run when an instance changes role, as keepalived's
//! `notify_master`, `notify_backup`, `notify_fault` and `notify_stop`.
//!
//! One task per instance runs them one after another, in the order of the transitions, so a
//! `backup` script never overtakes the `master` script before it. Each runs without a shell,
//! in a process group of its own, killed with its children at `timeout` (see `runner`).

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::instance::Transition;
use crate::machine::State;

/// Programs run on role changes (argv, no shell), each bounded by `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notify {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    /// Run once the instance has stopped (resigned, its VIPs removed).
    pub stop: Option<Vec<String>>,
    pub timeout: Duration,
}

impl Notify {
    /// The program for entering `state`, if one is set.
    fn for_state(&self, state: State) -> Option<&[String]> {
        match state {
            State::Master => self.master.as_deref(),
            State::Backup => self.backup.as_deref(),
            State::Fault => self.fault.as_deref(),
            State::Initialize => None,
        }
    }
}

/// Runs `notify`'s script for each of `transitions`, in order, until the instance ends.
pub(crate) fn spawn(
    instance: String,
    notify: Notify,
    mut transitions: broadcast::Receiver<Transition>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let state = match transitions.recv().await {
                Ok(t) => t.to,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        instance,
                        missed,
                        "notify scripts skipped for missed role changes"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let Some(argv) = notify.for_state(state) {
                run(&instance, state.as_str(), argv, notify.timeout).await;
            }
        }
    })
}

/// Runs one notify program and logs how it ended (its output at debug level).
pub(crate) async fn run(instance: &str, state: &str, argv: &[String], timeout: Duration) {
    let program = argv.first().map_or("", String::as_str);
    let failure = match runner::run(argv, timeout).await {
        Ok(done) => {
            tracing::debug!(
                instance,
                state,
                program,
                status = %done.status,
                stdout = %String::from_utf8_lossy(&done.stdout),
                stderr = %String::from_utf8_lossy(&done.stderr),
                "notify script finished"
            );
            if done.status.success() {
                tracing::info!(instance, state, program, "notify script succeeded");
                return;
            }
            format!("command failed: {}", done.status)
        }
        Err(e) => e.to_string(),
    };
    tracing::warn!(instance, state, program, error = %failure, "notify script failed");
}
