use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

#[test]
fn a_value_lands_in_the_first_bucket_whose_bound_holds_it() {
    let mut h = Histogram::default();
    h.record(Duration::ZERO);
    h.record(us(100)); // on the bound: `le` includes it
    h.record(us(101));
    h.record(ms(3));
    h.record(Duration::from_secs(10));
    h.record(Duration::from_secs(11)); // above every bound: +Inf
    let counts: Vec<(Option<Duration>, u64)> = h.buckets().filter(|(_, n)| *n > 0).collect();
    assert_eq!(
        counts,
        [
            (Some(us(100)), 2),
            (Some(us(200)), 1),
            (Some(ms(5)), 1),
            (Some(Duration::from_secs(10)), 1),
            (None, 1),
        ]
    );
    assert_eq!(h.buckets().count(), BUCKETS.len() + 1);
    assert_eq!(h.count(), 6);
    assert_eq!(
        h.sum(),
        us(100) + us(101) + ms(3) + Duration::from_secs(21),
        "the sum is exact"
    );
}

#[test]
fn the_bucket_bounds_rise() {
    assert!(BUCKETS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_sum_too_large_saturates_instead_of_wrapping() {
    let mut h = Histogram::default();
    h.record(Duration::MAX);
    h.record(Duration::MAX);
    assert_eq!(h.sum(), Duration::from_nanos(u64::MAX));
    assert_eq!(h.count(), 2);
}

#[test]
fn the_recent_worst_lateness_is_the_longest_of_the_current_and_previous_window() {
    let t0 = Instant::now();
    let mut w = RecentWorst::new(Worse::Longer);
    assert_eq!(w.get(t0), None, "nothing yet");
    w.record(t0, ms(3));
    w.record(t0 + ms(10), ms(1));
    assert_eq!(w.get(t0 + ms(10)), Some(ms(3)));
    // The next window: the last one's worst is still recent.
    w.record(t0 + RECENT_WINDOW + ms(1), ms(2));
    assert_eq!(w.get(t0 + RECENT_WINDOW + ms(1)), Some(ms(3)));
    // Two windows on, the 3 ms is forgotten; the 2 ms of the window before is not.
    assert_eq!(w.get(t0 + RECENT_WINDOW * 2 + ms(1)), Some(ms(2)));
    w.record(t0 + RECENT_WINDOW * 2 + ms(1), ms(1));
    assert_eq!(w.get(t0 + RECENT_WINDOW * 2 + ms(1)), Some(ms(2)));
    // Long quiet: nothing recent.
    assert_eq!(w.get(t0 + RECENT_WINDOW * 4), None);
    w.record(t0 + RECENT_WINDOW * 10, us(1));
    assert_eq!(w.get(t0 + RECENT_WINDOW * 10), Some(us(1)));
}

#[test]
fn the_recent_worst_margin_is_the_shortest() {
    let t0 = Instant::now();
    let mut w = RecentWorst::new(Worse::Shorter);
    w.record(t0, ms(20));
    w.record(t0 + ms(10), ms(7));
    w.record(t0 + ms(20), ms(19));
    assert_eq!(w.get(t0 + ms(20)), Some(ms(7)));
    w.record(t0 + RECENT_WINDOW, ms(9));
    assert_eq!(w.get(t0 + RECENT_WINDOW), Some(ms(7)));
    assert_eq!(w.get(t0 + RECENT_WINDOW * 2), Some(ms(9)));
}

/// 10 ms adverts at priority 100: Master_Down_Interval = 30 ms + 156/256 * 10 ms.
#[test]
fn a_margin_under_a_quarter_of_master_down_interval_is_low_and_counted() {
    let mdi = us(36_093);
    assert!(!is_low_margin(us(9_024), mdi));
    assert!(is_low_margin(us(9_023), mdi));
    let t0 = Instant::now();
    let mut timing = Timing::default();
    assert!(!timing.record_margin(t0, ms(26), mdi));
    assert!(timing.record_margin(t0 + ms(10), ms(2), mdi));
    assert!(!timing.record_margin(t0 + ms(20), ms(25), mdi));
    assert_eq!(timing.low_margins, 1);
    assert_eq!(timing.master_down_margin.count(), 3);
    assert_eq!(timing.worst_margin(t0 + ms(20)), Some(ms(2)));
    assert_eq!(timing.send_lateness.count(), 0, "a backup sends nothing");
    assert_eq!(timing.worst_send_lateness(t0), None);
    timing.record_send_lateness(t0, us(400));
    timing.record_send_lateness(t0 + ms(10), us(900));
    assert_eq!(timing.worst_send_lateness(t0 + ms(10)), Some(us(900)));
    assert_eq!(timing.send_lateness.sum(), us(1_300));
}

#[test]
fn an_arrival_is_the_read_time_less_the_age_the_kernel_stamp_gives() {
    let read = Instant::now();
    let not_before = read - Duration::from_secs(60);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        arrival(read, wall, Some(wall - ms(250)), not_before),
        read - ms(250)
    );
    assert_eq!(arrival(read, wall, Some(wall), not_before), read);
    assert_eq!(
        arrival(read, wall, None, not_before),
        read,
        "no stamp: the read"
    );
}

#[test]
fn a_stepped_real_time_clock_cannot_move_an_arrival_past_what_is_certain() {
    let read = Instant::now();
    let previous = read - ms(100);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // Stepped back after the stamp: the stamp is "in the future".
    assert_eq!(arrival(read, wall, Some(wall + ms(5)), previous), read);
    // Stepped forward an hour: it cannot have come before the datagram ahead of it.
    assert_eq!(
        arrival(read, wall, Some(wall - Duration::from_secs(3600)), previous),
        previous
    );
}

#[test]
fn a_warning_is_given_at_most_once_per_period_with_the_count_since_the_last() {
    let t0 = Instant::now();
    let every = Duration::from_secs(10);
    let mut w = Warnings::new(every);
    assert_eq!(w.due(t0, 0), None, "nothing to say");
    assert_eq!(w.due(t0, 1), Some(1), "the first at once");
    assert_eq!(w.due(t0 + ms(200), 5), None, "held back");
    assert_eq!(w.due(t0 + Duration::from_secs(9), 7), None);
    assert_eq!(w.due(t0 + every, 7), Some(6), "the ones held back, counted");
    assert_eq!(w.due(t0 + every * 5, 7), None, "none new");
    assert_eq!(
        w.due(t0 + every * 5, 8),
        Some(1),
        "a quiet period ends: at once"
    );
}
