//! One application's supervisor: a pure state machine over the inputs the daemon sees (the
//! role says run or halt, the process exited, its checks rose or fell, an operator asked) and
//! the time, returning the actions to carry out (spawn, kill, report failed or usable again).
//!
//! The rules, as operators of keepalived + systemd or of cluster products expect them:
//! - a process that exits, whose checks fall, or that does not pass its checks within
//!   `start_timeout` of starting, is a failure: it is killed (its whole process group) and
//!   started again after a backoff that doubles with each restart, up to `backoff_max`;
//! - at most `max_restarts` restarts within `within`; the next failure leaves the application
//!   failed here: it stays stopped, and the daemon gives up the primary role so the peer starts
//!   its copy, until an operator enables it again or `reset_after` passes;
//! - an application that ran for `within` without failing starts its next backoff afresh;
//! - when the role says halt (this node became backup, went to fault or stops), a running
//!   application is stopped and no failure is counted.
//!
//! No clock is read here: `now` is an argument, and [`Supervisor::next_timeout`] says when to
//! call again with [`Input::Timeout`].

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How hard to try before giving up on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Restarts allowed within `within`; the failure after them leaves the application failed.
    /// Zero: the first failure does.
    pub max_restarts: u32,
    pub within: Duration,
    /// Pause before the first restart; each further restart doubles it.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// How long a start may take to pass its checks.
    pub start_timeout: Duration,
    /// A failed application is enabled again by itself after this; `None`: only by an
    /// operator.
    pub reset_after: Option<Duration>,
}

/// Where an application stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running, and not meant to (the role says halt, or an operator disabled it).
    Stopped,
    /// Spawned; its checks have not passed yet.
    Starting,
    /// Its checks pass.
    Running,
    /// Failed and stopped; spawned again when its backoff ends.
    Restarting,
    /// Out of restarts: stopped here until enabled again.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Failed => "failed",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The role says the application should run on this node.
    Run,
    /// The role says it should not (backup, fault, shutdown).
    Halt,
    /// The process ended (by itself, or as a [`Action::Kill`] asked).
    Exited,
    /// Its checks rose (`true`) or fell (`false`).
    Checks(bool),
    /// The deadline [`Supervisor::next_timeout`] gave has passed.
    Timeout,
    /// An operator asks for a restart now (not counted against `max_restarts`).
    Restart,
    /// An operator enables it again: after a failure (its cause fixed) or a disable.
    Enable,
    /// An operator stops it and keeps it stopped, failure or not, until enabled.
    Disable,
}

/// What the daemon must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the program, in a process group of its own.
    Spawn,
    /// Stop the program: its stop command, or SIGTERM to its group and SIGKILL after a grace.
    Kill,
    /// The application failed here (`true`): give up the primary role it is bound to. Or it
    /// may run here again (`false`): the role may come back.
    Failed(bool),
    Transition {
        from: State,
        to: State,
    },
}

/// The supervisor of one application.
#[derive(Debug, Clone)]
pub struct Supervisor {
    policy: Policy,
    state: State,
    /// The role says run.
    wanted: bool,
    /// An operator disabled it.
    disabled: bool,
    /// A process of ours is running (spawned, and neither exited nor killed).
    alive: bool,
    /// When each counted restart happened, oldest first, within `within` of the last failure.
    restarts: VecDeque<Instant>,
    /// The pause before the next restart.
    backoff: Duration,
    /// When the current run's checks first passed.
    running_since: Option<Instant>,
    /// The end of a start's grace, of a backoff, or of a failure (`reset_after`).
    deadline: Option<Instant>,
}

impl Supervisor {
    pub fn new(policy: Policy) -> Self {
        let backoff = policy.backoff;
        Self {
            policy,
            state: State::Stopped,
            wanted: false,
            disabled: false,
            alive: false,
            restarts: VecDeque::new(),
            backoff,
            running_since: None,
            deadline: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Takes a new policy (a reload): restarts counted so far still count; the next backoff
    /// is no longer than the new maximum.
    pub fn set_policy(&mut self, policy: Policy) {
        self.backoff = self
            .backoff
            .clamp(policy.backoff, policy.backoff_max.max(policy.backoff));
        self.policy = policy;
    }

    /// Restarts counted within the current window.
    pub fn restarts(&self) -> usize {
        self.restarts.len()
    }

    /// When to call [`Supervisor::handle`] with [`Input::Timeout`].
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes one input at `now` and returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Run => {
                self.wanted = true;
                if self.state == State::Stopped && !self.disabled {
                    self.start(now, &mut out);
                }
            }
            Input::Halt => {
                self.wanted = false;
                if matches!(
                    self.state,
                    State::Starting | State::Running | State::Restarting
                ) {
                    self.kill(&mut out);
                    self.deadline = None;
                    self.enter(State::Stopped, &mut out);
                }
            }
            Input::Exited => {
                // An exit we asked for (a kill) is no failure.
                if std::mem::take(&mut self.alive)
                    && matches!(self.state, State::Starting | State::Running)
                {
                    self.fail(now, &mut out);
                }
            }
            Input::Checks(up) => match (self.state, up) {
                (State::Starting, true) => {
                    self.running_since = Some(now);
                    self.deadline = None;
                    self.enter(State::Running, &mut out);
                }
                (State::Running, false) => self.fail(now, &mut out),
                // Checks still failing while it starts are what `start_timeout` is for.
                _ => {}
            },
            Input::Timeout => {
                if self.deadline.is_some_and(|d| d <= now) {
                    self.deadline = None;
                    match self.state {
                        State::Restarting => self.start(now, &mut out),
                        // Never passed its checks in time.
                        State::Starting => self.fail(now, &mut out),
                        State::Failed => self.enable(now, &mut out),
                        State::Stopped | State::Running => {}
                    }
                }
            }
            Input::Restart => match self.state {
                State::Starting | State::Running | State::Restarting => {
                    self.kill(&mut out);
                    self.start(now, &mut out);
                }
                State::Failed => self.enable(now, &mut out),
                State::Stopped => {}
            },
            Input::Enable => {
                self.disabled = false;
                self.enable(now, &mut out);
            }
            Input::Disable => {
                self.disabled = true;
                self.kill(&mut out);
                self.deadline = None;
                if self.state == State::Failed {
                    // Taken out of supervision: no longer a reason to give the role up.
                    out.push(Action::Failed(false));
                }
                self.enter(State::Stopped, &mut out);
            }
        }
        out
    }

    /// Clears a failure and starts again if the role wants it.
    fn enable(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Failed {
            self.restarts.clear();
            self.backoff = self.policy.backoff;
            self.deadline = None;
            out.push(Action::Failed(false));
            self.enter(State::Stopped, out);
        }
        if self.state == State::Stopped && self.wanted && !self.disabled {
            self.start(now, out);
        }
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Spawn);
        self.alive = true;
        self.running_since = None;
        self.deadline = Some(now + self.policy.start_timeout);
        self.enter(State::Starting, out);
    }

    fn kill(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.alive) {
            out.push(Action::Kill);
        }
    }

    /// A run failed: restart after the backoff, or give up here.
    fn fail(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.kill(out);
        let window = self.policy.within;
        if self
            .running_since
            .is_some_and(|since| now - since >= window)
        {
            // It ran long enough to call the earlier trouble over.
            self.backoff = self.policy.backoff;
        }
        self.running_since = None;
        while self
            .restarts
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= window)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() < self.policy.max_restarts as usize {
            self.restarts.push_back(now);
            self.deadline = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(self.policy.backoff_max);
            self.enter(State::Restarting, out);
        } else {
            self.deadline = self.policy.reset_after.map(|after| now + after);
            out.push(Action::Failed(true));
            self.enter(State::Failed, out);
        }
    }

    fn enter(&mut self, to: State, out: &mut Vec<Action>) {
        if self.state != to {
            out.push(Action::Transition {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }
}

#[cfg(test)]
mod tests;
