//! The supervisor fed by hand on a fake clock: every rule of the module doc, and a property
//! test that no input sequence makes it spawn a second copy or kill what is not running.

use proptest::prelude::*;

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn policy() -> Policy {
    Policy {
        max_restarts: 3,
        within: SEC * 60,
        backoff: SEC,
        backoff_max: SEC * 4,
        start_timeout: SEC * 10,
        reset_after: None,
    }
}

fn transition(from: State, to: State) -> Action {
    Action::Transition { from, to }
}

/// A supervisor told to run at `t0`, whose first start passed its checks.
fn running(policy: Policy, t0: Instant) -> Supervisor {
    let mut s = Supervisor::new(policy);
    s.handle(t0, Input::Run);
    s.handle(t0, Input::Checks(true));
    assert_eq!(s.state(), State::Running);
    s
}

/// Crashes the running application at `at` and lets its backoff pass: returns when it is
/// starting again.
fn crash_and_restart(s: &mut Supervisor, at: Instant) -> Instant {
    s.handle(at, Input::Exited);
    assert_eq!(s.state(), State::Restarting);
    let due = s.next_timeout().expect("a backoff deadline");
    assert_eq!(s.handle(due, Input::Timeout)[0], Action::Spawn);
    s.handle(due, Input::Checks(true));
    due
}

#[test]
fn the_role_starts_it_and_its_checks_make_it_running() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(policy());
    assert_eq!(
        s.handle(t0, Input::Run),
        [Action::Spawn, transition(State::Stopped, State::Starting)]
    );
    assert_eq!(s.next_timeout(), Some(t0 + SEC * 10), "the start's grace");
    assert_eq!(
        s.handle(t0 + SEC, Input::Checks(true)),
        [transition(State::Starting, State::Running)]
    );
    assert_eq!(s.next_timeout(), None);
}

#[test]
fn a_crash_restarts_it_after_a_backoff_that_doubles_up_to_its_cap() {
    let t0 = Instant::now();
    let mut s = running(policy(), t0);
    let mut pauses = Vec::new();
    let mut at = t0 + SEC;
    for _ in 0..3 {
        s.handle(at, Input::Exited);
        let due = s.next_timeout().unwrap();
        pauses.push(due - at);
        // Nothing happens before the backoff ends.
        assert_eq!(s.handle(due - Duration::from_millis(1), Input::Timeout), []);
        assert_eq!(
            s.handle(due, Input::Timeout),
            [
                Action::Spawn,
                transition(State::Restarting, State::Starting)
            ]
        );
        s.handle(due, Input::Checks(true));
        at = due + SEC;
    }
    assert_eq!(pauses, [SEC, SEC * 2, SEC * 4]);
}

#[test]
fn falling_checks_kill_the_process_before_the_restart() {
    let t0 = Instant::now();
    let mut s = running(policy(), t0);
    assert_eq!(
        s.handle(t0 + SEC, Input::Checks(false)),
        [Action::Kill, transition(State::Running, State::Restarting)]
    );
    // The exit the kill causes is not a second failure.
    assert_eq!(s.handle(t0 + SEC, Input::Exited), []);
    assert_eq!(s.restarts(), 1);
}

#[test]
fn a_start_that_never_passes_its_checks_counts_as_a_failure() {
    let t0 = Instant::now();
    let mut s = Supervisor::new(policy());
    s.handle(t0, Input::Run);
    // Failing checks while it starts are expected.
    assert_eq!(s.handle(t0 + SEC, Input::Checks(false)), []);
    assert_eq!(
        s.handle(t0 + SEC * 10, Input::Timeout),
        [Action::Kill, transition(State::Starting, State::Restarting)]
    );
}

#[test]
fn out_of_restarts_it_fails_here_stays_stopped_and_says_so_once() {
    let t0 = Instant::now();
    let mut s = running(policy(), t0);
    let mut at = t0 + SEC;
    for _ in 0..3 {
        at = crash_and_restart(&mut s, at) + SEC;
    }
    assert_eq!(
        s.handle(at, Input::Exited),
        [
            Action::Failed(true),
            transition(State::Running, State::Failed)
        ]
    );
    assert_eq!(s.next_timeout(), None, "no reset_after: only an operator");
    // The role changing, a stray exit or time passing start nothing.
    for input in [
        Input::Run,
        Input::Exited,
        Input::Checks(true),
        Input::Timeout,
    ] {
        assert_eq!(s.handle(at + SEC * 3600, input), [], "{input:?}");
    }
    assert_eq!(s.handle(at, Input::Halt), []);
    assert_eq!(s.state(), State::Failed);
}

#[test]
fn zero_restarts_fails_over_on_the_first_failure() {
    let t0 = Instant::now();
    let mut s = running(
        Policy {
            max_restarts: 0,
            ..policy()
        },
        t0,
    );
    assert_eq!(
        s.handle(t0 + SEC, Input::Checks(false)),
        [
            Action::Kill,
            Action::Failed(true),
            transition(State::Running, State::Failed)
        ]
    );
}

#[test]
fn restarts_older_than_the_window_are_forgotten() {
    let t0 = Instant::now();
    let mut s = running(policy(), t0);
    let mut at = t0 + SEC;
    for _ in 0..3 {
        at = crash_and_restart(&mut s, at) + SEC;
    }
    // A minute after the first restart, it no longer counts: this crash is restart 3 of 3.
    let later = t0 + SEC * 61;
    s.handle(later, Input::Exited);
    assert_eq!(s.state(), State::Restarting);
    assert_eq!(s.restarts(), 3);
}

#[test]
fn a_long_healthy_run_starts_the_next_backoff_afresh() {
    let t0 = Instant::now();
    let mut s = running(policy(), t0);
    let due = crash_and_restart(&mut s, t0 + SEC);
    let due = crash_and_restart(&mut s, due + SEC);
    // Ran for the whole window since its last start: the next pause is the first one again.
    let at = due + SEC * 60;
    s.handle(at, Input::Exited);
    assert_eq!(s.next_timeout(), Some(at + SEC));
}

#[test]
fn enable_clears_the_failure_and_starts_it_if_the_role_wants_it() {
    let t0 = Instant::now();
    let mut s = running(
        Policy {
            max_restarts: 0,
            ..policy()
        },
        t0,
    );
    s.handle(t0 + SEC, Input::Exited);
    assert_eq!(
        s.handle(t0 + SEC * 2, Input::Enable),
        [
            Action::Failed(false),
            transition(State::Failed, State::Stopped),
            Action::Spawn,
            transition(State::Stopped, State::Starting)
        ]
    );
    // Enabled while the role says halt: usable again, but not started.
    s.handle(t0 + SEC * 3, Input::Checks(true));
    s.handle(t0 + SEC * 4, Input::Exited);
    s.handle(t0 + SEC * 5, Input::Halt);
    assert_eq!(
        s.handle(t0 + SEC * 6, Input::Enable),
        [
            Action::Failed(false),
            transition(State::Failed, State::Stopped)
        ]
    );
}

#[test]
fn reset_after_enables_a_failed_application_by_itself() {
    let t0 = Instant::now();
    let mut s = running(
        Policy {
            max_restarts: 0,
            reset_after: Some(SEC * 300),
            ..policy()
        },
        t0,
    );
    s.handle(t0 + SEC, Input::Exited);
    assert_eq!(s.next_timeout(), Some(t0 + SEC * 301));
    let actions = s.handle(t0 + SEC * 301, Input::Timeout);
    assert_eq!(actions[0], Action::Failed(false));
    assert!(actions.contains(&Action::Spawn), "{actions:?}");
}

#[test]
fn halt_stops_it_without_counting_a_failure() {
    let t0 = Instant::now();
    let mut s = running(policy(), t0);
    assert_eq!(
        s.handle(t0 + SEC, Input::Halt),
        [Action::Kill, transition(State::Running, State::Stopped)]
    );
    assert_eq!(s.handle(t0 + SEC, Input::Exited), []);
    assert_eq!(s.restarts(), 0);
    // Halted during a backoff: the pending restart is off.
    let mut s = running(policy(), t0);
    s.handle(t0 + SEC, Input::Exited);
    assert_eq!(
        s.handle(t0 + SEC, Input::Halt),
        [transition(State::Restarting, State::Stopped)]
    );
    assert_eq!(s.handle(t0 + SEC * 60, Input::Timeout), []);
}

#[test]
fn disable_keeps_it_stopped_and_out_of_the_role_decision_until_enabled() {
    let t0 = Instant::now();
    let mut s = running(
        Policy {
            max_restarts: 0,
            ..policy()
        },
        t0,
    );
    s.handle(t0 + SEC, Input::Exited);
    assert_eq!(
        s.handle(t0 + SEC, Input::Disable),
        [
            Action::Failed(false),
            transition(State::Failed, State::Stopped)
        ]
    );
    assert_eq!(
        s.handle(t0 + SEC * 2, Input::Run),
        [],
        "disabled: the role cannot start it"
    );
    assert_eq!(
        s.handle(t0 + SEC * 3, Input::Enable),
        [Action::Spawn, transition(State::Stopped, State::Starting)]
    );
}

#[test]
fn an_operator_restart_does_not_count_against_the_limit() {
    let t0 = Instant::now();
    let mut s = running(policy(), t0);
    assert_eq!(
        s.handle(t0 + SEC, Input::Restart),
        [
            Action::Kill,
            Action::Spawn,
            transition(State::Running, State::Starting)
        ]
    );
    assert_eq!(s.restarts(), 0);
}

fn any_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Run),
        Just(Input::Halt),
        Just(Input::Exited),
        any::<bool>().prop_map(Input::Checks),
        Just(Input::Timeout),
        Just(Input::Restart),
        Just(Input::Enable),
        Just(Input::Disable),
    ]
}

/// What the daemon's shell would see of the actions: whether a copy runs, whether a failure
/// is reported.
#[derive(Default)]
struct Shell {
    running: bool,
    failed: bool,
}

impl Shell {
    fn carry_out(&mut self, actions: Vec<Action>) -> Result<(), TestCaseError> {
        for action in actions {
            match action {
                Action::Spawn => {
                    prop_assert!(!self.running, "spawned a second copy");
                    self.running = true;
                }
                Action::Kill => {
                    prop_assert!(self.running, "killed nothing");
                    self.running = false;
                }
                Action::Failed(f) => {
                    prop_assert_ne!(f, self.failed, "failure reported twice or cleared twice");
                    self.failed = f;
                }
                Action::Transition { from, to } => prop_assert_ne!(from, to),
            }
        }
        Ok(())
    }
}

proptest! {
    /// Whatever happens, driven as the daemon drives it (each deadline served when due):
    /// never two copies (a spawn only when none runs), never a kill of nothing,
    /// `Failed(true)` and `Failed(false)` alternate starting with `true`, the state is
    /// `Failed` exactly between them, and a copy runs exactly while starting or running.
    #[test]
    fn no_sequence_runs_two_copies_or_reports_a_failure_twice(
        steps in proptest::collection::vec((any_input(), 0u64..20_000), 0..200),
        max_restarts in 0u32..4,
        reset in any::<bool>(),
    ) {
        let reset_after = reset.then_some(SEC * 30);
        let mut s = Supervisor::new(Policy { max_restarts, reset_after, ..policy() });
        let mut now = Instant::now();
        let mut shell = Shell::default();
        for (input, advance_ms) in steps {
            now += Duration::from_millis(advance_ms);
            while let Some(due) = s.next_timeout().filter(|&d| d <= now) {
                shell.carry_out(s.handle(due, Input::Timeout))?;
                prop_assert_ne!(s.next_timeout(), Some(due), "a deadline served twice");
            }
            // A process can only exit if one runs; the shell reports no other.
            if input == Input::Exited {
                if !shell.running {
                    continue;
                }
                shell.running = false;
            }
            shell.carry_out(s.handle(now, input))?;
            prop_assert_eq!(s.state() == State::Failed, shell.failed);
            let runs = matches!(s.state(), State::Starting | State::Running);
            prop_assert_eq!(runs, shell.running, "state {:?}", s.state());
        }
    }
}
