//! Smooth weighted round robin.
//!
//! The classic smooth algorithm (each step every member gains its weight, the richest is picked
//! and pays the total) interleaves picks: weights 5,1,1 give `a a b a c a a` rather than a burst
//! of five `a`s. Running it per pick needs a lock around the running totals, so instead the
//! whole period is computed once at build time and picks walk it with one atomic cursor.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{BackendView, GroupView};

/// Upper bound on the period (before the `+ members` slack that rounding up may add): keeps the
/// precomputed sequence at a few hundred KiB even for many heavily weighted backends.
pub(super) const MAX_SEQUENCE: u64 = 65_536;

pub(super) struct Wrr {
    /// One full period of the smooth sequence, as member positions.
    sequence: Box<[u32]>,
    /// Total picks (slots taken) so far; the next slot is `cursor % sequence.len()`.
    cursor: AtomicUsize,
}

impl Wrr {
    /// `weights` of the group's members (each ≥ 1, group not empty).
    pub(super) fn new(weights: &[u32]) -> Self {
        let sequence = smooth_sequence(&reduced_weights(weights))
            .into_iter()
            .map(|p| u32::try_from(p).expect("fewer than 2^32 backends"))
            .collect();
        Self {
            sequence,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next eligible member position, or None when no member is eligible.
    ///
    /// A slot whose member is not eligible is skipped by taking the *next shared* slot (another
    /// `fetch_add`), not by looking at the following slot: the skipped member's turns are then
    /// spread over the others in the sequence's own proportions instead of all going to
    /// whichever member happens to follow it.
    pub(super) fn pick<B: BackendView>(&self, view: &GroupView<'_, B>) -> Option<usize> {
        let first = self.next();
        if view.eligible(first) {
            return Some(first);
        }
        // The slow path. Checking for an eligible member first keeps "whole group down" (every
        // pick while the backups serve) at O(members) instead of a walk through the period.
        if !view.any_eligible() {
            return None;
        }
        (1..self.sequence.len())
            .map(|_| self.next())
            .find(|&p| view.eligible(p))
    }

    fn next(&self) -> usize {
        let slot = self.cursor.fetch_add(1, Relaxed) % self.sequence.len();
        self.sequence[slot] as usize
    }
}

/// Weights divided by their gcd (so 2,4 has period 3, not 6), first scaled down proportionally
/// when their sum exceeds [`MAX_SEQUENCE`]. Scaling rounds to nearest with a floor of 1, so a
/// light backend keeps at least one turn per period and the period stays within
/// `MAX_SEQUENCE + members`.
pub(super) fn reduced_weights(weights: &[u32]) -> Vec<u64> {
    let mut reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let total: u64 = reduced.iter().sum();
    if total > MAX_SEQUENCE {
        for w in &mut reduced {
            *w = ((*w * MAX_SEQUENCE + total / 2) / total).max(1);
        }
    }
    let divisor = reduced.iter().copied().fold(0, gcd);
    if divisor > 1 {
        for w in &mut reduced {
            *w /= divisor;
        }
    }
    reduced
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One period (`sum(weights)` picks) of smooth weighted round robin, ties going to the earlier
/// member. O(period × members), paid once per build.
pub(super) fn smooth_sequence(weights: &[u64]) -> Vec<usize> {
    let total: u64 = weights.iter().sum();
    let signed_total = i64::try_from(total).expect("period is bounded");
    let mut current = vec![0_i64; weights.len()];
    let mut sequence = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for i in 0..current.len() {
            current[i] += i64::try_from(weights[i]).expect("weight is bounded");
            // `best <= i`, so current[best] already holds this step's value.
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= signed_total;
        sequence.push(best);
    }
    sequence
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestBackend, ip, pick_counts};
    use super::super::{Algorithm, Balancer};
    use super::*;

    fn letters(sequence: &[usize]) -> String {
        sequence
            .iter()
            .map(|&p| char::from(b'a' + u8::try_from(p).unwrap()).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn smooth_sequence_interleaves_5_1_1() {
        assert_eq!(letters(&smooth_sequence(&[5, 1, 1])), "a a b a c a a");
    }

    #[test]
    fn balancer_picks_follow_the_smooth_sequence() {
        let backends = TestBackend::weighted(&[5, 1, 1]);
        let balancer = Balancer::new(Algorithm::RoundRobin, &backends);
        let picks: Vec<usize> = (0..14)
            .map(|_| balancer.pick(&backends, ip(1), &[]).unwrap())
            .collect();
        assert_eq!(
            letters(&picks),
            "a a b a c a a a a b a c a a",
            "the period repeats"
        );
    }

    #[test]
    fn weights_are_reduced_by_their_gcd() {
        assert_eq!(reduced_weights(&[2, 4]), vec![1, 2]);
        assert_eq!(reduced_weights(&[10, 10, 10]), vec![1, 1, 1]);
        assert_eq!(reduced_weights(&[3, 5]), vec![3, 5]);
    }

    #[test]
    fn long_periods_are_scaled_down_keeping_proportions() {
        let mut weights = vec![256_u32; 300];
        weights.push(1);
        let reduced = reduced_weights(&weights);
        let period: u64 = reduced.iter().sum();
        assert!(period <= MAX_SEQUENCE + weights.len() as u64, "{period}");
        assert_eq!(reduced[300], 1, "a light backend keeps a turn");
        assert!(reduced[..300].iter().all(|&w| w == reduced[0]));
        assert!(
            reduced[0] >= 200,
            "heavy ones keep their ratio: {}",
            reduced[0]
        );
    }

    #[test]
    fn distribution_over_7000_picks_is_exactly_proportional() {
        let backends = TestBackend::weighted(&[5, 1, 1]);
        let counts = pick_counts(Algorithm::RoundRobin, &backends, 7000, &[]);
        assert_eq!(counts, vec![5000, 1000, 1000]);
    }

    #[test]
    fn unusable_and_excluded_backends_are_never_picked() {
        let backends = TestBackend::weighted(&[5, 1, 1, 3]);
        backends[0].set_usable(false);
        let counts = pick_counts(Algorithm::RoundRobin, &backends, 1000, &[2]);
        assert_eq!(counts[0], 0);
        assert_eq!(counts[2], 0);
        assert_eq!(counts[1] + counts[3], 1000);
    }

    #[test]
    fn shares_of_the_rest_stay_proportional_when_one_is_down() {
        // Period of 3,2,1 is `a b a c b a`; with b down each period yields a a c a.
        let backends = TestBackend::weighted(&[3, 2, 1]);
        backends[1].set_usable(false);
        let counts = pick_counts(Algorithm::RoundRobin, &backends, 4000, &[]);
        assert_eq!(counts, vec![3000, 0, 1000]);
    }

    #[test]
    fn nothing_usable_gives_none() {
        let backends = TestBackend::weighted(&[5, 1, 1]);
        let balancer = Balancer::new(Algorithm::RoundRobin, &backends);
        assert_eq!(balancer.pick(&backends, ip(1), &[0, 1, 2]), None);
        for b in &backends {
            b.set_usable(false);
        }
        assert_eq!(balancer.pick(&backends, ip(1), &[]), None);
    }
}
