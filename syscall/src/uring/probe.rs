//! Does this thread's ring wake it promptly? Asked once at start, on the thread that will use
//! the ring, before any client does (see `lb::data_threads`).
//!
//! A ping-pong through a socket pair: a helper thread writes a byte, the ring's thread echoes
//! it with a ring receive and a ring send, and the helper times the round trip. Before each
//! round the helper sleeps, so the ring's thread is asleep in `epoll_wait` when the byte lands,
//! as an idle data thread is when a client speaks: the case a late or lost wake-up spoils.
//!
//! For a deferring ring it also watches how the kernel signalled. Where the signal is prompt,
//! the kernel raises it inside the helper's own send: the socket's wake-up queues the ring's
//! work and queueing it signals the eventfd. A kernel that defers the signal (to an RCU
//! callback; docs/ARCHITECTURE.md, "Waking a ring") has not raised it when the send returns,
//! even where the grace period is short enough to pass the timing test.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokio::time::Instant;

use super::ring::{self, Received, RingKind};

/// Round trips per probe.
pub const ROUNDS: usize = 8;

/// How long the helper sleeps before each round, for the ring's thread to fall asleep.
const SETTLE: Duration = Duration::from_millis(2);

/// A round trip not answered within this ends the probe: the ring did not wake its thread.
const ROUND_LIMIT: Duration = Duration::from_millis(100);

/// The median round trip above which a ring is not prompt. A prompt wake-up takes tens of
/// microseconds; a late one waits for an RCU grace period (14-24 ms on the kernel that showed
/// it). The margin is for a machine busy at start.
pub const PROMPT: Duration = Duration::from_millis(5);

/// What one probe saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WakeProbe {
    /// Round trips asked for.
    pub rounds: usize,
    /// Round trips answered, in order. The first unanswered round ends the probe.
    pub round_trips: Vec<Duration>,
    /// Rounds whose send had signalled the ring's eventfd by the time it returned.
    pub signalled_in_send: usize,
}

impl WakeProbe {
    /// The median answered round trip.
    pub fn median(&self) -> Option<Duration> {
        let mut sorted = self.round_trips.clone();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied()
    }

    /// Whether a ring of `kind` woke its thread promptly, or why not.
    pub fn verdict(&self, kind: RingKind) -> Result<(), String> {
        let answered = self.round_trips.len();
        if answered < self.rounds {
            return Err(format!(
                "{} of {} round trips got no answer within {} ms",
                self.rounds - answered,
                self.rounds,
                ROUND_LIMIT.as_millis()
            ));
        }
        let Some(median) = self.median() else {
            return Err("no round trip was made".to_owned());
        };
        if median > PROMPT {
            return Err(format!(
                "round trips took {} (median of {}; prompt is under {} ms)",
                millis(median),
                self.rounds,
                PROMPT.as_millis()
            ));
        }
        if kind == RingKind::Deferring && self.signalled_in_send * 2 <= self.rounds {
            return Err(format!(
                "the kernel signalled the ring's eventfd after the send returned in {} of {} \
                 rounds (it defers the signal; round trips {})",
                self.rounds - self.signalled_in_send,
                self.rounds,
                millis(median)
            ));
        }
        Ok(())
    }

    /// The measurement in a few words, for the log and `/status`.
    pub fn summary(&self) -> String {
        match self.median() {
            Some(median) => format!(
                "round trip {} (median of {})",
                millis(median),
                self.round_trips.len()
            ),
            None => "no round trip answered".to_owned(),
        }
    }
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Runs the ping-pong on this thread's ring, a ring of `kind`, and once more if the first
/// attempt turns it down: a start-up stall of the machine should not cost a node its ring.
/// Call from the thread's runtime, with nothing else busy on it.
pub async fn probe(kind: RingKind) -> io::Result<WakeProbe> {
    let first = attempt().await?;
    if first.verdict(kind).is_ok() {
        return Ok(first);
    }
    attempt().await
}

async fn attempt() -> io::Result<WakeProbe> {
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let signal = ring::signal_fd()?;
    let helper = std::thread::Builder::new()
        .name("tandem-wake-probe".to_owned())
        .spawn(move || ping(theirs, signal))?;
    // The helper closes its end when it is done or gives up, which ends the echo; the time
    // limit only matters if even that end is never seen (a ring that never wakes).
    let patience = (SETTLE + ROUND_LIMIT) * ROUNDS as u32 + Duration::from_secs(1);
    let _ = tokio::time::timeout(patience, echo(ours.as_raw_fd())).await;
    drop(ours);
    // Bounded: the helper gives up on a round after ROUND_LIMIT.
    helper
        .join()
        .map_err(|_| io::Error::other("the wake-up probe's helper thread panicked"))
}

/// Echoes every byte through the ring until the other end closes.
async fn echo(fd: RawFd) {
    loop {
        match ring::recv(fd).await {
            Received::Data(buf) => {
                let (sent, buf) = ring::send(fd, buf, 0).await;
                ring::give_back(buf);
                if sent.is_err() {
                    return;
                }
            }
            Received::NoBuffers => {
                if !ring::grow_buffers() {
                    return;
                }
            }
            Received::End | Received::Failed(_) => return,
        }
    }
}

/// The helper's side: ROUNDS timed round trips, each after a pause.
fn ping(mut stream: UnixStream, signal: OwnedFd) -> WakeProbe {
    let mut seen = WakeProbe {
        rounds: ROUNDS,
        ..WakeProbe::default()
    };
    if stream.set_read_timeout(Some(ROUND_LIMIT)).is_err() {
        return seen;
    }
    let mut signal = File::from(signal);
    for _ in 0..ROUNDS {
        std::thread::sleep(SETTLE);
        let _ = signalled(&mut signal);
        let start = Instant::now();
        if stream.write_all(&[1]).is_err() {
            break;
        }
        if signalled(&mut signal) {
            seen.signalled_in_send += 1;
        }
        let mut byte = [0u8; 1];
        if stream.read_exact(&mut byte).is_err() {
            break;
        }
        seen.round_trips.push(start.elapsed());
    }
    seen
}

/// Whether the eventfd was signalled since the last call (reading it resets its count; the
/// ring's driver never reads it, it waits for edges).
fn signalled(signal: &mut File) -> bool {
    let mut count = [0u8; 8];
    matches!(signal.read(&mut count), Ok(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(round_trips_us: &[u64], signalled_in_send: usize) -> WakeProbe {
        WakeProbe {
            rounds: ROUNDS,
            round_trips: round_trips_us
                .iter()
                .map(|&us| Duration::from_micros(us))
                .collect(),
            signalled_in_send,
        }
    }

    const FAST: [u64; ROUNDS] = [60, 55, 70, 80, 65, 900, 58, 61];

    #[test]
    fn a_ring_answering_every_round_in_microseconds_is_prompt() {
        assert_eq!(seen(&FAST, 0).verdict(RingKind::Plain), Ok(()));
        assert_eq!(seen(&FAST, ROUNDS).verdict(RingKind::Deferring), Ok(()));
    }

    #[test]
    fn a_ring_waiting_a_grace_period_per_wake_up_is_not_prompt() {
        let late = [
            16_100, 15_900, 23_000, 16_000, 14_500, 16_200, 19_800, 16_050,
        ];
        let why = seen(&late, 0).verdict(RingKind::Plain).unwrap_err();
        assert!(why.contains("16.10 ms"), "{why}");
        assert!(seen(&late, ROUNDS).verdict(RingKind::Deferring).is_err());
    }

    #[test]
    fn a_few_slow_rounds_on_a_busy_machine_do_not_turn_a_ring_down() {
        let busy = [60, 9_000, 70, 12_000, 65, 8_000, 58, 61];
        assert_eq!(seen(&busy, ROUNDS).verdict(RingKind::Deferring), Ok(()));
    }

    #[test]
    fn an_unanswered_round_turns_a_ring_down_whatever_the_others_did() {
        let why = seen(&FAST[..5], ROUNDS)
            .verdict(RingKind::Plain)
            .unwrap_err();
        assert!(why.starts_with("3 of 8 round trips got no answer"), "{why}");
    }

    #[test]
    fn a_deferring_ring_whose_signal_comes_after_the_send_is_turned_down_even_when_fast() {
        // A short grace period can hide a deferred signal from the timing; not from this.
        let why = seen(&FAST, ROUNDS / 2)
            .verdict(RingKind::Deferring)
            .unwrap_err();
        assert!(why.contains("after the send returned in 4 of 8"), "{why}");
        assert_eq!(
            seen(&FAST, ROUNDS / 2 + 1).verdict(RingKind::Deferring),
            Ok(())
        );
        // A plain ring's eventfd is signalled by its own thread, after it wakes: never in
        // the send, and that is no fault.
        assert_eq!(seen(&FAST, 0).verdict(RingKind::Plain), Ok(()));
    }

    #[test]
    fn the_median_is_the_middle_round() {
        assert_eq!(seen(&FAST, 0).median(), Some(Duration::from_micros(65)));
        assert_eq!(seen(&[], 0).median(), None);
    }
}
