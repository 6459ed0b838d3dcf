//! The checks of one run of an application: each probed on its own schedule from the moment
//! the program starts, counted with rise/fall (from down: a fresh start has proven nothing),
//! and combined into one verdict, up while every check is up.
//!
//! A run's checks live exactly as long as the run: [`CheckRun`] is made at spawn and dropped
//! at kill, which stops its probes. A fresh start so never inherits the verdict of the run
//! before it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use healthcheck::{CheckSpec, HealthStatus, Thresholds, probe};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// One check of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub spec: CheckSpec,
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

/// The combined verdict of a run's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every check is up.
    pub up: bool,
    /// The latest error of a check, to show an operator why it is down (or flapped).
    pub last_error: Option<String>,
}

/// The probes of one run; dropping it stops them.
pub struct CheckRun {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for CheckRun {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl CheckRun {
    /// Starts probing `checks` now. With none, the verdict is up at once: an application
    /// without checks is healthy while it runs.
    pub fn start(checks: &[Check]) -> (Self, watch::Receiver<Verdict>) {
        let (tx, rx) = watch::channel(Verdict {
            up: checks.is_empty(),
            last_error: None,
        });
        let shared = Arc::new(Shared {
            statuses: Mutex::new(vec![HealthStatus::new(false); checks.len()]),
            verdict: tx,
        });
        let tasks = checks
            .iter()
            .enumerate()
            .map(|(index, check)| tokio::spawn(probe_loop(shared.clone(), index, check.clone())))
            .collect();
        (Self { tasks }, rx)
    }
}

struct Shared {
    statuses: Mutex<Vec<HealthStatus>>,
    verdict: watch::Sender<Verdict>,
}

async fn probe_loop(shared: Arc<Shared>, index: usize, check: Check) {
    let mut ticks = tokio::time::interval(check.interval.max(Duration::from_millis(10)));
    // A probe that overran its interval is followed by the next one, not by a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut host_fault_logged: Option<Instant> = None;
    loop {
        ticks.tick().await;
        let result = match probe(&check.spec, check.timeout).await {
            // This host ran out of something: says nothing of the application.
            Err(e) if e.is_host_fault() => {
                let now = Instant::now();
                if host_fault_logged.is_none_or(|at| now - at >= Duration::from_secs(10)) {
                    host_fault_logged = Some(now);
                    tracing::warn!(error = %e, "application check failed for want of this host's resources; not counted (logged once per 10 s)");
                }
                continue;
            }
            result => result.map_err(|e| e.to_string()),
        };
        let error = result.as_ref().err().cloned();
        let mut statuses = shared
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        statuses[index].record(result, check.thresholds, Instant::now());
        let up = statuses.iter().all(|s| s.up);
        drop(statuses);
        shared.verdict.send_if_modified(|verdict| {
            let changed = verdict.up != up || (error.is_some() && verdict.last_error != error);
            verdict.up = up;
            if error.is_some() {
                verdict.last_error = error;
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn tcp(addr: SocketAddr, rise: u32, fall: u32) -> Check {
        Check {
            spec: CheckSpec::Tcp {
                addr,
                send: None,
                expect: None,
            },
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
            thresholds: Thresholds { rise, fall },
        }
    }

    async fn wait_for(rx: &mut watch::Receiver<Verdict>, up: bool) -> Verdict {
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| v.up == up))
            .await
            .expect("the verdict came within 5 s")
            .expect("the checks run")
            .clone()
    }

    #[tokio::test]
    async fn no_checks_is_up_at_once() {
        let (_run, rx) = CheckRun::start(&[]);
        assert!(rx.borrow().up);
    }

    #[tokio::test]
    async fn a_run_starts_down_rises_when_every_check_passes_and_falls_when_one_fails() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closing_addr = closing.local_addr().unwrap();
        let checks = [
            tcp(open.local_addr().unwrap(), 2, 2),
            tcp(closing_addr, 2, 2),
        ];
        let (_run, mut rx) = CheckRun::start(&checks);
        assert!(!rx.borrow().up, "a fresh run has proven nothing");
        wait_for(&mut rx, true).await;
        drop(closing);
        let verdict = wait_for(&mut rx, false).await;
        assert!(
            verdict.last_error.is_some_and(|e| !e.is_empty()),
            "the failing check says why"
        );
    }
}
