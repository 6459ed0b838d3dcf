//! Elections between two and three virtual routers wired together in memory on a fake clock.
//!
//! `Net` delivers every `SendAdvert` of one router to all the others it can reach (after a fixed
//! latency, zero unless a test sets it) as the bytes a real router sends: encoded by the codec
//! with the sender's address, priority and configured interval, and judged on arrival by the
//! same acceptance rules (`vrrp::accept`) an instance applies on a link. It moves time straight
//! to the next timer or delivery. Times are asserted exactly: the machine is pure, so nothing
//! here is approximate.

mod net;

use std::net::IpAddr;
use std::time::Duration;

use net::{Net, SEC, addr, cfg, ms, us, v3};
use proptest::prelude::*;
use vrrp::{Input, MachineConfig, State, Version};

/// RFC 5798 §6.4.1 (155)-(160) and §6.4.2 (370)-(410): both start as Backup; the higher
/// priority has the shorter Skew_Time, so its Master_Down_Timer fires first and its advert holds
/// the other.
#[test]
fn higher_priority_router_becomes_master() {
    for version in [Version::V3, Version::V2] {
        let mut net = Net::new(vec![cfg(version, 100, 1), cfg(version, 200, 2)]);
        let t0 = net.start_all();
        net.run_for(SEC * 30);
        assert_eq!(net.masters(), [1]);
        // 3 s + (256 - 200) / 256 s
        assert_eq!(net.entered(1, State::Master), Some(t0 + us(3_218_750)));
        assert_eq!(
            net.transitions(0),
            [(State::Initialize, State::Backup)],
            "the lower priority never became master"
        );
        assert_eq!(net.nodes[0].machine.master(), Some(addr(2)));
        assert!(net.nodes[1].holds_vips && !net.nodes[0].holds_vips);
    }
}

/// RFC 5798 §6.4.3 (730)-(735): with equal priorities both time out together and become master; on
/// hearing each other the one with the smaller primary address steps down.
#[test]
fn equal_priority_is_won_by_the_greater_primary_address() {
    let mut net = Net::new(vec![v3(100, 1), v3(100, 2)]);
    net.latency = ms(1);
    let t0 = net.start_all();
    net.run_for(SEC * 30);
    assert_eq!(net.masters(), [1]);
    let both = t0 + us(3_609_375);
    assert_eq!(
        net.transitions(0),
        [
            (State::Initialize, State::Backup),
            (State::Backup, State::Master),
            (State::Master, State::Backup)
        ]
    );
    assert_eq!(net.entered(0, State::Master), Some(both));
    assert_eq!(net.entered(0, State::Backup), Some(both + ms(1)));
    assert_eq!(net.dual_master_ends(), [both + ms(1)]);
}

/// The tie-break compares IPv6 addresses the same way (RFC 5798 §6.4.3 (730)-(735)).
#[test]
fn equal_priority_tie_break_works_over_ipv6() {
    let v6 = |n: u16| MachineConfig {
        primary_address: IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, n]),
        ..v3(100, 1)
    };
    let mut net = Net::new(vec![v6(0x20), v6(0x10)]);
    net.start_all();
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [0]);
}

/// RFC 5798 §6.1 and §6.4.2 (370)-(410): the backup becomes master exactly
/// Master_Down_Interval = 3 * 1 s + (256 - 100) / 256 * 1 s = 3.609375 s after the last advert.
#[test]
fn v3_backup_takes_over_exactly_master_down_interval_after_the_last_advert() {
    let mut net = Net::new(vec![v3(200, 1), v3(100, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    assert_eq!(net.masters(), [0]);
    net.crash(0);
    let last = net.last_advert(0);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.entered(1, State::Master), Some(last + us(3_609_375)));
}

/// A backup held up (its thread stalled) for three Master_Down_Intervals while its master's
/// adverts kept arriving reads them when it runs again, each counted from when it arrived: no
/// takeover, and its Master_Down_Timer runs from the last one.
#[test]
fn a_backup_held_up_past_master_down_interval_keeps_a_master_whose_adverts_kept_arriving() {
    let mut net = Net::new(vec![v3(200, 1), v3(100, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    net.hold(1);
    net.run_for(SEC * 11);
    assert_eq!(net.nodes[1].waiting.len(), 11, "one advert a second waited");
    net.release(1);
    assert_eq!(net.transitions(1), [(State::Initialize, State::Backup)]);
    assert_eq!(net.masters(), [0]);
    assert_eq!(
        net.nodes[1].machine.next_timeout(),
        Some(net.last_advert(0) + us(3_609_375))
    );
}

/// A backup held up while its master died takes over one held-up grace after it runs again
/// (the time it was held up, here more than the cap of one Master_Down_Interval): the master's
/// last advert counts from when it arrived, and the grace is the chance a master stalled with
/// the backup gets to be heard.
#[test]
fn a_backup_held_up_while_its_master_died_takes_over_one_grace_after_it_runs_again() {
    let mut net = Net::new(vec![v3(200, 1), v3(100, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    net.hold(1);
    net.run_for(SEC * 2);
    net.crash(0);
    let last = net.last_advert(0);
    net.run_for(SEC * 8);
    assert!(!net.nodes[1].waiting.is_empty());
    let released = net.now;
    assert!(released > last + us(3_609_375));
    net.release(1);
    net.run_for(SEC * 5);
    assert_eq!(
        net.entered(1, State::Master),
        Some(released + us(3_609_375))
    );
}

/// A pair on one machine that stalls as a whole (a virtual machine whose CPUs the host takes
/// away for longer than Master_Down_Interval): when it runs again the backup, served first,
/// finds no advert waiting, since the master was stalled too, but its held-up grace lets the
/// master's overdue advert arrive: no takeover and back.
#[test]
fn a_pair_stalled_together_does_not_flap_when_it_runs_again() {
    let mut net = Net::new(vec![v3(200, 1), v3(100, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    net.hold(0);
    net.hold(1);
    net.run_for(SEC * 5);
    assert!(net.nodes[1].waiting.is_empty(), "the master sent nothing");
    net.release(1);
    net.release(0);
    net.run_for(SEC * 10);
    assert_eq!(net.transitions(1), [(State::Initialize, State::Backup)]);
    assert_eq!(net.masters(), [0]);
}

/// A gap in the master's adverts longer than Master_Down_Interval is a takeover (and, the
/// master being better, a return to Backup when its advert is heard) for a backup that ran
/// through it. A backup held up through the whole gap finds the master's adverts waiting when
/// it runs again: the master is alive, and it stays backup rather than flap.
#[test]
fn an_advert_gap_past_master_down_interval_is_a_takeover_for_a_backup_that_ran_through_it() {
    for held in [false, true] {
        let mut net = Net::new(vec![v3(200, 1), v3(100, 2)]);
        net.start_all();
        net.run_for(ms(10_500));
        if held {
            net.hold(1);
        }
        net.partition(0, 1);
        net.run_for(SEC * 4);
        net.heal();
        net.run_for(SEC * 3);
        if held {
            net.release(1);
        }
        net.run_for(SEC);
        let expected: &[(State, State)] = if held {
            &[(State::Initialize, State::Backup)]
        } else {
            &[
                (State::Initialize, State::Backup),
                (State::Backup, State::Master),
                (State::Master, State::Backup),
            ]
        };
        assert_eq!(net.transitions(1), expected, "held up: {held}");
        assert_eq!(net.masters(), [0], "held up: {held}");
    }
}

/// RFC 3768 §6.1: v2 Skew_Time is (256 - Priority) / 256 s whatever the interval, so with a
/// 2 s interval Master_Down_Interval = 6 s + 0.609375 s.
#[test]
fn v2_backup_takes_over_exactly_master_down_interval_after_the_last_advert() {
    let two = |priority, n| MachineConfig {
        advert_interval: SEC * 2,
        ..cfg(Version::V2, priority, n)
    };
    let mut net = Net::new(vec![two(200, 1), two(100, 2)]);
    net.start_all();
    net.run_for(ms(20_500));
    net.crash(0);
    let last = net.last_advert(0);
    net.run_for(SEC * 20);
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.entered(1, State::Master), Some(last + us(6_609_375)));
}

/// RFC 5798 §6.4.2 (450)-(460): a v3 backup configured for 1 s learns its master's 500 ms, so
/// Master_Down_Interval = 1.5 s + 156 * 0.5 s / 256 = 1.8046875 s.
#[test]
fn v3_backup_uses_the_interval_its_master_advertises() {
    let fast = MachineConfig {
        advert_interval: ms(500),
        ..v3(200, 1)
    };
    let mut net = Net::new(vec![fast, v3(100, 2)]);
    net.start_all();
    net.run_for(SEC * 10);
    assert_eq!(net.nodes[1].machine.master_adver_interval(), ms(500));
    net.crash(0);
    let last = net.last_advert(0);
    net.run_for(SEC * 10);
    assert_eq!(
        net.entered(1, State::Master),
        Some(last + us(1_804_687) + Duration::from_nanos(500))
    );
}

/// RFC 5798 §6.4.3 (655)-(670) and §6.4.2 (430): a stopping master sends priority 0 and
/// the backup takes over after its Skew_Time (156/256 s) instead of a Master_Down_Interval.
#[test]
fn priority_zero_hands_over_after_skew_time() {
    for version in [Version::V3, Version::V2] {
        let mut net = Net::new(vec![cfg(version, 200, 1), cfg(version, 100, 2)]);
        net.start_all();
        net.run_for(ms(10_300));
        let t = net.now;
        net.input(0, Input::Shutdown);
        assert_eq!(net.nodes[0].sent.last(), Some(&(t, 0)));
        net.run_for(SEC * 10);
        assert_eq!(net.masters(), [1]);
        assert_eq!(net.entered(1, State::Master), Some(t + us(609_375)));
        assert_eq!(net.state(0), State::Initialize);
    }
}

/// RFC 5798 §6.1 Skew_Time: among several backups the highest priority fires first, and its
/// advert resets the others' timers; with priority 0 too.
#[test]
fn among_three_routers_the_best_backup_takes_over() {
    let mut net = Net::new(vec![v3(100, 1), v3(250, 2), v3(150, 3)]);
    let t0 = net.start_all();
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [1]);
    assert_eq!(
        net.entered(1, State::Master),
        Some(t0 + us(3_023_437) + Duration::from_nanos(500))
    );

    // Crash: 3 s + 106/256 s after the last advert, router 3 (150) wins.
    net.crash(1);
    let last = net.last_advert(1);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [2]);
    assert_eq!(
        net.entered(2, State::Master),
        Some(last + us(3_414_062) + Duration::from_nanos(500))
    );
    assert_eq!(net.transitions(0), [(State::Initialize, State::Backup)]);

    // Priority 0 from router 3: router 1 is the only backup left and takes over after its skew.
    let t = net.now;
    net.input(2, Input::Shutdown);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [0]);
    assert_eq!(net.entered(0, State::Master), Some(t + us(609_375)));
}

/// RFC 5798 §6.4.2 (470): a higher-priority backup with preempt discards the lower
/// master's adverts, so its own Master_Down_Timer (3.21875 s from startup) makes it master; the
/// old master steps down on its first advert (§6.4.3 (730)-(735)).
#[test]
fn preempting_backup_takes_over_from_a_lower_priority_master() {
    let mut net = Net::new(vec![v3(100, 1), v3(200, 2)]);
    net.input(0, Input::Startup);
    net.run_for(ms(10_400));
    assert_eq!(net.masters(), [0]);
    let s = net.now;
    net.input(1, Input::Startup);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.entered(1, State::Master), Some(s + us(3_218_750)));
    assert_eq!(net.entered(0, State::Backup), Some(s + us(3_218_750)));
}

/// RFC 5798 §6.4.2 (450)-(460) with Preempt_Mode False: the lower-priority master keeps the role.
#[test]
fn nopreempt_backup_leaves_a_lower_priority_master_alone() {
    let nopreempt = MachineConfig {
        preempt: false,
        ..v3(200, 2)
    };
    let mut net = Net::new(vec![v3(100, 1), nopreempt]);
    net.input(0, Input::Startup);
    net.run_for(ms(10_400));
    net.input(1, Input::Startup);
    net.run_for(SEC * 60);
    assert_eq!(net.masters(), [0]);
    assert_eq!(net.transitions(1), [(State::Initialize, State::Backup)]);
    assert_eq!(net.nodes[1].machine.master(), Some(addr(1)));
}

/// `preempt_delay` (see `MachineConfig::preempt_delay`): the first advert from the lower master
/// arrives at t1; adverts are accepted until t1 + 10 s, so the last accepted one is at t1 + 9 s
/// and the takeover comes one Master_Down_Interval (3.21875 s) later.
#[test]
fn preempt_delay_holds_the_takeover_until_the_delay_has_passed() {
    let delayed = MachineConfig {
        preempt_delay: SEC * 10,
        ..v3(200, 2)
    };
    let mut net = Net::new(vec![v3(100, 1), delayed]);
    net.input(0, Input::Startup);
    net.run_for(ms(10_400));
    net.input(1, Input::Startup);
    let s = net.now;
    // Zero latency: router 2 hears router 1's next advert when it is sent.
    let t1 = net.nodes[0].machine.next_timeout().unwrap();
    net.run_until(s + SEC * 30);
    assert_eq!(net.masters(), [1]);
    assert_eq!(
        net.entered(1, State::Master),
        Some(t1 + SEC * 9 + us(3_218_750))
    );
}

/// Tracking (`Input::SetPriorityDelta`): the master's next advert carries its lowered priority,
/// the preempting backup discards it and takes over (RFC 5798 §6.4.2 (470)); restoring the
/// priority gives the role back the same way.
#[test]
fn tracking_penalty_moves_master_away_and_restoring_it_moves_it_back() {
    let mut net = Net::new(vec![v3(200, 1), v3(150, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    assert_eq!(net.masters(), [0]);

    net.input(0, Input::SetPriorityDelta(-100));
    let accepted = net.last_advert(0); // the last advert at priority 200
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [1]);
    // 3 s + (256 - 150) / 256 s after the last advert router 2 accepted.
    assert_eq!(
        net.entered(1, State::Master),
        Some(accepted + us(3_414_062) + Duration::from_nanos(500))
    );
    assert_eq!(net.state(0), State::Backup);

    net.input(0, Input::SetPriorityDelta(0));
    let accepted = net.last_advert(1);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [0]);
    // The running Master_Down_Timer keeps the deadline it got when router 1 accepted that
    // advert at priority 100: 3 s + 156/256 s. The new priority applies from the next reset.
    assert_eq!(
        net.entered(0, State::Master),
        Some(accepted + us(3_609_375))
    );
    assert_eq!(net.state(1), State::Backup);
}

/// `Input::Fault`: a faulty master resigns with priority 0 (the peer takes over after its
/// Skew_Time); on recovery it restarts as Backup and, with preempt, reclaims the role one full
/// Master_Down_Interval later (it never accepts the lower master's adverts).
#[test]
fn fault_hands_over_and_recovery_rejoins_as_backup() {
    let mut net = Net::new(vec![v3(200, 1), v3(100, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    let t = net.now;
    net.input(0, Input::Fault(true));
    assert_eq!(net.state(0), State::Fault);
    assert!(!net.nodes[0].holds_vips);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.entered(1, State::Master), Some(t + us(609_375)));
    assert_eq!(net.nodes[0].machine.next_timeout(), None);

    let back = net.now;
    net.input(0, Input::Fault(false));
    assert_eq!(net.state(0), State::Backup);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [0]);
    assert_eq!(net.entered(0, State::Master), Some(back + us(3_218_750)));
}

#[test]
fn fault_recovery_without_preempt_stays_backup() {
    let nopreempt = MachineConfig {
        preempt: false,
        ..v3(200, 1)
    };
    let mut net = Net::new(vec![nopreempt, v3(100, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    assert_eq!(net.masters(), [0]);
    net.input(0, Input::Fault(true));
    net.run_for(SEC * 5);
    net.input(0, Input::Fault(false));
    net.run_for(SEC * 60);
    assert_eq!(net.masters(), [1]);
}

/// `Input::Relinquish`: the master sends priority 0, the peer takes over after its Skew_Time,
/// and the old master follows the new, lower-priority one instead of preempting it back.
#[test]
fn relinquish_moves_master_to_the_peer_without_flapping_back() {
    let mut net = Net::new(vec![v3(200, 1), v3(100, 2)]);
    net.start_all();
    net.run_for(ms(10_500));
    let t = net.now;
    net.input(0, Input::Relinquish);
    net.run_for(SEC * 60);
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.entered(1, State::Master), Some(t + us(609_375)));
    assert_eq!(
        net.transitions(0),
        [
            (State::Initialize, State::Backup),
            (State::Backup, State::Master),
            (State::Master, State::Backup)
        ]
    );
    assert_eq!(net.nodes[0].machine.master(), Some(addr(2)));

    // The new master goes away: the old one takes the role back.
    let t = net.now;
    net.input(1, Input::Shutdown);
    net.run_for(SEC * 10);
    assert_eq!(net.masters(), [0]);
    assert_eq!(net.entered(0, State::Master), Some(t + us(218_750)));
}

/// RFC 5798 §6.4.1, the Priority = 255 branch: the owner is master from its first instant; the
/// current master steps down on its first advert (255 beats anything, §6.4.3 (730)-(735)).
#[test]
fn owner_takes_over_at_startup() {
    let mut net = Net::new(vec![v3(100, 1), v3(255, 2)]);
    net.input(0, Input::Startup);
    net.run_for(ms(10_400));
    assert_eq!(net.masters(), [0]);
    let s = net.now;
    net.input(1, Input::Startup);
    assert_eq!(net.entered(1, State::Master), Some(s));
    net.run_for(SEC * 30);
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.entered(0, State::Backup), Some(s));
    assert_eq!(net.dual_master_ends(), [s]);
}

/// Split brain: while partitioned both routers are master; once the link heals each hears the
/// other within one advert interval, and the worse one steps down (RFC 5798 §6.4.3 (730)-(735)).
#[test]
fn split_brain_resolves_within_one_advert_interval_after_the_partition_heals() {
    for (version, (pa, pb)) in [
        (Version::V3, (200, 100)),
        (Version::V3, (100, 100)),
        (Version::V2, (200, 100)),
        (Version::V2, (100, 200)),
    ] {
        let mut net = Net::new(vec![cfg(version, pa, 1), cfg(version, pb, 2)]);
        net.start_all();
        net.run_for(ms(10_250));
        net.partition(0, 1);
        net.run_for(ms(20_300));
        assert_eq!(
            net.masters(),
            [0, 1],
            "{version:?} both master while partitioned"
        );
        let healed = net.now;
        net.heal();
        net.run_for(SEC * 30);

        let winner = if pa > pb || (pa == pb && addr(1) > addr(2)) {
            0
        } else {
            1
        };
        assert_eq!(net.masters(), [winner], "{version:?} {pa} vs {pb}");
        let ends = net.dual_master_ends();
        let end = *ends.last().unwrap();
        assert!(
            end > healed && end <= healed + SEC,
            "{version:?}: split brain ended at {:?} after heal",
            end - healed
        );
        // Exactly: the loser hears the winner's first advert after the heal.
        let first = net.nodes[winner]
            .sent
            .iter()
            .map(|&(t, _)| t)
            .find(|&t| t >= healed)
            .unwrap();
        assert_eq!(end, first);
    }
}

/// One disruption in a random scenario.
#[derive(Debug, Clone)]
enum Op {
    Run(u64),
    Partition(usize, usize),
    Heal,
    Freeze(usize),
    Resume(usize),
    Input(usize, Input),
}

fn any_op(n: usize) -> impl Strategy<Value = Op> {
    let node = 0..n;
    prop_oneof![
        4 => (0u64..8_000).prop_map(Op::Run),
        1 => (0..n, 0..n).prop_map(|(a, b)| Op::Partition(a, b)),
        1 => Just(Op::Heal),
        1 => node.clone().prop_map(Op::Freeze),
        1 => node.clone().prop_map(Op::Resume),
        1 => node.clone().prop_map(|i| Op::Input(i, Input::Shutdown)),
        1 => node.clone().prop_map(|i| Op::Input(i, Input::Startup)),
        1 => (node.clone(), any::<bool>()).prop_map(|(i, f)| Op::Input(i, Input::Fault(f))),
        1 => (node.clone(), -150i32..150).prop_map(|(i, d)| Op::Input(i, Input::SetPriorityDelta(d))),
        1 => node.prop_map(|i| Op::Input(i, Input::Relinquish)),
    ]
}

proptest! {
    /// Whatever happened before (partitions, frozen routers, restarts, faults, tracking, swaps),
    /// once the network is whole and every router healthy, within 60 s there is exactly one
    /// master; unless someone relinquished, it has the highest priority (RFC 5798 §6.4.2 (470),
    /// §6.4.3 (730)-(735)). One router may be the owner.
    #[test]
    fn any_history_settles_on_one_master(
        v3 in any::<bool>(),
        owner in any::<bool>(),
        priorities in proptest::collection::vec(1u8..=254, 2..=3),
        ops in proptest::collection::vec(any_op(3), 0..30),
    ) {
        let version = if v3 { Version::V3 } else { Version::V2 };
        let n = priorities.len();
        let configs = priorities
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let p = if owner && i == 0 { 255 } else { p };
                cfg(version, p, i as u8 + 1)
            })
            .collect();
        let mut net = Net::new(configs);
        net.start_all();
        let mut relinquished = false;
        for op in ops {
            match op {
                Op::Run(ms_) => net.run_for(ms(ms_)),
                Op::Partition(a, b) => net.partition(a % n, b % n),
                Op::Heal => net.heal(),
                Op::Freeze(i) => net.crash(i % n),
                Op::Resume(i) => net.resume(i % n),
                Op::Input(i, input) => {
                    relinquished |= input == Input::Relinquish;
                    if net.nodes[i % n].alive {
                        net.input(i % n, input);
                    }
                }
            }
        }
        net.heal();
        for i in 0..n {
            net.resume(i);
            net.input(i, Input::Fault(false));
            net.input(i, Input::SetPriorityDelta(0));
            net.input(i, Input::Startup);
        }
        net.run_for(SEC * 60);
        let masters = net.masters();
        prop_assert_eq!(masters.len(), 1, "masters: {:?}", masters);
        if !relinquished {
            let best = (0..n).map(|i| net.nodes[i].machine.effective_priority()).max();
            prop_assert_eq!(Some(net.nodes[masters[0]].machine.effective_priority()), best);
        }
        for (i, node) in net.nodes.iter().enumerate() {
            prop_assert_eq!(node.holds_vips, masters.contains(&i));
        }
    }
}
