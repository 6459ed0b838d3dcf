//! The monitor end to end. Exact timing runs on paused time with a pid-file check (whose only
//! I/O is a blocking read that holds paused time still); the socket tests use real time with
//! short intervals, every wait bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use healthcheck::{CheckSpec, Monitor, ProcessTarget, Target, TargetId, Thresholds, Transition};
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// Bound on any wait for a transition (virtual time in paused tests, real time otherwise).
const LIMIT: Duration = Duration::from_secs(60);
const REAL_LIMIT: Duration = Duration::from_secs(5);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A pid file whose check passes (it holds our own pid) or fails (it holds no pid).
struct PidFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PidFile {
    fn new(alive: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.pid");
        let file = Self { _dir: dir, path };
        file.set(alive);
        file
    }

    fn set(&self, alive: bool) {
        let text = if alive {
            std::process::id().to_string()
        } else {
            "gone".to_owned()
        };
        std::fs::write(&self.path, text).unwrap();
    }

    fn spec(&self) -> CheckSpec {
        pid_spec(&self.path)
    }
}

fn pid_spec(path: &Path) -> CheckSpec {
    CheckSpec::Process {
        target: ProcessTarget::PidFile(path.to_owned()),
    }
}

fn target(
    id: &TargetId,
    spec: CheckSpec,
    interval: Duration,
    rise: u32,
    fall: u32,
    start_up: bool,
) -> Target {
    Target {
        id: id.clone(),
        spec,
        interval,
        timeout: interval / 2,
        thresholds: Thresholds { rise, fall },
        start_up,
    }
}

async fn next(rx: &mut broadcast::Receiver<Transition>, limit: Duration) -> Transition {
    timeout(limit, rx.recv())
        .await
        .expect("no transition in time")
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn goes_down_on_the_fall_th_failure_and_up_on_the_rise_th_success() {
    let pid = PidFile::new(false);
    let id = TargetId::new("web", addr(8080));
    let monitor = Monitor::new();
    let mut rx = monitor.subscribe();
    let start = Instant::now();
    monitor.set_targets(vec![target(
        &id,
        pid.spec(),
        Duration::from_secs(1),
        2,
        3,
        true,
    )]);

    let down = next(&mut rx, LIMIT).await;
    assert_eq!((&down.id, down.up), (&id, false));
    assert!(down.reason.contains("holds no pid"), "{}", down.reason);
    // First probe after a jitter in [0, 1s), then one per second: the third starts in
    // [2s, 3s). A pid-file probe runs on a blocking thread, and while the runtime waits for it
    // paused time may run on, as far as the probe's timeout (half the interval): so it may
    // end up to 0.5 s later. Which probe it was, the counts below say exactly.
    let took = down.at - start;
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(3500),
        "{took:?}"
    );
    let status = monitor.status(&id).unwrap();
    assert_eq!(
        (status.up, status.checks, status.consecutive_fail),
        (false, 3, 3)
    );
    assert_eq!(status.last_change, Some(down.at));

    pid.set(true);
    let up = next(&mut rx, LIMIT).await;
    assert!(up.up);
    // Two probes later (rise 2), each of which may end up to half an interval late (above).
    let took = up.at - down.at;
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_millis(2500),
        "{took:?}"
    );
    assert_eq!(monitor.transitions_total(), 2);
    let status = monitor.status(&id).unwrap();
    assert_eq!(
        (status.up, status.checks),
        (true, 5),
        "up on the second success"
    );
    assert!(
        status.last_error.unwrap().contains("holds no pid"),
        "last error kept"
    );
}

#[tokio::test(start_paused = true)]
async fn start_up_false_targets_start_down_without_a_transition() {
    let pid = PidFile::new(true);
    let id = TargetId::new("web", addr(8080));
    let monitor = Monitor::new();
    let mut rx = monitor.subscribe();
    monitor.set_targets(vec![target(
        &id,
        pid.spec(),
        Duration::from_secs(1),
        2,
        3,
        false,
    )]);
    assert!(!monitor.status(&id).unwrap().up);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert!(next(&mut rx, LIMIT).await.up);
}

#[tokio::test(start_paused = true)]
async fn eject_goes_down_at_once_and_only_rise_probes_bring_it_back() {
    let pid = PidFile::new(true);
    let id = TargetId::new("web", addr(8080));
    let monitor = Monitor::new();
    let mut rx = monitor.subscribe();
    monitor.set_targets(vec![target(
        &id,
        pid.spec(),
        Duration::from_secs(1),
        2,
        3,
        true,
    )]);

    monitor.eject(&id, "3 connects failed in a row");
    let down = rx.try_recv().expect("published at once");
    assert_eq!(
        (down.up, down.reason.as_str()),
        (false, "3 connects failed in a row")
    );
    assert!(!monitor.status(&id).unwrap().up);
    // Already down: a second ejection publishes nothing.
    monitor.eject(&id, "again");
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    // Unknown targets are ignored.
    monitor.eject(&TargetId::new("other", addr(1)), "x");

    let up = next(&mut rx, LIMIT).await;
    assert!(up.up);
    let status = monitor.status(&id).unwrap();
    assert_eq!(
        (status.checks, status.consecutive_ok),
        (2, 2),
        "exactly rise probes"
    );
    assert_eq!(monitor.transitions_total(), 2);
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_health_for_unchanged_and_changed_targets() {
    let pid = PidFile::new(true);
    let other = PidFile::new(true);
    let a = TargetId::new("web", addr(8080));
    let b = TargetId::new("web", addr(8081));
    let monitor = Monitor::new();
    let mut rx = monitor.subscribe();
    let ta = target(&a, pid.spec(), Duration::from_secs(1), 1, 3, false);
    let tb = target(&b, pid.spec(), Duration::from_secs(1), 1, 3, false);
    monitor.set_targets(vec![ta.clone(), tb.clone()]);
    for _ in 0..2 {
        assert!(next(&mut rx, LIMIT).await.up);
    }
    let before_a = monitor.status(&a).unwrap();

    // Same list: nothing changes, not even the counters.
    monitor.set_targets(vec![ta.clone(), tb.clone()]);
    assert_eq!(monitor.status(&a).unwrap(), before_a);

    // b changes check and interval; both were up and stay up: a reload never resets health
    // (b's start_up = false is not applied again).
    let tb2 = Target {
        spec: other.spec(),
        interval: Duration::from_secs(2),
        ..tb
    };
    let before_b = monitor.status(&b).unwrap();
    monitor.set_targets(vec![ta, tb2]);
    let after_b = monitor.status(&b).unwrap();
    assert_eq!(after_b, before_b);

    sleep(Duration::from_secs(10)).await;
    let after_b = monitor.status(&b).unwrap();
    assert!(after_b.up);
    assert!(
        after_b.checks >= before_b.checks + 4,
        "{} then {}",
        before_b.checks,
        after_b.checks
    );
    assert!(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "no flap on reload"
    );
    assert_eq!(
        monitor
            .statuses()
            .iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        [&a, &b]
    );
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_target_keeps_its_schedule_across_reloads() {
    let pid = PidFile::new(true);
    let id = TargetId::new("web", addr(8080));
    let monitor = Monitor::new();
    let mut rx = monitor.subscribe();
    let t = target(&id, pid.spec(), Duration::from_secs(10), 1, 1, false);
    monitor.set_targets(vec![t.clone()]);
    let first = next(&mut rx, LIMIT).await.at;

    monitor.set_targets(vec![t]);
    // Until the second probe is in. It may end up to its timeout (5 s) after it started: it
    // runs on a blocking thread, and paused time runs on while the runtime waits for it.
    let deadline = first + Duration::from_secs(20);
    while monitor.status(&id).unwrap().checks < 2 && Instant::now() < deadline {
        sleep(Duration::from_millis(1)).await;
    }
    // A restarted schedule would have drawn a new jitter in [0, 10s) from the reload, just
    // after the first probe: its probe would come before the kept schedule's, 10 s after it.
    let status = monitor.status(&id).unwrap();
    assert_eq!(status.checks, 2);
    let gap = status.last_check.unwrap() - first;
    assert!(
        gap >= Duration::from_secs(10) && gap <= Duration::from_secs(15),
        "{gap:?}"
    );
}

/// A real loopback listener that counts the connections it accepts.
struct Backend {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepts);
        // Ends when the task is aborted (which also closes the listener) or the test ends.
        let task = tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            addr,
            accepts,
            task,
        }
    }

    fn spec(&self) -> CheckSpec {
        CheckSpec::Tcp {
            addr: self.addr,
            send: None,
            expect: None,
        }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until at least `n` probes have connected.
    async fn wait_accepts(&self, n: usize) {
        let deadline = Instant::now() + REAL_LIMIT;
        while self.accepts() < n {
            assert!(
                Instant::now() < deadline,
                "only {} probes arrived",
                self.accepts()
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
}

const FAST: Duration = Duration::from_millis(50);

#[tokio::test]
async fn tcp_target_follows_a_real_listener_up_and_down() {
    let backend = Backend::start().await;
    let id = TargetId::new("db", backend.addr);
    let monitor = Monitor::new();
    let mut rx = monitor.subscribe();
    monitor.set_targets(vec![target(&id, backend.spec(), FAST, 2, 2, false)]);

    let up = next(&mut rx, REAL_LIMIT).await;
    assert!(up.up, "{up:?}");
    assert!(backend.accepts() >= 2);

    backend.task.abort();
    let _ = backend.task.await; // the listener is closed once the task is gone
    let down = next(&mut rx, REAL_LIMIT).await;
    assert!(!down.up);
    assert!(down.reason.starts_with("connect failed"), "{}", down.reason);
    assert_eq!(monitor.transitions_total(), 2);
}

#[tokio::test]
async fn removed_targets_stop_probing() {
    let backend = Backend::start().await;
    let id = TargetId::new("db", backend.addr);
    let monitor = Monitor::new();
    monitor.set_targets(vec![target(&id, backend.spec(), FAST, 1, 1, true)]);
    backend.wait_accepts(2).await;

    monitor.set_targets(Vec::new());
    assert_eq!(monitor.status(&id), None);
    assert!(monitor.statuses().is_empty());
    sleep(Duration::from_millis(100)).await; // a connection already under way may still land
    let settled = backend.accepts();
    sleep(FAST * 6).await;
    assert_eq!(backend.accepts(), settled, "probes continued after removal");
}

#[tokio::test]
async fn dropping_the_last_monitor_handle_stops_probing() {
    let backend = Backend::start().await;
    let id = TargetId::new("db", backend.addr);
    let monitor = Monitor::new();
    let clone = monitor.clone();
    monitor.set_targets(vec![target(&id, backend.spec(), FAST, 1, 1, true)]);
    backend.wait_accepts(2).await;
    drop(monitor);
    backend.wait_accepts(3).await; // the clone still runs it
    drop(clone);
    sleep(Duration::from_millis(100)).await;
    let settled = backend.accepts();
    sleep(FAST * 6).await;
    assert_eq!(
        backend.accepts(),
        settled,
        "probes continued after the monitor was dropped"
    );
}
