//! How close an election runs to its deadlines, measured where the deadlines are: on a master,
//! how late each advert leaves (its send lateness: the time it was sent minus the time its
//! Adver_Timer fell due); on a backup, how much of the Master_Down_Interval was left when the
//! master's next advert arrived (its Master_Down margin, by the kernel's receive timestamp).
//!
//! Pure, like [`crate::machine`]: every time is an argument. The values live in fixed arrays,
//! so recording one allocates nothing and takes no lock; the instance records them on its
//! per-advert path and the daemon reads them for `/metrics` and `/status`.
//!
//! Also here: the arrival time of a datagram on the monotonic clock, from the kernel's
//! real-time stamp ([`arrival`]), and the rate limit of the warning about low margins
//! ([`Warnings`]).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The upper bounds of the histogram buckets, 100 µs to 10 s in 1-2-5 steps, then +Inf: one
/// ladder for lateness (normally well under a millisecond) and margins (about two advert
/// intervals: 20 ms at 10 ms adverts, 2.6 s at 1 s).
pub const BUCKETS: [Duration; 16] = [
    Duration::from_micros(100),
    Duration::from_micros(200),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// A histogram of durations over [`BUCKETS`]: a count per bucket, the total count and the sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: [u64; BUCKETS.len() + 1],
    count: u64,
    /// Sum of all observations in nanoseconds (saturating: 584 years).
    sum_nanos: u64,
}

impl Histogram {
    /// Counts `value` in the first bucket whose bound is at least `value` (OpenMetrics `le`).
    pub fn record(&mut self, value: Duration) {
        let bucket = BUCKETS.partition_point(|bound| *bound < value);
        self.counts[bucket] += 1;
        self.count += 1;
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// Each bucket's upper bound (`None`: +Inf) and its own count (not cumulative), in order.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        BUCKETS
            .iter()
            .copied()
            .map(Some)
            .chain([None])
            .zip(self.counts.iter().copied())
    }
}

/// How long each window of a [`RecentWorst`] lasts: the worst it reports covers at least the
/// last 30 s and at most the last 60 s.
pub const RECENT_WINDOW: Duration = Duration::from_secs(30);

/// Which end of the scale is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worse {
    /// Lateness: the longest is the worst.
    Longer,
    /// Margins: the shortest is the worst.
    Shorter,
}

/// The worst value of the last minute or so, in constant space: the worse of the current
/// window's worst and the previous window's (each [`RECENT_WINDOW`] long). So the worst reported
/// covers at least the last [`RECENT_WINDOW`] and at most twice that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentWorst {
    worse: Worse,
    /// When the current window began; `None` before the first value.
    started: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl RecentWorst {
    pub fn new(worse: Worse) -> Self {
        Self {
            worse,
            started: None,
            current: None,
            previous: None,
        }
    }

    /// Counts `value`, observed at `now` (times must not go back by more than a window).
    pub fn record(&mut self, now: Instant, value: Duration) {
        match self.windows_passed(now) {
            None => self.started = Some(now),
            Some(0) => {}
            Some(passed) => {
                self.previous = if passed == 1 { self.current } else { None };
                self.current = None;
                let started = self.started.unwrap_or(now);
                let whole = RECENT_WINDOW * u32::try_from(passed).unwrap_or(u32::MAX);
                self.started = Some(started.checked_add(whole).unwrap_or(now));
            }
        }
        self.current = Some(self.pick(self.current, value));
    }

    /// The worst value of the recent windows as seen at `now`; `None` if there was none.
    pub fn get(&self, now: Instant) -> Option<Duration> {
        match self.windows_passed(now)? {
            0 => match (self.current, self.previous) {
                (Some(c), p) => Some(self.pick(p, c)),
                (None, p) => p,
            },
            1 => self.current,
            _ => None,
        }
    }

    /// Whole windows between the start of the current one and `now`.
    fn windows_passed(&self, now: Instant) -> Option<u128> {
        let started = self.started?;
        Some(now.saturating_duration_since(started).as_nanos() / RECENT_WINDOW.as_nanos())
    }

    fn pick(&self, old: Option<Duration>, new: Duration) -> Duration {
        match (old, self.worse) {
            (None, _) => new,
            (Some(old), Worse::Longer) => old.max(new),
            (Some(old), Worse::Shorter) => old.min(new),
        }
    }
}

/// A margin below this share of the Master_Down_Interval (a quarter) counts as low: the master's
/// adverts are coming three quarters of the way to a takeover.
pub const LOW_MARGIN_DIVISOR: u32 = 4;

/// What one instance measured: what `/metrics` and `/status` show of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// On a master: each periodic advert's send time minus the time its Adver_Timer fell due.
    pub send_lateness: Histogram,
    /// On a backup: how much of the Master_Down_Interval was left when the master's next
    /// advert arrived.
    pub master_down_margin: Histogram,
    worst_send_lateness: RecentWorst,
    worst_margin: RecentWorst,
    /// Margins below a quarter of the Master_Down_Interval, since start.
    pub low_margins: u64,
    /// Master_Down_Timers served so late that the backup granted a held-up grace instead of
    /// taking over ([`crate::Machine::held_up`]), since start.
    pub held_up_graces: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            send_lateness: Histogram::default(),
            master_down_margin: Histogram::default(),
            worst_send_lateness: RecentWorst::new(Worse::Longer),
            worst_margin: RecentWorst::new(Worse::Shorter),
            low_margins: 0,
            held_up_graces: 0,
        }
    }
}

impl Timing {
    /// A periodic advert left `lateness` after it fell due, at `now`.
    pub fn record_send_lateness(&mut self, now: Instant, lateness: Duration) {
        self.send_lateness.record(lateness);
        self.worst_send_lateness.record(now, lateness);
    }

    /// The master's advert arriving at `now` found `margin` of `master_down_interval` left.
    /// Returns whether that is low (under a quarter of it).
    pub fn record_margin(
        &mut self,
        now: Instant,
        margin: Duration,
        master_down_interval: Duration,
    ) -> bool {
        self.master_down_margin.record(margin);
        self.worst_margin.record(now, margin);
        let low = is_low_margin(margin, master_down_interval);
        if low {
            self.low_margins += 1;
        }
        low
    }

    /// The longest send lateness of the last minute or so (see [`RecentWorst`]).
    pub fn worst_send_lateness(&self, now: Instant) -> Option<Duration> {
        self.worst_send_lateness.get(now)
    }

    /// The shortest Master_Down margin of the last minute or so (see [`RecentWorst`]).
    pub fn worst_margin(&self, now: Instant) -> Option<Duration> {
        self.worst_margin.get(now)
    }
}

/// Whether `margin` is under a quarter of `master_down_interval`.
pub fn is_low_margin(margin: Duration, master_down_interval: Duration) -> bool {
    margin < master_down_interval / LOW_MARGIN_DIVISOR
}

/// When a datagram the kernel stamped `stamped` (real-time clock) arrived, on the monotonic
/// clock, given that it was read at `read` (monotonic) and `read_wall` (real time, taken right
/// after): `read` minus its age, the age being `read_wall - stamped`.
///
/// The real-time clock can be stepped (NTP, an operator), which a monotonic time cannot, so
/// the result is kept within what is certain: no later than the read (an age below zero counts
/// as arriving when read), and no earlier than `not_before`, the arrival of the datagram before
/// it on the same socket (a socket's queue is first in, first out).
///
/// No stamp at all also counts as arriving when read. That is a fallback only: once a socket
/// asks (`SO_TIMESTAMPNS`, which every advert socket does or fails to open), Linux stamps every
/// datagram, at the latest when it is read. Without stamps, an advert read after the deadline
/// would count as one that came after it.
pub fn arrival(
    read: Instant,
    read_wall: SystemTime,
    stamped: Option<SystemTime>,
    not_before: Instant,
) -> Instant {
    let age = stamped
        .and_then(|at| read_wall.duration_since(at).ok())
        .unwrap_or_default();
    read.checked_sub(age)
        .unwrap_or(not_before)
        .max(not_before)
        .min(read)
}

/// The rate limit of a warning about something counted on the per-advert path: checked from
/// a slower timer, it says at most once per `every` how many occurrences there were since it
/// last spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warnings {
    every: Duration,
    last: Option<Instant>,
    /// The running total at the last warning.
    reported: u64,
}

impl Warnings {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            reported: 0,
        }
    }

    /// With `total` occurrences counted so far, at `now`: `Some(new ones)` when a warning is due
    /// (there are new ones and none was given in the last `every`).
    pub fn due(&mut self, now: Instant, total: u64) -> Option<u64> {
        let new = total.checked_sub(self.reported).filter(|n| *n > 0)?;
        if self.last.is_some_and(|last| now < last + self.every) {
            return None;
        }
        self.last = Some(now);
        self.reported = total;
        Some(new)
    }
}

#[cfg(test)]
mod tests;
