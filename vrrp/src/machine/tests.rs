//! One machine at a time, fed by hand. Elections between several machines are in
//! `tests/election.rs`.
//!
//! Over 600 lines on purpose: one test per rule of RFC 5798 §6 (and keepalived's additions),
//! each a few lines over the shared helpers at the top; split, the rules would lose their order.

use super::*;
use proptest::prelude::*;
use std::net::Ipv4Addr;

const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const LOWER_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const HIGHER_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
const SEC: Duration = Duration::from_secs(1);

fn config(priority: u8) -> MachineConfig {
    MachineConfig {
        version: Version::V3,
        vrid: 51,
        priority,
        advert_interval: SEC,
        preempt: true,
        preempt_delay: Duration::ZERO,
        accept_mode: false,
        primary_address: ME,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn advert(src: IpAddr, priority: u8, interval: Duration) -> Input {
    Input::Advert {
        src,
        priority,
        interval,
    }
}

fn started(config: MachineConfig, now: Instant) -> Machine {
    let mut m = Machine::new(config).unwrap();
    m.handle(now, Input::Startup);
    m
}

/// A machine that has become master through its Master_Down_Timer; returns the time it did.
fn master(config: MachineConfig, now: Instant) -> (Machine, Instant) {
    let mut m = started(config, now);
    let at = m.next_timeout().unwrap();
    m.handle(at, Input::Timeout);
    assert_eq!(m.state(), State::Master);
    (m, at)
}

fn transition(from: State, to: State, why: Why) -> Action {
    Action::Transition { from, to, why }
}

#[test]
fn new_rejects_what_the_protocol_cannot_run() {
    let bad = [
        (
            MachineConfig {
                vrid: 0,
                ..config(100)
            },
            ConfigError::Vrid,
        ),
        (config(0), ConfigError::Priority),
        (
            MachineConfig {
                advert_interval: Duration::ZERO,
                ..config(100)
            },
            ConfigError::Interval(Duration::ZERO),
        ),
        (
            MachineConfig {
                advert_interval: ms(1_005),
                ..config(100)
            },
            ConfigError::Interval(ms(1_005)),
        ),
        (
            MachineConfig {
                version: Version::V2,
                advert_interval: ms(1_500),
                ..config(100)
            },
            ConfigError::Interval(ms(1_500)),
        ),
        (
            MachineConfig {
                version: Version::V2,
                primary_address: "fe80::1".parse().unwrap(),
                ..config(100)
            },
            ConfigError::V2OverIpv6,
        ),
        (
            MachineConfig {
                preempt_delay: Duration::from_secs(1001),
                ..config(100)
            },
            ConfigError::PreemptDelay(Duration::from_secs(1001)),
        ),
    ];
    for (c, err) in bad {
        assert_eq!(Machine::new(c).unwrap_err(), err);
    }
    let m = Machine::new(config(100)).unwrap();
    assert_eq!(m.state(), State::Initialize);
    assert_eq!(m.next_timeout(), None);
}

/// RFC 5798 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256 and
/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time; RFC 3768 §6.1 (v2):
/// Skew_Time = (256 - Priority) / 256 s, whatever the interval.
#[test]
fn skew_time_and_master_down_interval_follow_rfc_formulas() {
    let m = Machine::new(config(100)).unwrap();
    // (256 - 100) * 1 s / 256 = 156/256 s = 609.375 ms
    assert_eq!(m.skew_time(), Duration::from_micros(609_375));
    assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));

    let m = Machine::new(MachineConfig {
        advert_interval: ms(2_000),
        ..config(100)
    })
    .unwrap();
    assert_eq!(m.skew_time(), Duration::from_micros(1_218_750));
    assert_eq!(m.master_down_interval(), Duration::from_micros(7_218_750));

    let v2 = Machine::new(MachineConfig {
        version: Version::V2,
        advert_interval: ms(2_000),
        ..config(100)
    })
    .unwrap();
    assert_eq!(v2.skew_time(), Duration::from_micros(609_375));
    assert_eq!(v2.master_down_interval(), Duration::from_micros(6_609_375));

    // Priority 254: (256 - 254) / 256 of a second.
    let m = Machine::new(config(254)).unwrap();
    assert_eq!(
        m.skew_time(),
        Duration::from_micros(7_812) + Duration::from_nanos(500)
    );
}

/// RFC 5798 §6.4.1 (155)-(160).
#[test]
fn startup_enters_backup_with_a_full_master_down_timer() {
    let now = Instant::now();
    let mut m = Machine::new(config(100)).unwrap();
    let actions = m.handle(now, Input::Startup);
    assert_eq!(
        actions,
        [transition(State::Initialize, State::Backup, Why::Started)]
    );
    assert_eq!(m.state(), State::Backup);
    assert_eq!(
        m.next_timeout(),
        Some(now + Duration::from_micros(3_609_375))
    );
    assert_eq!(m.master(), None);
    // A second Startup is not an event in Backup.
    assert!(m.handle(now, Input::Startup).is_empty());
}

/// RFC 5798 §6.4.1, the Priority = 255 branch: the owner sends an advert, announces the
/// addresses, and is Master at once.
#[test]
fn owner_goes_straight_to_master_on_startup() {
    let now = Instant::now();
    let mut m = Machine::new(config(255)).unwrap();
    let actions = m.handle(now, Input::Startup);
    assert_eq!(
        actions,
        [
            Action::SendAdvert { priority: 255 },
            Action::AddVips,
            transition(State::Initialize, State::Master, Why::Owner),
        ]
    );
    assert_eq!(m.next_timeout(), Some(now + SEC));
    assert_eq!(m.master(), Some(ME));
}

/// RFC 5798 §6.4.2 (370)-(410) then §6.4.3 (685)-(690).
#[test]
fn master_down_timer_makes_master_then_adverts_follow_every_interval() {
    let now = Instant::now();
    let mut m = started(config(100), now);
    let down = m.next_timeout().unwrap();
    // Early timeouts do nothing.
    assert!(m.handle(down - ms(1), Input::Timeout).is_empty());
    assert_eq!(
        m.handle(down, Input::Timeout),
        [
            Action::SendAdvert { priority: 100 },
            Action::AddVips,
            transition(State::Backup, State::Master, Why::MasterDown),
        ]
    );
    for k in 1..=3 {
        let due = down + SEC * k;
        assert_eq!(m.next_timeout(), Some(due));
        assert!(m.handle(due - ms(1), Input::Timeout).is_empty());
        assert_eq!(
            m.handle(due, Input::Timeout),
            [Action::SendAdvert { priority: 100 }]
        );
    }
}

/// RFC 5798 §6.4.3 (710)-(715).
#[test]
fn master_answers_a_priority_zero_advert_at_once() {
    let (mut m, at) = master(config(100), Instant::now());
    let t = at + ms(300);
    assert_eq!(
        m.handle(t, advert(HIGHER_ADDR, 0, SEC)),
        [Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(m.next_timeout(), Some(t + SEC));
    assert_eq!(m.state(), State::Master);
}

/// RFC 5798 §6.4.3 (730)-(775): higher priority wins; equal priority goes to the greater
/// primary address; anything else is discarded.
#[test]
fn master_steps_down_only_for_a_better_advert() {
    let now = Instant::now();
    let (mut m, at) = master(config(100), now);
    let t = at + ms(100);
    assert!(m.handle(t, advert(HIGHER_ADDR, 99, SEC)).is_empty());
    assert!(m.handle(t, advert(LOWER_ADDR, 100, SEC)).is_empty());
    assert_eq!(m.state(), State::Master);

    assert_eq!(
        m.handle(t, advert(HIGHER_ADDR, 100, SEC)),
        [
            Action::RemoveVips,
            transition(State::Master, State::Backup, Why::BetterMaster)
        ]
    );
    assert_eq!(m.master(), Some(HIGHER_ADDR));
    assert_eq!(m.next_timeout(), Some(t + m.master_down_interval()));

    let (mut m, at) = master(config(100), now);
    // (745)-(760): the sender's interval (2 s) becomes Master_Adver_Interval.
    m.handle(at, advert(LOWER_ADDR, 101, ms(2_000)));
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_adver_interval(), ms(2_000));
    assert_eq!(
        m.next_timeout(),
        Some(at + ms(6_000) + Duration::from_micros(1_218_750))
    );
}

/// RFC 5798 §6.4.2 (430).
#[test]
fn backup_sets_master_down_timer_to_skew_time_on_priority_zero() {
    let now = Instant::now();
    let mut m = started(config(100), now);
    m.handle(now, advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.master(), Some(HIGHER_ADDR));
    let t = now + ms(500);
    assert!(m.handle(t, advert(HIGHER_ADDR, 0, SEC)).is_empty());
    assert_eq!(m.next_timeout(), Some(t + Duration::from_micros(609_375)));
    assert_eq!(m.master(), None);
}

/// RFC 5798 §6.4.2 (450)-(470).
#[test]
fn backup_resets_its_timer_for_a_better_master_and_discards_a_worse_one() {
    let now = Instant::now();
    let mut m = started(config(100), now);
    let first = m.next_timeout().unwrap();
    // Equal priority counts as "greater than or equal": accepted.
    let t = now + ms(700);
    m.handle(t, advert(LOWER_ADDR, 100, SEC));
    assert_eq!(m.next_timeout(), Some(t + m.master_down_interval()));
    // Lower priority with preempt: discarded, the timer runs on.
    let deadline = m.next_timeout().unwrap();
    m.handle(t + SEC, advert(LOWER_ADDR, 50, SEC));
    assert_eq!(m.next_timeout(), Some(deadline));
    assert!(deadline > first);

    // Without preempt the same advert resets the timer.
    let mut m = started(
        MachineConfig {
            preempt: false,
            ..config(100)
        },
        now,
    );
    m.handle(t, advert(LOWER_ADDR, 50, SEC));
    assert_eq!(m.next_timeout(), Some(t + m.master_down_interval()));
}

/// RFC 5798 §6.4.2 (450)-(460): a v3 backup adopts its master's interval.
#[test]
fn v3_backup_learns_master_adver_interval() {
    let now = Instant::now();
    let mut m = started(config(100), now);
    m.handle(now, advert(HIGHER_ADDR, 200, ms(250)));
    assert_eq!(m.master_adver_interval(), ms(250));
    // 3 * 250 ms + 156 * 250 ms / 256
    assert_eq!(
        m.next_timeout(),
        Some(now + ms(750) + Duration::from_nanos(152_343_750))
    );
}

/// RFC 3768 §7.1: a v2 advert whose Adver Int differs from ours MUST be discarded.
#[test]
fn v2_discards_an_advert_with_another_interval() {
    let now = Instant::now();
    let v2 = MachineConfig {
        version: Version::V2,
        ..config(100)
    };
    let mut m = started(v2, now);
    let deadline = m.next_timeout();
    m.handle(now + SEC, advert(HIGHER_ADDR, 200, ms(2_000)));
    assert_eq!(m.next_timeout(), deadline);
    assert_eq!(m.master(), None);
    m.handle(now + SEC, advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.master_adver_interval(), SEC);
    assert_eq!(
        m.next_timeout(),
        Some(now + SEC + Duration::from_micros(3_609_375))
    );
}

/// RFC 5798 §7.1: the owner discards adverts for its VRID, even ones that would win.
#[test]
fn owner_discards_every_advert() {
    let now = Instant::now();
    let mut m = started(config(255), now);
    assert!(m.handle(now, advert(HIGHER_ADDR, 255, SEC)).is_empty());
    assert!(m.handle(now, advert(HIGHER_ADDR, 0, SEC)).is_empty());
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.next_timeout(), Some(now + SEC));
}

#[test]
fn tracking_delta_is_clamped_and_never_moves_an_owner() {
    let now = Instant::now();
    let mut m = Machine::new(config(100)).unwrap();
    for (delta, effective) in [
        (-30, 70),
        (-99, 1),
        (-500, 1),
        (i32::MIN, 1),
        (100, 200),
        (154, 254),
        (i32::MAX, 254),
        (0, 100),
    ] {
        m.handle(now, Input::SetPriorityDelta(delta));
        assert_eq!(m.effective_priority(), effective, "delta {delta}");
    }
    let mut owner = Machine::new(config(255)).unwrap();
    owner.handle(now, Input::SetPriorityDelta(-100));
    assert_eq!(owner.effective_priority(), 255);
}

#[test]
fn master_advertises_a_changed_priority_from_the_next_advert() {
    let (mut m, at) = master(config(100), Instant::now());
    assert!(m.handle(at, Input::SetPriorityDelta(-40)).is_empty());
    assert_eq!(
        m.handle(at + SEC, Input::Timeout),
        [Action::SendAdvert { priority: 60 }]
    );
}

/// RFC 5798 §6.1: Skew_Time follows the (effective) priority, so tracking changes it.
#[test]
fn backup_recomputes_skew_time_when_its_priority_changes() {
    let now = Instant::now();
    let mut m = started(config(100), now);
    m.handle(now, Input::SetPriorityDelta(100));
    assert_eq!(m.skew_time(), Duration::from_micros(218_750)); // 56/256 s
    m.handle(now, advert(HIGHER_ADDR, 250, SEC));
    assert_eq!(
        m.next_timeout(),
        Some(now + Duration::from_micros(3_218_750))
    );
}

#[test]
fn fault_releases_a_master_and_recovery_starts_over_as_backup() {
    let (mut m, at) = master(config(100), Instant::now());
    assert_eq!(
        m.handle(at, Input::Fault(true)),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveVips,
            transition(State::Master, State::Fault, Why::Fault),
        ]
    );
    assert_eq!(m.next_timeout(), None);
    assert_eq!(m.master(), None);
    // Nothing is heard or sent in Fault.
    assert!(m.handle(at, advert(LOWER_ADDR, 0, SEC)).is_empty());
    assert!(m.handle(at + SEC * 10, Input::Timeout).is_empty());
    assert!(m.handle(at, Input::Fault(true)).is_empty());

    let back = at + SEC * 20;
    assert_eq!(
        m.handle(back, Input::Fault(false)),
        [transition(State::Fault, State::Backup, Why::FaultCleared)]
    );
    assert_eq!(m.next_timeout(), Some(back + m.master_down_interval()));
}

#[test]
fn fault_recovery_of_an_owner_goes_straight_to_master() {
    let now = Instant::now();
    let mut m = started(config(255), now);
    m.handle(now, Input::Fault(true));
    assert_eq!(
        m.handle(now + SEC, Input::Fault(false)),
        [
            Action::SendAdvert { priority: 255 },
            Action::AddVips,
            transition(State::Fault, State::Master, Why::Owner),
        ]
    );
}

#[test]
fn a_fault_before_startup_is_remembered() {
    let now = Instant::now();
    let mut m = Machine::new(config(100)).unwrap();
    assert!(m.handle(now, Input::Fault(true)).is_empty());
    assert_eq!(
        m.handle(now, Input::Startup),
        [transition(State::Initialize, State::Fault, Why::Fault)]
    );
    assert_eq!(m.next_timeout(), None);
    // Shutdown from Fault keeps the flag: the next Startup is in Fault again.
    m.handle(now, Input::Shutdown);
    assert_eq!(
        m.handle(now, Input::Startup),
        [transition(State::Initialize, State::Fault, Why::Fault)]
    );
}

/// RFC 5798 §6.4.3 (655)-(670) and §6.4.2 (345)-(355).
#[test]
fn shutdown_sends_priority_zero_from_master_and_returns_to_initialize() {
    let (mut m, at) = master(config(100), Instant::now());
    assert_eq!(
        m.handle(at, Input::Shutdown),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveVips,
            transition(State::Master, State::Initialize, Why::Shutdown),
        ]
    );
    assert_eq!(m.next_timeout(), None);
    assert!(m.handle(at, Input::Shutdown).is_empty());

    let mut b = started(config(100), at);
    assert_eq!(
        b.handle(at, Input::Shutdown),
        [transition(State::Backup, State::Initialize, Why::Shutdown)]
    );
}

#[test]
fn relinquish_resigns_and_then_follows_a_lower_priority_master() {
    let (mut m, at) = master(config(200), Instant::now());
    assert_eq!(
        m.handle(at, Input::Relinquish),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveVips,
            transition(State::Master, State::Backup, Why::Relinquished),
        ]
    );
    assert_eq!(m.next_timeout(), Some(at + m.master_down_interval()));
    // The peer (priority 100) takes over; we accept its adverts despite preempt.
    let t = at + ms(600);
    m.handle(t, advert(LOWER_ADDR, 100, SEC));
    assert_eq!(m.next_timeout(), Some(t + m.master_down_interval()));
    assert_eq!(m.master(), Some(LOWER_ADDR));
    // Ignored when not master, and by an owner.
    assert!(m.handle(t, Input::Relinquish).is_empty());
    let mut owner = started(config(255), at);
    assert!(owner.handle(at, Input::Relinquish).is_empty());
    assert_eq!(owner.state(), State::Master);
}

#[test]
fn relinquish_without_a_peer_takes_the_master_role_back() {
    let (mut m, at) = master(config(200), Instant::now());
    m.handle(at, Input::Relinquish);
    let back = m.next_timeout().unwrap();
    assert_eq!(back, at + m.master_down_interval());
    m.handle(back, Input::Timeout);
    assert_eq!(m.state(), State::Master);
    // Master again: the yield is over. Pushed back to Backup by a better router, it preempts a
    // lower-priority master again.
    m.handle(back, advert(HIGHER_ADDR, 250, SEC));
    assert_eq!(m.state(), State::Backup);
    let deadline = m.next_timeout();
    m.handle(back + SEC, advert(LOWER_ADDR, 100, SEC));
    assert_eq!(m.next_timeout(), deadline, "discarded: preempting again");
}

/// `preempt_delay`: lower-priority adverts are accepted until the delay has passed since the
/// first of them; from then on they are discarded (RFC 5798 §6.4.2 (470)).
#[test]
fn preempt_delay_accepts_a_lower_master_until_the_delay_has_run() {
    let now = Instant::now();
    let mut m = started(
        MachineConfig {
            preempt_delay: Duration::from_secs(5),
            ..config(200)
        },
        now,
    );
    let first = now + ms(300);
    for k in 0..5 {
        let t = first + SEC * k;
        m.handle(t, advert(LOWER_ADDR, 100, SEC));
        assert_eq!(m.next_timeout(), Some(t + m.master_down_interval()), "{k}");
    }
    let last_accepted = first + SEC * 4;
    m.handle(first + SEC * 5, advert(LOWER_ADDR, 100, SEC));
    assert_eq!(
        m.next_timeout(),
        Some(last_accepted + m.master_down_interval())
    );

    // An advert of equal or higher priority restarts the clock.
    let mut m = started(
        MachineConfig {
            preempt_delay: Duration::from_secs(5),
            ..config(200)
        },
        now,
    );
    m.handle(first, advert(LOWER_ADDR, 100, SEC));
    m.handle(first + SEC * 3, advert(LOWER_ADDR, 200, SEC));
    let t = first + SEC * 6;
    m.handle(t, advert(LOWER_ADDR, 100, SEC));
    assert_eq!(m.next_timeout(), Some(t + m.master_down_interval()));
}

/// The adverts a caller reads late (its thread was held up) are handled at the times they
/// arrived: each restarts the Master_Down_Timer from its arrival, so a master whose adverts kept
/// coming stays master however late they are read.
#[test]
fn adverts_read_late_but_arrived_in_time_keep_the_master() {
    let t0 = Instant::now();
    let mut m = started(config(100), t0);
    m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
    let mdi = m.master_down_interval();
    // Held up from t0 for 10 s, while the master's adverts arrived every second.
    for k in 1..=10 {
        let arrived = t0 + SEC * k;
        assert!(
            m.handle(arrived, advert(HIGHER_ADDR, 200, SEC)).is_empty(),
            "{k}"
        );
        assert_eq!(m.master_down_margin(), Some(mdi - SEC), "{k}");
    }
    assert_eq!(m.next_timeout(), Some(t0 + SEC * 10 + mdi));
    // Then the overdue timer is served: nothing is due any more.
    assert!(m.handle(t0 + SEC * 10, Input::Timeout).is_empty());
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master(), Some(HIGHER_ADDR));
}

/// A master that stopped while the caller was held up is taken over one held-up grace after
/// the caller serves the timer: its last advert counts from when it arrived, not from when it
/// was read, and the grace (the time held up, at most a Master_Down_Interval) is the chance a
/// master stalled with the caller gets to be heard.
#[test]
fn a_master_that_stopped_while_adverts_waited_is_taken_over_one_grace_later() {
    let t0 = Instant::now();
    let mut m = started(config(100), t0);
    m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
    // Read at t0 + 10 s: the last advert arrived at t0 + 2 s.
    m.handle(t0 + SEC, advert(HIGHER_ADDR, 200, SEC));
    m.handle(t0 + SEC * 2, advert(HIGHER_ADDR, 200, SEC));
    let mdi = m.master_down_interval();
    let due = t0 + SEC * 2 + mdi;
    assert_eq!(m.next_timeout(), Some(due));
    let now = t0 + SEC * 10;
    assert!(due < now);
    assert_eq!(m.handle(now, Input::Timeout), []);
    assert_eq!(m.held_up(), Some(now - due));
    assert_eq!(
        m.next_timeout(),
        Some(now + mdi),
        "held up longer than the cap"
    );
    // Served late again: no second grace.
    let later = now + mdi + SEC;
    assert!(m.handle(later, Input::Timeout).contains(&transition(
        State::Backup,
        State::Master,
        Why::MasterDown
    )));
    assert_eq!(m.held_up(), None);
}

/// A backup whose Master_Down_Timer is served late (its threads were held up, the master's as
/// well when they share a stalled machine) listens as long again before taking over: the
/// master's overdue advert, sent as soon as it runs again, keeps it master, with no margin.
/// Served on time, or late by no more than a quarter of the interval, the timer takes over.
#[test]
fn a_backup_served_late_listens_as_long_again_before_taking_over() {
    let t0 = Instant::now();
    let mdi = {
        let mut m = started(config(100), t0);
        m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
        m.master_down_interval()
    };
    for (late, graced) in [
        (Duration::ZERO, false),
        (ms(250), false),
        (ms(251), true),
        (ms(700), true),
    ] {
        let mut m = started(config(100), t0);
        m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
        let due = t0 + mdi;
        let served = due + late;
        let actions = m.handle(served, Input::Timeout);
        if !graced {
            assert_eq!(m.state(), State::Master, "late {late:?}");
            assert_eq!(m.held_up(), None);
            continue;
        }
        assert_eq!(actions, [], "late {late:?}");
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.held_up(), Some(late));
        assert_eq!(m.next_timeout(), Some(served + late));
        // The master's overdue advert, within the grace: still the master, margin zero, and
        // the next timer is an ordinary one again.
        let heard = served + late / 2;
        assert_eq!(m.handle(heard, advert(HIGHER_ADDR, 200, SEC)), []);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master(), Some(HIGHER_ADDR));
        assert_eq!(m.master_down_margin(), Some(Duration::ZERO));
        assert_eq!(m.next_timeout(), Some(heard + mdi));
        // A later timer served late gets its own grace.
        let served = heard + mdi + late;
        assert_eq!(m.handle(served, Input::Timeout), []);
        assert_eq!(m.held_up(), Some(late));
        // And with no advert in it, the takeover comes at its end.
        assert!(
            m.handle(served + late, Input::Timeout)
                .contains(&transition(State::Backup, State::Master, Why::MasterDown))
        );
    }
}

/// Only a timer the master's advert started is extended: entering Backup, or a master's
/// priority-0 resignation (Skew_Time), takes over however late the timer is served.
#[test]
fn only_a_timer_started_by_the_masters_advert_gets_a_held_up_grace() {
    let t0 = Instant::now();
    let mut m = started(config(100), t0);
    let due = m.next_timeout().unwrap();
    m.handle(due + SEC, Input::Timeout);
    assert_eq!(m.state(), State::Master, "no master ever heard");

    let mut m = started(config(100), t0);
    m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
    m.handle(t0 + SEC, advert(HIGHER_ADDR, 0, SEC));
    let due = m.next_timeout().unwrap();
    m.handle(due + SEC, Input::Timeout);
    assert_eq!(m.state(), State::Master, "the master resigned");
}

/// An advert of the master that arrived after the Master_Down_Timer ran out, but was waiting
/// when the backup got to its timer, keeps the master: no takeover and back, a margin of zero.
#[test]
fn a_late_advert_waiting_when_the_timer_is_served_keeps_the_master_with_no_margin() {
    let t0 = Instant::now();
    let mut m = started(config(100), t0);
    m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
    let due = m.next_timeout().unwrap();
    let late = due + ms(1);
    assert_eq!(m.handle(late, advert(HIGHER_ADDR, 200, SEC)), []);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(
        m.master_down_margin(),
        Some(Duration::ZERO),
        "no margin left"
    );
    assert_eq!(m.next_timeout(), Some(late + m.master_down_interval()));
    assert_eq!(m.master(), Some(HIGHER_ADDR));

    // Arriving exactly at the deadline: the same.
    let mut m = started(config(100), t0);
    m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
    let due = m.next_timeout().unwrap();
    m.handle(due, advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_down_margin(), Some(Duration::ZERO));

    // Served on time, before the advert came, the timer took over; the advert then sends the
    // backup back (RFC 5798 §6.4.3 (740)-(765)).
    let mut m = started(config(100), t0);
    m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
    let due = m.next_timeout().unwrap();
    m.handle(due, Input::Timeout);
    assert_eq!(m.state(), State::Master);
    m.handle(due + ms(1), advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.state(), State::Backup);

    // A lower master that came late is preempted: we stay master.
    let mut m = started(config(100), t0);
    m.handle(t0, advert(LOWER_ADDR, 50, SEC));
    let due = m.next_timeout().unwrap();
    m.handle(due + ms(1), advert(LOWER_ADDR, 50, SEC));
    assert_eq!(m.state(), State::Master);
}

/// A backup held up before it heard any master (its first Master_Down_Timer overdue), or after
/// its master resigned (Skew_Time overdue), that finds a master's advert waiting follows that
/// master instead of taking over and stepping back down. No margin: no advert started the timer.
#[test]
fn an_advert_waiting_when_a_first_or_resignation_timer_is_served_keeps_that_master() {
    let t0 = Instant::now();
    let mut m = started(config(100), t0);
    let due = m.next_timeout().unwrap();
    let read = due + SEC;
    assert_eq!(m.handle(read, advert(HIGHER_ADDR, 200, SEC)), []);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master(), Some(HIGHER_ADDR));
    assert_eq!(m.master_down_margin(), None);
    assert_eq!(m.next_timeout(), Some(read + m.master_down_interval()));

    // The master resigned; another router (priority 150) advertised before our Skew_Time was
    // served.
    let mut m = started(config(100), t0);
    m.handle(t0, advert(HIGHER_ADDR, 200, SEC));
    m.handle(t0 + SEC, advert(HIGHER_ADDR, 0, SEC));
    let due = m.next_timeout().unwrap();
    assert_eq!(m.handle(due + SEC, advert(LOWER_ADDR, 150, SEC)), []);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master(), Some(LOWER_ADDR));

    // A waiting advert this backup would preempt does not hold it back.
    let mut m = started(config(100), t0);
    let due = m.next_timeout().unwrap();
    let actions = m.handle(due + SEC, advert(LOWER_ADDR, 50, SEC));
    assert!(
        actions.contains(&transition(State::Backup, State::Master, Why::MasterDown)),
        "{actions:?}"
    );
}

/// The margin: how much of the Master_Down_Interval the master's previous advert started was
/// left when its next one arrived. Only adverts the backup follows, and only against a timer
/// such an advert started, have one.
#[test]
fn the_master_down_margin_is_what_was_left_of_the_timer_the_last_advert_started() {
    let t0 = Instant::now();
    let mut m = started(config(100), t0);
    let mdi = m.master_down_interval();
    m.handle(t0 + ms(500), advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.master_down_margin(), None, "the timer was from startup");
    m.handle(t0 + ms(1_500), advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.master_down_margin(), Some(mdi - SEC));
    m.handle(t0 + ms(4_000), advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.master_down_margin(), Some(mdi - ms(2_500)), "a late one");
    m.handle(t0 + ms(4_000), Input::SetPriorityDelta(0));
    assert_eq!(m.master_down_margin(), None, "another input");
    // A lower-priority advert we discard to preempt restarts nothing: no margin.
    m.handle(t0 + ms(4_500), advert(LOWER_ADDR, 50, SEC));
    assert_eq!(m.master_down_margin(), None);
    // Priority 0 sets the timer to Skew_Time: the next advert has no margin to measure.
    m.handle(t0 + ms(5_000), advert(HIGHER_ADDR, 0, SEC));
    assert_eq!(m.master_down_margin(), None);
    m.handle(t0 + ms(5_100), advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.master_down_margin(), None);
    m.handle(t0 + ms(6_100), advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(m.master_down_margin(), Some(mdi - SEC));

    // A master measures none: its lateness is the caller's to measure.
    let (mut m, at) = master(config(100), t0);
    m.handle(at + ms(10), advert(LOWER_ADDR, 50, SEC));
    assert_eq!(m.master_down_margin(), None);
}

#[test]
fn handle_into_appends_to_a_kept_vector() {
    let t0 = Instant::now();
    let mut m = started(config(100), t0);
    let mut out = Vec::with_capacity(8);
    let due = m.next_timeout().unwrap();
    m.handle_into(due, Input::Timeout, &mut out);
    assert_eq!(
        out,
        [
            Action::SendAdvert { priority: 100 },
            Action::AddVips,
            transition(State::Backup, State::Master, Why::MasterDown)
        ]
    );
    out.clear();
    m.handle_into(due + SEC, Input::Timeout, &mut out);
    assert_eq!(out, [Action::SendAdvert { priority: 100 }]);
    assert!(out.capacity() >= 8, "kept, not replaced");
}

fn any_input() -> impl Strategy<Value = Input> {
    let addr = prop_oneof![Just(LOWER_ADDR), Just(ME), Just(HIGHER_ADDR)];
    let interval = prop_oneof![
        Just(SEC),
        Just(ms(10)),
        Just(Duration::ZERO),
        Just(Duration::MAX),
        (0u64..100_000).prop_map(Duration::from_millis),
    ];
    prop_oneof![
        1 => Just(Input::Startup),
        1 => Just(Input::Shutdown),
        4 => Just(Input::Timeout),
        1 => Just(Input::Relinquish),
        1 => any::<bool>().prop_map(Input::Fault),
        1 => any::<i32>().prop_map(Input::SetPriorityDelta),
        1 => (-300i32..300).prop_map(Input::SetPriorityDelta),
        6 => (addr, any::<u8>(), interval).prop_map(|(src, priority, interval)| Input::Advert {
            src,
            priority,
            interval,
        }),
    ]
}

fn any_config() -> impl Strategy<Value = MachineConfig> {
    (
        any::<bool>(),
        1u8..=255,
        1u64..=300,
        any::<bool>(),
        0u64..=10,
    )
        .prop_map(|(v3, priority, cs, preempt, delay)| MachineConfig {
            version: if v3 { Version::V3 } else { Version::V2 },
            priority,
            advert_interval: if v3 {
                ms(cs * 10)
            } else {
                Duration::from_secs(cs.min(255))
            },
            preempt,
            preempt_delay: Duration::from_secs(delay),
            ..config(priority)
        })
}

proptest! {
    /// Invariants under any input sequence, on time that only moves forward:
    /// - no panic;
    /// - `next_timeout` is `Some` exactly in Backup and Master, and always in the future;
    /// - every transition starts from the previous state and ends in the new one;
    /// - AddVips only on entering Master, RemoveVips only on leaving it;
    /// - the effective priority is 255 exactly for an owner, else 1..=254;
    /// - a Master knows itself as master.
    ///
    /// The caller fires every timer that came due before the next input, except, when `late`
    /// says so, before an advert (which it read late): the machine must fire the timer itself.
    #[test]
    fn random_inputs_keep_the_invariants(
        config in any_config(),
        steps in proptest::collection::vec((0u64..5_000, any_input(), any::<bool>()), 0..80),
    ) {
        let owner = config.priority == OWNER_PRIORITY;
        let mut m = Machine::new(config).unwrap();
        let mut now = Instant::now();
        for (dt, input, late) in steps {
            now += ms(dt);
            let mut inputs = vec![input];
            let read_late = late && matches!(inputs[0], Input::Advert { .. });
            if m.next_timeout().is_some_and(|due| due <= now) && !read_late {
                inputs.insert(0, Input::Timeout);
            }
            for input in inputs {
                let before = m.state();
                let actions = m.handle(now, input);
                let mut state = before;
                let to_master = actions.iter().any(|a| {
                    matches!(a, Action::Transition { from, to: State::Master, .. } if *from == before)
                });
                for a in &actions {
                    match a {
                        Action::Transition { from, to, .. } => {
                            prop_assert_eq!(*from, state);
                            prop_assert_ne!(from, to);
                            state = *to;
                        }
                        Action::AddVips => {
                            prop_assert_ne!(state, State::Master);
                            prop_assert!(to_master);
                        }
                        Action::RemoveVips => prop_assert_eq!(state, State::Master),
                        Action::SendAdvert { .. } => {
                            prop_assert!(state == State::Master || to_master);
                        }
                    }
                }
                prop_assert_eq!(state, m.state());
                let timed = matches!(m.state(), State::Backup | State::Master);
                prop_assert_eq!(m.next_timeout().is_some(), timed);
                if let Some(due) = m.next_timeout() {
                    prop_assert!(due > now);
                }
                if owner {
                    prop_assert_eq!(m.effective_priority(), 255);
                } else {
                    prop_assert!((1..=254).contains(&m.effective_priority()));
                }
                if m.state() == State::Master {
                    prop_assert_eq!(m.master(), Some(ME));
                }
            }
        }
    }
}

/// The reason a backup gives for taking over says what the master did: it went silent,
/// resigned, or was preempted.
#[test]
fn a_takeover_says_whether_the_master_went_silent_resigned_or_was_preempted() {
    let now = Instant::now();
    let takeover = |m: &mut Machine| {
        let due = m.next_timeout().unwrap();
        m.handle(due, Input::Timeout)
            .into_iter()
            .find_map(|a| match a {
                Action::Transition { why, .. } => Some(why),
                _ => None,
            })
    };
    let mut silent = started(config(100), now);
    silent.handle(now, advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(takeover(&mut silent), Some(Why::MasterDown));

    let mut resigned = started(config(100), now);
    resigned.handle(now, advert(HIGHER_ADDR, 200, SEC));
    resigned.handle(now + ms(500), advert(HIGHER_ADDR, 0, SEC));
    assert_eq!(takeover(&mut resigned), Some(Why::MasterResigned));

    let mut preempting = started(config(200), now);
    preempting.handle(now, advert(LOWER_ADDR, 100, SEC));
    assert_eq!(takeover(&mut preempting), Some(Why::Preempted));

    // A better master heard again after a discarded lower one: its silence is a master down.
    let mut again = started(config(150), now);
    again.handle(now, advert(LOWER_ADDR, 100, SEC));
    again.handle(now + ms(100), advert(HIGHER_ADDR, 200, SEC));
    assert_eq!(takeover(&mut again), Some(Why::MasterDown));
    for why in [Why::Started, Why::Preempted, Why::Shutdown] {
        assert!(!why.describe().is_empty() && !why.as_str().contains(' '));
    }
}
