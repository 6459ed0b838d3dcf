//! Weighted least connections: the eligible member with the lowest `active / weight`.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{BackendView, GroupView, compare_load};

pub(super) struct LeastConn {
    /// Where the next scan starts. Ties go to the first member scanned, so without rotation the
    /// first of several idle backends would take every new connection until its count rose
    /// (and with short connections it may never rise enough to matter).
    start: AtomicUsize,
}

impl LeastConn {
    pub(super) fn new() -> Self {
        Self {
            start: AtomicUsize::new(0),
        }
    }

    /// O(members): one scan, reading each eligible member's count once.
    pub(super) fn pick<B: BackendView>(&self, view: &GroupView<'_, B>) -> Option<usize> {
        let n = view.len();
        let start = self.start.fetch_add(1, Relaxed) % n;
        let mut best: Option<(usize, u64, u32)> = None;
        for position in (start..n).chain(0..start) {
            if !view.eligible(position) {
                continue;
            }
            let (active, weight) = (view.active(position), view.weight(position));
            let lighter = match best {
                None => true,
                Some((_, best_active, best_weight)) => {
                    compare_load(active, weight, best_active, best_weight) == Ordering::Less
                }
            };
            if lighter {
                best = Some((position, active, weight));
            }
        }
        best.map(|(position, _, _)| position)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestBackend, ip, pick_counts};
    use super::super::{Algorithm, Balancer};

    #[test]
    fn picks_the_fewest_active_conns_per_weight() {
        let backends = TestBackend::weighted(&[1, 4, 2]);
        backends[0].set_active(10); // 10 per weight
        backends[1].set_active(20); // 5 per weight
        backends[2].set_active(12); // 6 per weight
        let balancer = Balancer::new(Algorithm::LeastConn, &backends);
        for _ in 0..10 {
            assert_eq!(balancer.pick(&backends, ip(1), &[]), Some(1));
        }
        backends[1].set_active(21); // 5.25 per weight, still the least
        assert_eq!(balancer.pick(&backends, ip(1), &[]), Some(1));
        backends[1].set_active(25); // 6.25: now index 2 wins
        assert_eq!(balancer.pick(&backends, ip(1), &[]), Some(2));
    }

    #[test]
    fn ties_rotate_between_equal_backends() {
        let backends = TestBackend::weighted(&[1, 1, 1]);
        let balancer = Balancer::new(Algorithm::LeastConn, &backends);
        let first: Vec<usize> = (0..3)
            .map(|_| balancer.pick(&backends, ip(1), &[]).unwrap())
            .collect();
        assert_eq!(first, vec![0, 1, 2]);
        let counts = pick_counts(Algorithm::LeastConn, &backends, 300, &[]);
        assert_eq!(counts, vec![100, 100, 100]);
    }

    #[test]
    fn ties_are_judged_per_weight() {
        // 2/1 == 4/2: a tie, so both get picks.
        let backends = TestBackend::weighted(&[1, 2, 1]);
        backends[0].set_active(2);
        backends[1].set_active(4);
        backends[2].set_active(3);
        let counts = pick_counts(Algorithm::LeastConn, &backends, 300, &[]);
        assert_eq!(counts[2], 0);
        assert!(counts[0] > 0 && counts[1] > 0, "{counts:?}");
    }

    #[test]
    fn skips_unusable_and_excluded_even_when_least_loaded() {
        let backends = TestBackend::weighted(&[1, 1, 1, 1]);
        backends[2].set_active(5);
        backends[3].set_active(9);
        backends[0].set_usable(false);
        let balancer = Balancer::new(Algorithm::LeastConn, &backends);
        for _ in 0..8 {
            assert_eq!(balancer.pick(&backends, ip(1), &[1]), Some(2));
        }
        assert_eq!(balancer.pick(&backends, ip(1), &[1, 2, 3]), None);
    }
}
