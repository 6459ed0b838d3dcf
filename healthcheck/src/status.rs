//! Rise/fall counting: turns a stream of probe results into "up" or "down".
//!
//! Pure on purpose: no I/O and no clock reads (the caller passes `now`), so the rules below are
//! tested exactly and the monitor stays a thin scheduler around them.
//!
//! The rules, as in HAProxy:
//! - an up target goes down after `fall` failures in a row; any success resets that count;
//! - a down target comes up after `rise` successes in a row; any failure resets that count;
//! - a passive ejection (the data plane's own connects failed) takes it down at once, and only
//!   `rise` fresh successful probes bring it back.

use tokio::time::Instant;

/// How many results in a row flip the state. Both are at least 1; a 0 is treated as 1 so a
/// misconfigured threshold can never leave a target stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thresholds {
    /// Successes in a row that bring a down target up.
    pub rise: u32,
    /// Failures in a row that take an up target down.
    pub fall: u32,
}

impl Default for Thresholds {
    /// `rise = 2, fall = 3`: one lucky probe does not admit a backend, two unlucky ones do not
    /// evict it.
    fn default() -> Self {
        Self { rise: 2, fall: 3 }
    }
}

/// An up/down flip, returned by [`HealthStatus::record`] and [`HealthStatus::eject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new state.
    pub up: bool,
    /// Why, in a short sentence for logs and `/status`.
    pub reason: String,
}

/// The health of one target, and the counters behind it (shown as-is by `/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthStatus {
    /// Whether traffic may go to the target.
    pub up: bool,
    /// Successful probes in a row (0 after any failure or ejection).
    pub consecutive_ok: u32,
    /// Failed probes in a row (0 after any success).
    pub consecutive_fail: u32,
    /// The most recent failure, kept after recovery so an operator can see why it flapped.
    pub last_error: Option<String>,
    /// When `up` last flipped; `None` if it never has.
    pub last_change: Option<Instant>,
    /// When the last probe result was recorded; `None` before the first probe.
    pub last_check: Option<Instant>,
    /// Probe results recorded (ejections are not probes and do not count).
    pub checks: u64,
    /// How long the last probe took (for latency metrics); `None` before the first.
    pub last_duration: Option<std::time::Duration>,
}

impl HealthStatus {
    /// A target nobody has probed yet. `start_up` decides whether it takes traffic before its
    /// first probes: `true` avoids an outage at start, `false` avoids sending to a dead backend.
    pub fn new(start_up: bool) -> Self {
        Self {
            up: start_up,
            consecutive_ok: 0,
            consecutive_fail: 0,
            last_error: None,
            last_change: None,
            last_check: None,
            checks: 0,
            last_duration: None,
        }
    }

    /// Applies one probe result; returns `Some(transition)` when up/down flips.
    pub fn record(
        &mut self,
        result: Result<(), String>,
        t: Thresholds,
        now: Instant,
    ) -> Option<Change> {
        self.checks = self.checks.saturating_add(1);
        self.last_check = Some(now);
        match result {
            Ok(()) => {
                self.consecutive_ok = self.consecutive_ok.saturating_add(1);
                self.consecutive_fail = 0;
                let rise = t.rise.max(1);
                if self.up || self.consecutive_ok < rise {
                    return None;
                }
                self.up = true;
                self.last_change = Some(now);
                let reason = if rise == 1 {
                    "check passed".to_owned()
                } else {
                    format!("{rise} checks passed in a row")
                };
                Some(Change { up: true, reason })
            }
            Err(error) => {
                self.consecutive_fail = self.consecutive_fail.saturating_add(1);
                self.consecutive_ok = 0;
                let fall = t.fall.max(1);
                let reason = if fall == 1 {
                    error.clone()
                } else {
                    format!("{error} ({fall} checks failed in a row)")
                };
                self.last_error = Some(error);
                if !self.up || self.consecutive_fail < fall {
                    return None;
                }
                self.up = false;
                self.last_change = Some(now);
                Some(Change { up: false, reason })
            }
        }
    }

    /// Passive signal from the data plane: its consecutive connect failures reached the
    /// configured limit, so the target goes down at once (`Some(change)` if it was up) rather
    /// than waiting for `fall` probes. Recovery only via probes: the success streak restarts, so
    /// `rise` fresh successes are needed even if a recovery was under way.
    pub fn eject(&mut self, reason: String, now: Instant) -> Option<Change> {
        self.consecutive_ok = 0;
        self.last_error = Some(reason.clone());
        if !self.up {
            return None;
        }
        self.up = false;
        self.last_change = Some(now);
        Some(Change { up: false, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: Thresholds = Thresholds { rise: 2, fall: 3 };

    fn fail(s: &mut HealthStatus, now: Instant) -> Option<Change> {
        s.record(Err("connect failed".into()), T, now)
    }

    fn pass(s: &mut HealthStatus, now: Instant) -> Option<Change> {
        s.record(Ok(()), T, now)
    }

    #[test]
    fn goes_down_on_the_third_failure_when_fall_is_three() {
        let now = Instant::now();
        let mut s = HealthStatus::new(true);
        assert_eq!(fail(&mut s, now), None);
        assert_eq!(fail(&mut s, now), None);
        assert!(s.up);
        let later = now + Duration::from_secs(3);
        let change = fail(&mut s, later).expect("third failure flips");
        assert!(!change.up);
        assert!(
            change.reason.contains("connect failed"),
            "{}",
            change.reason
        );
        assert!(!s.up);
        assert_eq!(s.consecutive_fail, 3);
        assert_eq!(s.last_change, Some(later));
        assert_eq!(s.checks, 3);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let now = Instant::now();
        let mut s = HealthStatus::new(true);
        fail(&mut s, now);
        fail(&mut s, now);
        assert_eq!(pass(&mut s, now), None);
        assert_eq!(s.consecutive_fail, 0);
        fail(&mut s, now);
        assert_eq!(
            fail(&mut s, now),
            None,
            "only two in a row since the success"
        );
        assert!(s.up);
        assert!(fail(&mut s, now).is_some());
    }

    #[test]
    fn comes_back_after_rise_successes_and_a_failure_resets_the_streak() {
        let now = Instant::now();
        let mut s = HealthStatus::new(false);
        assert_eq!(pass(&mut s, now), None);
        fail(&mut s, now);
        assert_eq!(s.consecutive_ok, 0);
        assert_eq!(pass(&mut s, now), None);
        let change = pass(&mut s, now).expect("second success in a row flips");
        assert!(change.up);
        assert!(s.up);
        assert_eq!(s.consecutive_ok, 2);
    }

    #[test]
    fn starts_down_when_start_up_is_false_and_no_probe_ran() {
        let s = HealthStatus::new(false);
        assert!(!s.up);
        assert_eq!((s.checks, s.last_check, s.last_change), (0, None, None));
        assert!(HealthStatus::new(true).up);
    }

    #[test]
    fn failures_while_down_and_successes_while_up_publish_nothing() {
        let now = Instant::now();
        let mut down = HealthStatus::new(false);
        for _ in 0..10 {
            assert_eq!(fail(&mut down, now), None);
        }
        let mut up = HealthStatus::new(true);
        for _ in 0..10 {
            assert_eq!(pass(&mut up, now), None);
        }
        assert_eq!(up.last_change, None);
    }

    #[test]
    fn eject_goes_down_at_once_and_only_rise_probes_bring_it_back() {
        let now = Instant::now();
        let mut s = HealthStatus::new(true);
        pass(&mut s, now);
        let change = s
            .eject("3 connects failed".into(), now)
            .expect("up -> down");
        assert_eq!(
            change,
            Change {
                up: false,
                reason: "3 connects failed".into()
            }
        );
        assert!(!s.up);
        assert_eq!(s.consecutive_ok, 0);
        assert_eq!(s.checks, 1, "an ejection is not a probe");
        assert_eq!(pass(&mut s, now), None);
        assert!(pass(&mut s, now).expect("rise = 2").up);
    }

    #[test]
    fn eject_while_down_restarts_the_recovery_streak_without_a_transition() {
        let now = Instant::now();
        let mut s = HealthStatus::new(false);
        pass(&mut s, now);
        assert_eq!(s.eject("connect refused".into(), now), None);
        assert_eq!(pass(&mut s, now), None, "streak restarted by the ejection");
        assert!(pass(&mut s, now).is_some());
    }

    #[test]
    fn last_error_is_kept_after_recovery() {
        let now = Instant::now();
        let mut s = HealthStatus::new(true);
        s.record(Err("status 500, expected 200-399".into()), T, now);
        pass(&mut s, now);
        assert_eq!(
            s.last_error.as_deref(),
            Some("status 500, expected 200-399")
        );
        s.record(Err("timed out after 500ms".into()), T, now);
        assert_eq!(s.last_error.as_deref(), Some("timed out after 500ms"));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let now = Instant::now();
        let zero = Thresholds { rise: 0, fall: 0 };
        let mut s = HealthStatus::new(true);
        assert!(s.record(Err("x".into()), zero, now).is_some());
        assert!(s.record(Ok(()), zero, now).is_some());
    }
}
