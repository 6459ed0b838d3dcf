//! Log output: human-readable lines by default, one JSON object per line with `--log-format json`.
//! The level comes from `RUST_LOG` (e.g. `RUST_LOG=debug` or `RUST_LOG=lb=debug`), default info.
//! And [`Throttle`]: one line for many events, for whatever a client can make happen often.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::time::Instant;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// How often at most a throttled line is said: one line per idea (shed admin connections,
/// rejected admin requests, clients reset for `max_conns_per_source`) per this long.
pub const THROTTLE_EVERY: Duration = Duration::from_secs(10);

/// A log line for events a client can cause by the thousand: said at the first event, then at
/// most once per `every`, each time with how many events it covers. Events after a line are
/// counted and said with the next one, which the next event after `every` brings. Pure: the
/// caller gives the time and says the line.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    /// Events since the last line.
    pending: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            pending: 0,
        }
    }

    /// One more event at `now`: `Some(n)` when a line is due, `n` the events since the last
    /// line, this one included.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self.last.is_some_and(|last| now < last + self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(THROTTLE_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_line_comes_at_the_first_event_then_at_most_every_period_with_the_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut throttle = Throttle::new(10 * s);
        assert_eq!(
            throttle.note(t0),
            Some(1),
            "the first event is said at once"
        );
        for i in 1..=999 {
            assert_eq!(
                throttle.note(t0 + s * i / 100),
                None,
                "quiet within the period"
            );
        }
        assert_eq!(
            throttle.note(t0 + 10 * s),
            Some(1000),
            "the next line says every event since the last"
        );
        assert_eq!(throttle.note(t0 + 15 * s), None);
        // A long quiet spell: the next event is said at once, with the one held back.
        assert_eq!(throttle.note(t0 + 100 * s), Some(2));
        assert_eq!(throttle.note(t0 + 100 * s), None);
    }
}
