use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Drives a refusal that never lifts for `rounds` retries; returns the waits between them and
/// how many times it was said.
fn refused_again_and_again(trouble: Trouble, rounds: usize) -> (Vec<Duration>, usize) {
    let t0 = Instant::now();
    let mut fault = HostFault::default();
    let mut said = usize::from(fault.failed(t0, trouble));
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..rounds {
        let due = fault.next_retry().expect("a retry is scheduled");
        assert_eq!(
            fault.due(due - Duration::from_millis(1)),
            None,
            "not before it is due"
        );
        assert!(fault.is_faulty(), "FAULT while waiting");
        assert_eq!(fault.due(due), Some(Retry::Probe));
        assert!(fault.is_faulty(), "FAULT while the probe runs");
        waits.push(due - now);
        now = due;
        said += usize::from(fault.failed(now, trouble));
    }
    (waits, said)
}

#[test]
fn a_refusal_holds_fault_is_said_once_and_is_probed_on_a_doubling_backoff() {
    for trouble in [Trouble::AddressesDenied, Trouble::SocketsDenied] {
        let (waits, said) = refused_again_and_again(trouble, 9);
        assert_eq!(said, 1, "{trouble:?}: said once, not on every probe");
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 30, 30, 30, 30].map(secs),
            "{trouble:?}: from RETRY_FIRST, doubling, capped at RETRY_MAX"
        );
    }
}

#[test]
fn a_passed_probe_lifts_the_fault_and_a_later_refusal_is_said_again() {
    let t0 = Instant::now();
    let mut fault = HostFault::default();
    assert!(fault.failed(t0, Trouble::AddressesDenied));
    assert_eq!(fault.due(t0 + secs(1)), Some(Retry::Probe));
    assert_eq!(fault.lifted(), Some(Trouble::AddressesDenied));
    assert!(!fault.is_faulty());
    assert_eq!(fault.next_retry(), None);
    assert_eq!(fault.due(t0 + secs(100)), None, "nothing to retry");
    // Refused again later (say, by the claim the lifted fault let happen): said again, and the
    // backoff did not start afresh, so a host that passes probes but refuses claims is not
    // tried faster and faster.
    assert!(fault.failed(t0 + secs(5), Trouble::AddressesDenied));
    assert_eq!(fault.next_retry(), Some(t0 + secs(5) + secs(2)));
}

#[test]
fn a_failed_add_is_retried_by_claiming_after_the_backoff_and_said_once() {
    let t0 = Instant::now();
    let mut fault = HostFault::default();
    assert!(fault.failed(t0, Trouble::AddFailed));
    assert!(fault.is_faulty());
    assert_eq!(fault.due(t0), None);
    assert_eq!(fault.due(t0 + secs(1)), Some(Retry::Claim));
    assert!(
        !fault.is_faulty(),
        "set aside: the instance leaves FAULT to claim"
    );
    assert_eq!(fault.next_retry(), None);
    // The claim fails again four seconds later: quiet, and the wait doubled.
    assert!(!fault.failed(t0 + secs(5), Trouble::AddFailed));
    assert_eq!(fault.next_retry(), Some(t0 + secs(7)));
    assert_eq!(fault.due(t0 + secs(7)), Some(Retry::Claim));
    // It succeeds: the failure said is over, and the next one starts afresh.
    assert_eq!(fault.claimed(), Some(Trouble::AddFailed));
    assert_eq!(fault.claimed(), None, "said to be over once");
    assert!(fault.failed(t0 + secs(20), Trouble::AddFailed));
    assert_eq!(fault.next_retry(), Some(t0 + secs(21)));
}

#[test]
fn a_different_trouble_is_said_and_a_stuck_removal_is_retried_in_fault() {
    let t0 = Instant::now();
    let mut fault = HostFault::default();
    assert!(fault.failed(t0, Trouble::SocketsDenied));
    assert_eq!(fault.due(t0 + secs(1)), Some(Retry::Probe));
    // The sockets open now, but the addresses are refused: a new trouble, said.
    assert!(fault.failed(t0 + secs(1), Trouble::AddressesDenied));
    assert_eq!(fault.trouble(), Some(Trouble::AddressesDenied));
    assert!(fault.failed(t0 + secs(3), Trouble::RemoveFailed));
    assert_eq!(Trouble::RemoveFailed.retry(), Retry::Probe);
    assert_eq!(fault.due(t0 + secs(100)), Some(Retry::Probe));
    assert!(
        fault.is_faulty(),
        "a VIP that may still be there keeps FAULT until removed"
    );
}

#[test]
fn a_reload_makes_the_retry_due_at_once() {
    let t0 = Instant::now();
    let mut fault = HostFault::default();
    fault.retry_now(t0);
    assert_eq!(fault.next_retry(), None, "nothing to retry without trouble");
    for _ in 0..6 {
        fault.failed(t0, Trouble::AddressesDenied);
    }
    assert_eq!(fault.next_retry(), Some(t0 + RETRY_MAX));
    fault.retry_now(t0 + secs(2));
    assert_eq!(fault.due(t0 + secs(2)), Some(Retry::Probe));
}

#[test]
fn refusals_name_the_capability_the_kernel_wants() {
    assert_eq!(Trouble::SocketsDenied.capability(), Some("CAP_NET_RAW"));
    assert_eq!(Trouble::AddressesDenied.capability(), Some("CAP_NET_ADMIN"));
    assert_eq!(Trouble::AddFailed.capability(), None);
    assert_eq!(Trouble::RemoveFailed.capability(), None);
}

/// The driver's use of a [`HostFault`] with the election, on a fake clock: refused at start,
/// the machine hears `Fault(true)` before `Startup`; the link poll (every 200 ms) makes each
/// retry that is due and feeds the machine the outcome; the machine's timers are served when
/// due. The host refuses until `fixed`. Returns every action with the time it came.
fn drive_refused_instance(
    fixed: Duration,
    run_for: Duration,
) -> Vec<(Duration, crate::machine::Action)> {
    use crate::machine::{Input, Machine, MachineConfig};
    const POLL: Duration = Duration::from_millis(200);
    let t0 = Instant::now();
    let mut machine = Machine::new(MachineConfig {
        version: crate::packet::Version::V3,
        vrid: 51,
        priority: 100,
        advert_interval: Duration::from_millis(100),
        preempt: true,
        preempt_delay: Duration::ZERO,
        accept_mode: false,
        primary_address: "10.0.0.1".parse().unwrap(),
    })
    .unwrap();
    let mut host = HostFault::default();
    let mut seen = Vec::new();
    let mut feed = |machine: &mut Machine, now: Instant, input: Input| {
        for action in machine.handle(now, input) {
            seen.push((now - t0, action));
        }
    };
    host.failed(t0, Trouble::AddressesDenied);
    feed(&mut machine, t0, Input::Fault(host.is_faulty()));
    feed(&mut machine, t0, Input::Startup);
    let mut poll = t0 + POLL;
    while poll - t0 <= run_for {
        if let Some(due) = machine.next_timeout().filter(|due| *due < poll) {
            feed(&mut machine, due, Input::Timeout);
            continue;
        }
        let now = poll;
        poll += POLL;
        if let Some(retry) = host.due(now) {
            assert_eq!(retry, Retry::Probe);
            if now - t0 < fixed {
                assert!(!host.failed(now, Trouble::AddressesDenied), "said once");
                continue;
            }
            host.lifted();
            feed(&mut machine, now, Input::Fault(host.is_faulty()));
        }
    }
    seen
}

#[test]
fn a_refused_instance_stays_in_fault_for_many_intervals_and_takes_part_once_allowed() {
    use crate::machine::{Action, State, Why};
    let transition = |from, to, why| Action::Transition { from, to, why };
    let fixed = secs(20);
    let seen = drive_refused_instance(fixed, secs(40));
    let before: Vec<_> = seen.iter().filter(|(at, _)| *at < fixed).collect();
    assert_eq!(
        before,
        [&(
            Duration::ZERO,
            transition(State::Initialize, State::Fault, Why::Fault)
        )],
        "20 s, 200 advert intervals: FAULT from the start, no claim, no advert, no flap"
    );
    let after: Vec<&Action> = seen
        .iter()
        .filter(|(at, _)| *at >= fixed)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        after[..2],
        [
            &transition(State::Fault, State::Backup, Why::FaultCleared),
            &Action::SendAdvert { priority: 100 }
        ],
        "once allowed, the next probe lets it take part, as a backup first: {seen:?}"
    );
    assert_eq!(
        after[2..4],
        [
            &Action::AddVips,
            &transition(State::Backup, State::Master, Why::MasterDown)
        ]
    );
    let recovered = seen.iter().find(|(at, _)| *at >= fixed).unwrap().0;
    assert!(
        recovered <= fixed + RETRY_MAX,
        "within one backoff of the fix: {recovered:?}"
    );
}
