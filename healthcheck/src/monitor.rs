//! Runs the probes: one tokio task per target, rise/fall applied, transitions published.
//!
//! State is one `Mutex<HashMap<TargetId, _>>`, touched once per probe and never held across an
//! await; the data plane does not read it (it learns of changes from [`Monitor::subscribe`]), so
//! the lock stays off the hot path.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::check::{CheckSpec, probe};
use crate::status::{Change, HealthStatus, Thresholds};

/// Transitions buffered per subscriber. A subscriber that falls further behind gets
/// `RecvError::Lagged` and should resync from [`Monitor::statuses`].
const CHANNEL_CAPACITY: usize = 1024;

/// The shortest probe interval: `tokio::time::interval` rejects zero, and a tighter loop would
/// only burn CPU. Config validation is expected to refuse such values long before this.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Host faults are logged at most this often (with the count in between): an exhausted host
/// fails every probe, and a line per probe would flood the log when it can least afford it.
const HOST_FAULT_LOG_EVERY: Duration = Duration::from_secs(10);

/// One checked address in one group: for a backend, its pool (the same address in two pools
/// is two targets, since each pool may check it differently); for anything else, a label of
/// the caller's (a VRRP instance's gateway, say).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId {
    pub group: String,
    pub addr: SocketAddr,
}

impl TargetId {
    pub fn new(group: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            group: group.into(),
            addr,
        }
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.addr)
    }
}

/// What to check for one target, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: TargetId,
    pub spec: CheckSpec,
    /// Time between probe starts (a probe that overruns delays the next, never overlaps it).
    pub interval: Duration,
    /// Bound on one probe.
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// The state of a target before its first probes (see [`HealthStatus::new`]). Only used
    /// when the target is new: a reload never resets health.
    pub start_up: bool,
}

/// An up/down flip of one target, as published to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: TargetId,
    pub up: bool,
    pub reason: String,
    pub at: Instant,
}

/// Handle to the checker tasks; clones share them. When the last clone is dropped, every task
/// stops (and a command probe in flight is killed).
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Lock order: `tasks` before `Shared::states`.
    tasks: Mutex<HashMap<TargetId, Task>>,
    runtime: Handle,
    next_generation: AtomicU64,
}

/// What the per-target tasks need; they hold it without holding the [`Monitor`] alive.
struct Shared {
    states: Mutex<HashMap<TargetId, Entry>>,
    events: broadcast::Sender<Transition>,
    transitions: AtomicU64,
    /// Probes that failed for want of this host's resources (see
    /// [`crate::CheckError::is_host_fault`]), recorded against no target.
    host_faults: AtomicU64,
    /// When a host fault was last logged, and how many came since (logged at most once per
    /// [`HOST_FAULT_LOG_EVERY`]).
    host_fault_log: Mutex<(Option<Instant>, u64)>,
}

struct Entry {
    status: HealthStatus,
    /// The generation of the task allowed to record into this entry. A task replaced by
    /// `set_targets` may still finish one probe before its abort lands; the mismatch makes it
    /// drop that result and stop.
    generation: u64,
}

/// A running target task; dropping it stops the task.
struct Task {
    target: Target,
    handle: JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the map consistent, so a panic elsewhere while holding the
    // lock does not make the data unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Monitor {
    /// An empty monitor. Must be called inside a tokio runtime: the target tasks are spawned on
    /// it, so `set_targets` may later be called from any thread.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    states: Mutex::new(HashMap::new()),
                    events,
                    transitions: AtomicU64::new(0),
                    host_faults: AtomicU64::new(0),
                    host_fault_log: Mutex::new((None, 0)),
                }),
                tasks: Mutex::new(HashMap::new()),
                runtime: Handle::current(),
                next_generation: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the set of targets (called at start and on every config reload). Targets whose
    /// id and spec/timings are unchanged keep their task and state; changed ones restart their
    /// schedule but keep their [`HealthStatus`] (health survives reload); removed ones stop and
    /// their state is forgotten. A target listed twice is taken once (the first).
    pub fn set_targets(&self, targets: Vec<Target>) {
        let inner = &self.inner;
        let mut tasks = lock(&inner.tasks);
        let mut states = lock(&inner.shared.states);
        let mut old = std::mem::take(&mut *tasks);
        for target in targets {
            if tasks.contains_key(&target.id) {
                tracing::warn!(backend = %target.id, "health check target listed twice; keeping the first");
                continue;
            }
            let id = target.id.clone();
            match old.remove(&id) {
                Some(task) if task.target == target => {
                    tasks.insert(id, task);
                }
                previous => {
                    let restarted = previous.is_some();
                    drop(previous); // aborts the old schedule
                    let generation = inner.next_generation.fetch_add(1, Ordering::Relaxed);
                    states
                        .entry(id.clone())
                        .and_modify(|e| e.generation = generation)
                        .or_insert_with(|| Entry {
                            status: HealthStatus::new(target.start_up),
                            generation,
                        });
                    tracing::debug!(backend = %id, restarted, "health check scheduled");
                    let handle = inner.runtime.spawn(run_target(
                        Arc::clone(&inner.shared),
                        target.clone(),
                        generation,
                    ));
                    tasks.insert(id, Task { target, handle });
                }
            }
        }
        for (id, _task) in old {
            tracing::debug!(backend = %id, "health check removed");
            states.remove(&id);
        }
    }

    /// Every transition from now on. Nothing is sent for a target's initial state: read it with
    /// [`Monitor::statuses`] after subscribing.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.inner.shared.events.subscribe()
    }

    pub fn status(&self, id: &TargetId) -> Option<HealthStatus> {
        lock(&self.inner.shared.states)
            .get(id)
            .map(|e| e.status.clone())
    }

    /// All targets' health, sorted by id (pool, then address) for stable output.
    pub fn statuses(&self) -> Vec<(TargetId, HealthStatus)> {
        let mut all: Vec<_> = lock(&self.inner.shared.states)
            .iter()
            .map(|(id, e)| (id.clone(), e.status.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Passive ejection from the data plane: marks the target down at once (publishing a
    /// transition if it was up) without waiting for `fall` probes. Only `rise` successful
    /// probes bring it back. Unknown targets are ignored (a reload may have removed it).
    pub fn eject(&self, id: &TargetId, reason: &str) {
        let shared = &self.inner.shared;
        let mut states = lock(&shared.states);
        let Some(entry) = states.get_mut(id) else {
            tracing::debug!(backend = %id, "eject of an unknown health check target ignored");
            return;
        };
        let now = Instant::now();
        if let Some(change) = entry.status.eject(reason.to_owned(), now) {
            // Published under the lock so a target's transitions reach subscribers in order.
            shared.publish(id, change, now);
        }
    }

    /// Transitions published since start (for `/metrics`).
    pub fn transitions_total(&self) -> u64 {
        self.inner.shared.transitions.load(Ordering::Relaxed)
    }

    /// Probes since start that failed for want of this host's resources and so were not
    /// counted against their targets (for `/metrics`).
    pub fn host_faults_total(&self) -> u64 {
        self.inner.shared.host_faults.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn generation(&self, id: &TargetId) -> Option<u64> {
        lock(&self.inner.shared.states)
            .get(id)
            .map(|e| e.generation)
    }
}

impl Default for Monitor {
    /// Same as [`Monitor::new`]: must be called inside a tokio runtime.
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("targets", &lock(&self.inner.tasks).len())
            .field("transitions", &self.transitions_total())
            .finish()
    }
}

impl Shared {
    /// Records one probe result for the task of `generation`. Returns `false` when that task has
    /// been replaced or removed and must stop.
    fn record(
        &self,
        id: &TargetId,
        generation: u64,
        result: Result<(), String>,
        t: Thresholds,
        took: Duration,
    ) -> bool {
        let mut states = lock(&self.states);
        let Some(entry) = states.get_mut(id).filter(|e| e.generation == generation) else {
            return false;
        };
        let now = Instant::now();
        entry.status.last_duration = Some(took);
        if let Some(change) = entry.status.record(result, t, now) {
            self.publish(id, change, now);
        }
        true
    }

    /// Counts a probe that failed for want of this host's resources, and logs it at most
    /// once per [`HOST_FAULT_LOG_EVERY`].
    fn host_fault(&self, id: &TargetId, error: &crate::CheckError) {
        self.host_faults.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut log = lock(&self.host_fault_log);
        log.1 += 1;
        if log
            .0
            .is_none_or(|at| now.duration_since(at) >= HOST_FAULT_LOG_EVERY)
        {
            let count = std::mem::take(&mut log.1);
            log.0 = Some(now);
            tracing::warn!(backend = %id, %error, probes = count,
                "health probe failed for want of this host's resources; not counted against the backend");
        }
    }

    /// Logs, counts and broadcasts one transition. Called with the states lock held.
    fn publish(&self, id: &TargetId, change: Change, at: Instant) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
        if change.up {
            tracing::info!(backend = %id, up = true, reason = %change.reason, "{id}: down -> up ({})", change.reason);
        } else {
            tracing::warn!(backend = %id, up = false, reason = %change.reason, "{id}: up -> down ({})", change.reason);
        }
        // An error only means nobody subscribes yet; the state is still readable via `status`.
        let _ = self.events.send(Transition {
            id: id.clone(),
            up: change.up,
            reason: change.reason,
            at,
        });
    }
}

/// One target's schedule: a random start-up delay in `[0, interval)` (so targets loaded together
/// do not probe in lockstep), then a probe every `interval`.
async fn run_target(shared: Arc<Shared>, target: Target, generation: u64) {
    let interval = target.interval.max(MIN_INTERVAL);
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_nanos(fastrand::u64(0..nanos))).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let result = probe(&target.spec, target.timeout).await;
        let took = started.elapsed();
        if let Err(error) = &result {
            if error.is_host_fault() {
                // Says nothing of the target: it keeps its state and counts.
                shared.host_fault(&target.id, error);
                continue;
            }
            tracing::debug!(backend = %target.id, %error, "health check failed");
        }
        let result = result.map_err(|e| e.to_string());
        if !shared.record(&target.id, generation, result, target.thresholds, took) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::ProcessTarget;

    fn target(pool: &str, interval: Duration) -> Target {
        Target {
            id: TargetId::new(pool, "127.0.0.1:1".parse().unwrap()),
            spec: CheckSpec::Process {
                target: ProcessTarget::PidFile("/nonexistent/tandem-test.pid".into()),
            },
            interval,
            timeout: Duration::from_millis(100),
            thresholds: Thresholds::default(),
            start_up: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_targets_keep_their_task_and_changed_ones_get_a_new_one() {
        let monitor = Monitor::new();
        let a = target("a", Duration::from_secs(3600));
        let b = target("b", Duration::from_secs(3600));
        monitor.set_targets(vec![a.clone(), b.clone()]);
        let (ga, gb) = (
            monitor.generation(&a.id).unwrap(),
            monitor.generation(&b.id).unwrap(),
        );

        let b2 = Target {
            interval: Duration::from_secs(60),
            ..b.clone()
        };
        monitor.set_targets(vec![a.clone(), b2]);
        assert_eq!(monitor.generation(&a.id), Some(ga));
        assert_ne!(monitor.generation(&b.id), Some(gb));

        monitor.set_targets(vec![b]);
        assert_eq!(monitor.generation(&a.id), None);
        assert_eq!(monitor.status(&a.id), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_listed_twice_runs_once() {
        let monitor = Monitor::new();
        let a = target("a", Duration::from_secs(3600));
        monitor.set_targets(vec![a.clone(), a.clone()]);
        assert_eq!(monitor.statuses().len(), 1);
        assert_eq!(lock(&monitor.inner.tasks).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_task_cannot_record_into_the_new_generation() {
        let monitor = Monitor::new();
        let a = target("a", Duration::from_secs(3600));
        monitor.set_targets(vec![a.clone()]);
        let old = monitor.generation(&a.id).unwrap();
        monitor.set_targets(vec![Target {
            timeout: Duration::from_secs(1),
            ..a.clone()
        }]);
        let shared = &monitor.inner.shared;
        assert!(!shared.record(&a.id, old, Err("late".into()), a.thresholds, Duration::ZERO));
        assert_eq!(monitor.status(&a.id).unwrap().checks, 0);
    }

    #[test]
    fn target_id_displays_as_pool_slash_addr() {
        let id = TargetId::new("web", "[::1]:8080".parse().unwrap());
        assert_eq!(id.to_string(), "web/[::1]:8080");
    }
}
