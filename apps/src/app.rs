//! One supervised application: the shell around its [`Supervisor`]. A task of its own carries
//! out what the supervisor decides (spawn the program, kill it, report it failed) and feeds it
//! what happens (the role changed, the program exited, its checks rose or fell, a deadline
//! passed, an operator asked).
//!
//! The task owns the program: a kill runs the stop command (or SIGTERM to the process group)
//! and waits for the end before anything else happens, so a restart never has two copies
//! running and a stop here is over before the role is handed on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use runner::Process;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::checks::{Check, CheckRun, Verdict};
use crate::supervisor::{Action, Input, Policy, State, Supervisor};

/// After a stop command, how long SIGTERM to the group gets before SIGKILL, should the
/// program still run when `stop_timeout` has passed.
const TERM_GRACE_AFTER_STOP_COMMAND: Duration = Duration::from_secs(1);

/// One application as the daemon runs it. Changes reach the program at its next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub name: String,
    /// The program and its arguments (no shell), placeholders already filled in.
    pub start: Vec<String>,
    /// How to stop it; `None`: SIGTERM to its process group, SIGKILL after `stop_timeout`.
    pub stop: Option<Vec<String>>,
    /// Added to the daemon's environment for `start` and `stop`.
    pub env: Vec<(String, String)>,
    /// All must pass; none: healthy while it runs.
    pub checks: Vec<Check>,
    pub policy: Policy,
    /// How long a stop may take before the group is killed.
    pub stop_timeout: Duration,
    /// A reload that changes this spec restarts a running program at once, rather than at
    /// its next start.
    pub restart_on_change: bool,
}

/// What an operator asks of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Stop and start it again now (a failed one is enabled as well).
    Restart,
    /// Clear a failure or a disable; it starts if its role wants it.
    Enable,
    /// Stop it and keep it stopped until enabled.
    Disable,
}

impl Ask {
    fn input(self) -> Input {
        match self {
            Ask::Restart => Input::Restart,
            Ask::Enable => Input::Enable,
            Ask::Disable => Input::Disable,
        }
    }
}

/// Where an application stands, for `/status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    pub state: State,
    /// The program's pid while it runs.
    pub pid: Option<u32>,
    /// Restarts counted in the current window of the policy.
    pub restarts: usize,
    /// Restarts since the daemon started (for `/metrics`).
    pub restarts_total: u64,
    /// The latest reason it was unwell: a check's error, how the program ended, why it could
    /// not start. Kept after recovery, to show why it flapped.
    pub last_error: Option<String>,
    /// When it entered `state`.
    pub since: Instant,
    /// An operator disabled it.
    pub disabled: bool,
}

enum Message {
    Ask(Ask),
    Respec(Box<AppSpec>),
    Stop(oneshot::Sender<()>),
}

/// A running application's handle. Dropping it kills the program (its whole group) at once;
/// [`App::stop`] stops it in order.
pub struct App {
    spec: AppSpec,
    messages: mpsc::UnboundedSender<Message>,
    status: watch::Receiver<AppStatus>,
    failed: watch::Receiver<bool>,
    wanted: Arc<watch::Sender<bool>>,
    /// Copies the role input into `wanted`; replaced by [`App::follow`].
    follower: Option<JoinHandle<()>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl App {
    /// Starts supervising `spec`. Nothing runs until the role (see [`App::follow`]) says so.
    pub fn start(spec: AppSpec) -> Self {
        let (messages, inbox) = mpsc::unbounded_channel();
        let now = Instant::now();
        let (status_tx, status) = watch::channel(AppStatus {
            state: State::Stopped,
            pid: None,
            restarts: 0,
            restarts_total: 0,
            last_error: None,
            since: now,
            disabled: false,
        });
        let (failed_tx, failed) = watch::channel(false);
        let (wanted, wanted_rx) = watch::channel(false);
        let driver = Driver {
            supervisor: Supervisor::new(spec.policy.clone()),
            spec: spec.clone(),
            process: None,
            checks: None,
            started: now,
            status: status_tx,
            failed: failed_tx,
            restarts_total: 0,
            last_error: None,
            disabled: false,
        };
        let task = tokio::spawn(driver.run(wanted_rx, inbox));
        Self {
            spec,
            messages,
            status,
            failed,
            wanted: Arc::new(wanted),
            follower: None,
            task: Some(task),
        }
    }

    pub fn spec(&self) -> &AppSpec {
        &self.spec
    }

    pub fn status(&self) -> watch::Receiver<AppStatus> {
        self.status.clone()
    }

    /// `true` while the application is failed here: the role it is bound to must go.
    pub fn failed(&self) -> watch::Receiver<bool> {
        self.failed.clone()
    }

    /// From now on the application runs while `role` is `true`. When `role`'s sender goes,
    /// its last value stays in force.
    pub fn follow(&mut self, mut role: watch::Receiver<bool>) {
        if let Some(old) = self.follower.take() {
            old.abort();
        }
        let wanted = self.wanted.clone();
        self.follower = Some(tokio::spawn(async move {
            loop {
                let now = *role.borrow_and_update();
                wanted.send_if_modified(|w| std::mem::replace(w, now) != now);
                if role.changed().await.is_err() {
                    return;
                }
            }
        }));
    }

    pub fn ask(&self, ask: Ask) {
        let _ = self.messages.send(Message::Ask(ask));
    }

    /// Takes a changed spec: the program uses it from its next start (at once, when the new
    /// spec says `restart_on_change`); the restart policy applies at once.
    pub fn respec(&mut self, spec: AppSpec) {
        if spec != self.spec {
            self.spec = spec.clone();
            let _ = self.messages.send(Message::Respec(Box::new(spec)));
        }
    }

    /// Stops the program (as a role that says halt would) and ends the supervision.
    pub async fn stop(mut self) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        let (reply, done) = oneshot::channel();
        if self.messages.send(Message::Stop(reply)).is_ok() {
            let _ = done.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The application's task.
struct Driver {
    spec: AppSpec,
    supervisor: Supervisor,
    process: Option<Process>,
    checks: Option<(CheckRun, watch::Receiver<Verdict>)>,
    /// When the current program was spawned (or the last stop began).
    started: Instant,
    status: watch::Sender<AppStatus>,
    failed: watch::Sender<bool>,
    restarts_total: u64,
    last_error: Option<String>,
    disabled: bool,
}

impl Driver {
    async fn run(
        mut self,
        mut wanted: watch::Receiver<bool>,
        mut inbox: mpsc::UnboundedReceiver<Message>,
    ) {
        if *wanted.borrow_and_update() {
            self.feed(Input::Run, "the role says run").await;
        }
        loop {
            let deadline = self.supervisor.next_timeout();
            let (input, why) = tokio::select! {
                changed = wanted.changed() => {
                    if changed.is_err() {
                        // The handle is gone (dropped without stop): nothing can ask again.
                        self.feed(Input::Halt, "no longer supervised").await;
                        return;
                    }
                    if *wanted.borrow_and_update() {
                        (Input::Run, "the role says run".to_owned())
                    } else {
                        (Input::Halt, "the role says stop".to_owned())
                    }
                }
                status = exited(&mut self.process) => {
                    self.process = None;
                    let why = match status {
                        Ok(status) => format!("the program ended ({status})"),
                        Err(e) => format!("the program could not be waited for: {e}"),
                    };
                    self.last_error = Some(why.clone());
                    (Input::Exited, why)
                }
                verdict = checks_changed(&mut self.checks) => {
                    if verdict.last_error.is_some() {
                        self.last_error.clone_from(&verdict.last_error);
                    }
                    let why = match (&verdict.last_error, verdict.up) {
                        (_, true) => "its checks pass".to_owned(),
                        (Some(e), false) => format!("its checks fail: {e}"),
                        (None, false) => "its checks fail".to_owned(),
                    };
                    (Input::Checks(verdict.up), why)
                }
                () = sleep_until(deadline) => (Input::Timeout, self.timeout_reason()),
                message = inbox.recv() => match message {
                    None => {
                        self.feed(Input::Halt, "no longer supervised").await;
                        return;
                    }
                    Some(Message::Ask(ask)) => {
                        self.disabled = match ask {
                            Ask::Disable => true,
                            Ask::Enable => false,
                            Ask::Restart => self.disabled,
                        };
                        (ask.input(), format!("an operator asked: {}", ask_name(ask)))
                    }
                    Some(Message::Respec(spec)) => {
                        let restart = spec.restart_on_change
                            && matches!(self.supervisor.state(), State::Starting | State::Running);
                        self.supervisor.set_policy(spec.policy.clone());
                        self.spec = *spec;
                        if !restart {
                            self.publish();
                            continue;
                        }
                        (Input::Restart, "its config changed (restart_on_change)".to_owned())
                    }
                    Some(Message::Stop(reply)) => {
                        self.feed(Input::Halt, "the node stops").await;
                        let _ = reply.send(());
                        return;
                    }
                },
            };
            self.feed(input, &why).await;
        }
    }

    fn timeout_reason(&self) -> String {
        match self.supervisor.state() {
            State::Starting => format!(
                "its checks did not pass within start_timeout ({:?})",
                self.spec.policy.start_timeout
            ),
            State::Restarting => "its backoff ended".to_owned(),
            State::Failed => "reset_after passed".to_owned(),
            State::Stopped | State::Running => String::new(),
        }
    }

    /// Hands `input` to the supervisor and carries out its actions, and theirs in turn (a
    /// spawn that fails is an exit).
    async fn feed(&mut self, input: Input, why: &str) {
        let mut pending = VecDeque::from([(input, why.to_owned())]);
        while let Some((input, why)) = pending.pop_front() {
            let now = Instant::now();
            for action in self.supervisor.handle(now, input) {
                match action {
                    Action::Spawn => {
                        if let Some(next) = self.spawn() {
                            pending.push_back(next);
                        }
                    }
                    Action::Kill => self.kill().await,
                    Action::Failed(failed) => {
                        self.failed.send_replace(failed);
                    }
                    Action::Transition { from, to } => {
                        if to == State::Restarting {
                            self.restarts_total += 1;
                        }
                        self.log_transition(from, to, &why);
                    }
                }
            }
            self.publish();
        }
    }

    /// Starts the program and its checks; returns the input that follows at once, if any.
    fn spawn(&mut self) -> Option<(Input, String)> {
        self.started = Instant::now();
        match Process::spawn(&self.spec.name, &self.spec.start, &self.spec.env) {
            Ok(process) => {
                tracing::info!(app = %self.spec.name, pid = process.pid(), program = %self.spec.start[0], "started");
                self.process = Some(process);
                let (run, verdict) = CheckRun::start(&self.spec.checks);
                let up = verdict.borrow().up;
                self.checks = Some((run, verdict));
                up.then(|| (Input::Checks(true), "it runs (no checks)".to_owned()))
            }
            Err(e) => {
                let why = format!("cannot start: {e}");
                self.last_error = Some(why.clone());
                Some((Input::Exited, why))
            }
        }
    }

    /// Stops the program: its stop command, or SIGTERM to its group; SIGKILL to the group
    /// when it still runs after `stop_timeout`.
    async fn kill(&mut self) {
        self.checks = None;
        let Some(mut process) = self.process.take() else {
            return;
        };
        let began = Instant::now();
        let name = &self.spec.name;
        let grace = self.spec.stop_timeout;
        if let Some(stop) = &self.spec.stop {
            match runner::run_with_env(stop, &self.spec.env, grace).await {
                Ok(done) if !done.status.success() => {
                    tracing::warn!(app = %name, status = %done.status, "stop command failed");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(app = %name, "stop command: {e}"),
            }
            let left = grace.saturating_sub(began.elapsed());
            if tokio::time::timeout(left, process.exited()).await.is_err() {
                tracing::warn!(app = %name, ?grace, "still running after its stop command; sending SIGTERM to its process group");
                let _ = process.stop(TERM_GRACE_AFTER_STOP_COMMAND).await;
            }
        } else {
            let _ = process.stop(grace).await;
        }
        tracing::info!(app = %name, took_ms = began.elapsed().as_millis() as u64, "stopped");
    }

    fn log_transition(&self, from: State, to: State, why: &str) {
        let name = &self.spec.name;
        let (from, to_str) = (from.as_str(), to.as_str());
        match to {
            State::Failed => {
                tracing::error!(app = %name, from, to = to_str, restarts = self.supervisor.restarts(),
                "application failed here, out of restarts: {why}; it stays stopped until `tandem enable app {name}`{}",
                self.spec.policy.reset_after.map_or(String::new(), |r| format!(" or {r:?} pass")))
            }
            State::Restarting => {
                tracing::warn!(app = %name, from, to = to_str, restarts = self.supervisor.restarts(),
                "application restarting: {why}")
            }
            State::Running => tracing::info!(app = %name, from, to = to_str,
                after_ms = self.started.elapsed().as_millis() as u64, "application running: {why}"),
            State::Starting | State::Stopped => {
                tracing::info!(app = %name, from, to = to_str, "application {to_str}: {why}")
            }
        }
    }

    fn publish(&self) {
        let state = self.supervisor.state();
        let pid = self.process.as_ref().and_then(Process::pid);
        let restarts = self.supervisor.restarts();
        self.status.send_if_modified(|s| {
            let next = AppStatus {
                state,
                pid,
                restarts,
                restarts_total: self.restarts_total,
                last_error: self.last_error.clone(),
                since: if s.state == state {
                    s.since
                } else {
                    Instant::now()
                },
                disabled: self.disabled,
            };
            let changed = *s != next;
            *s = next;
            changed
        });
    }
}

fn ask_name(ask: Ask) -> &'static str {
    match ask {
        Ask::Restart => "restart",
        Ask::Enable => "enable",
        Ask::Disable => "disable",
    }
}

async fn exited(process: &mut Option<Process>) -> std::io::Result<std::process::ExitStatus> {
    match process {
        Some(p) => p.exited().await,
        None => std::future::pending().await,
    }
}

async fn checks_changed(checks: &mut Option<(CheckRun, watch::Receiver<Verdict>)>) -> Verdict {
    let Some((_, verdict)) = checks else {
        return std::future::pending().await;
    };
    if verdict.changed().await.is_err() {
        // The probes are gone (they live as long as the run): nothing more to hear.
        return std::future::pending().await;
    }
    verdict.borrow_and_update().clone()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn spec(script: &str, max_restarts: u32) -> AppSpec {
        AppSpec {
            name: "t".into(),
            start: vec!["sh".into(), "-c".into(), script.into()],
            stop: None,
            env: vec![("TANDEM_APP".into(), "t".into())],
            checks: Vec::new(),
            policy: Policy {
                max_restarts,
                within: Duration::from_secs(60),
                backoff: Duration::from_millis(20),
                backoff_max: Duration::from_millis(40),
                start_timeout: Duration::from_secs(5),
                reset_after: None,
            },
            stop_timeout: Duration::from_secs(2),
            restart_on_change: false,
        }
    }

    async fn wait(
        status: &mut watch::Receiver<AppStatus>,
        what: &str,
        f: impl FnMut(&AppStatus) -> bool,
    ) -> AppStatus {
        tokio::time::timeout(T, status.wait_for(f))
            .await
            .unwrap_or_else(|_| panic!("{what} within {T:?}"))
            .expect("the app task runs")
            .clone()
    }

    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    }

    #[tokio::test]
    async fn it_runs_only_while_the_role_says_so() {
        let mut app = App::start(spec("exec sleep 30", 3));
        let mut status = app.status();
        assert_eq!(status.borrow().state, State::Stopped);
        let (role, rx) = watch::channel(true);
        app.follow(rx);
        let running = wait(&mut status, "running", |s| s.state == State::Running).await;
        let pid = running.pid.expect("a pid while it runs");
        assert!(alive(pid));
        role.send_replace(false);
        wait(&mut status, "stopped", |s| s.state == State::Stopped).await;
        assert!(!alive(pid), "the program {pid} was stopped");
        assert!(!*app.failed().borrow(), "a halt is no failure");
        app.stop().await;
    }

    #[tokio::test]
    async fn a_program_that_keeps_dying_is_restarted_then_failed_until_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let script = format!("echo run >> {}; exit 3", runs.display());
        let mut app = App::start(spec(&script, 2));
        let mut status = app.status();
        let mut failed = app.failed();
        let (_role, rx) = watch::channel(true);
        app.follow(rx);
        let s = wait(&mut status, "failed", |s| s.state == State::Failed).await;
        assert!(*failed.borrow_and_update());
        assert_eq!(s.restarts_total, 2);
        assert!(
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("exit status: 3")),
            "{s:?}"
        );
        let count = || std::fs::read_to_string(&runs).unwrap().lines().count();
        assert_eq!(count(), 3, "the first run and two restarts");
        app.ask(Ask::Enable);
        tokio::time::timeout(T, failed.wait_for(|f| !f))
            .await
            .unwrap()
            .unwrap();
        wait(&mut status, "failed again", |s| {
            s.state == State::Failed && count() == 6
        })
        .await;
        app.stop().await;
    }

    #[tokio::test]
    async fn a_stop_command_gets_the_environment_and_disable_keeps_it_down() {
        let dir = tempfile::tempdir().unwrap();
        let said = dir.path().join("stop");
        let mut s = spec("exec sleep 30", 3);
        s.stop = Some(vec![
            "sh".into(),
            "-c".into(),
            format!("echo $TANDEM_APP > {}", said.display()),
        ]);
        s.stop_timeout = Duration::from_millis(500);
        let mut app = App::start(s);
        let mut status = app.status();
        let (_role, rx) = watch::channel(true);
        app.follow(rx);
        let pid = wait(&mut status, "running", |s| s.state == State::Running)
            .await
            .pid
            .unwrap();
        app.ask(Ask::Disable);
        let s = wait(&mut status, "stopped", |s| s.state == State::Stopped).await;
        assert!(s.disabled);
        assert_eq!(
            std::fs::read_to_string(&said).unwrap(),
            "t\n",
            "the stop command ran with TANDEM_APP"
        );
        // The stop command did not end the program: after stop_timeout the group had SIGTERM.
        assert!(!alive(pid));
        app.ask(Ask::Restart);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            status.borrow().state,
            State::Stopped,
            "a disabled app stays stopped"
        );
        app.ask(Ask::Enable);
        let again = wait(&mut status, "running again", |s| s.state == State::Running).await;
        assert_ne!(again.pid, Some(pid));
        app.stop().await;
    }
}
