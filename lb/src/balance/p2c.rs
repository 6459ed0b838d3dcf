//! Power of two choices: of two distinct random eligible members, the less loaded per weight.
//!
//! Unlike least connections it needs no full scan and no shared cursor, and because the choice
//! is random, several balancer nodes (or threads) reading slightly stale counts do not all
//! pile onto the same momentarily idle backend.

use std::cmp::Ordering;

use super::{BackendView, GroupView, compare_load};

/// The chosen member position, or None when no member is eligible.
pub(super) fn pick<B: BackendView>(view: &GroupView<'_, B>) -> Option<usize> {
    let n = view.len();
    if n == 1 {
        return view.eligible(0).then_some(0);
    }
    // Fast path: two distinct positions drawn uniformly. When both are eligible this is a
    // uniform draw of an eligible pair, the same distribution as the slow path's.
    let a = fastrand::usize(..n);
    let mut b = fastrand::usize(..n - 1);
    if b >= a {
        b += 1;
    }
    if view.eligible(a) && view.eligible(b) {
        return Some(lighter(view, a, b));
    }
    slow_pick(view)
}

/// Some members are not eligible: count the eligible ones, then draw two distinct ranks among
/// them and find those in a second scan. O(members), no allocation.
fn slow_pick<B: BackendView>(view: &GroupView<'_, B>) -> Option<usize> {
    let eligible = (0..view.len()).filter(|&p| view.eligible(p)).count();
    if eligible <= 1 {
        return (0..view.len()).find(|&p| view.eligible(p));
    }
    let rank_a = fastrand::usize(..eligible);
    let mut rank_b = fastrand::usize(..eligible - 1);
    if rank_b >= rank_a {
        rank_b += 1;
    }
    let (mut a, mut b) = (None, None);
    for (rank, position) in (0..view.len()).filter(|&p| view.eligible(p)).enumerate() {
        if rank == rank_a {
            a = Some(position);
        } else if rank == rank_b {
            b = Some(position);
        }
    }
    // Eligibility may change between the two scans (another thread took the last slot below
    // `max_conns`, a health check flipped): settle for whichever candidate was found.
    match (a, b) {
        (Some(a), Some(b)) => Some(lighter(view, a, b)),
        (a, b) => a.or(b),
    }
}

/// `a` unless `b` carries strictly less load per weight. `a` is the random first draw, so ties
/// split evenly.
fn lighter<B: BackendView>(view: &GroupView<'_, B>, a: usize, b: usize) -> usize {
    let order = compare_load(
        view.active(b),
        view.weight(b),
        view.active(a),
        view.weight(a),
    );
    if order == Ordering::Less { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestBackend, ip, pick_counts};
    use super::super::{Algorithm, Balancer};

    #[test]
    fn never_picks_unusable_or_excluded() {
        let backends = TestBackend::weighted(&[1; 6]);
        backends[1].set_usable(false);
        backends[4].set_usable(false);
        let counts = pick_counts(Algorithm::P2c, &backends, 10_000, &[0, 5]);
        assert_eq!(
            counts[0] + counts[1] + counts[4] + counts[5],
            0,
            "{counts:?}"
        );
        assert!(counts[2] > 0 && counts[3] > 0, "{counts:?}");
    }

    #[test]
    fn a_heavily_loaded_backend_gets_almost_nothing() {
        let backends = TestBackend::weighted(&[1, 1, 1, 1]);
        backends[2].set_active(1000);
        for (i, b) in backends.iter().enumerate() {
            if i != 2 {
                b.set_active(3);
            }
        }
        let counts = pick_counts(Algorithm::P2c, &backends, 10_000, &[]);
        assert!(counts[2] <= 10, "{counts:?}");
    }

    #[test]
    fn equal_backends_share_roughly_evenly() {
        let backends = TestBackend::weighted(&[1, 1, 1, 1]);
        let counts = pick_counts(Algorithm::P2c, &backends, 40_000, &[]);
        for c in &counts {
            assert!((9_000..=11_000).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn even_among_the_eligible_when_some_are_down() {
        let backends = TestBackend::weighted(&[1, 1, 1, 1, 1]);
        backends[0].set_usable(false);
        backends[3].set_usable(false);
        let counts = pick_counts(Algorithm::P2c, &backends, 30_000, &[]);
        for i in [1, 2, 4] {
            assert!((9_000..=11_000).contains(&counts[i]), "{counts:?}");
        }
    }

    #[test]
    fn a_single_usable_backend_is_always_chosen() {
        let backends = TestBackend::weighted(&[1, 1, 1]);
        backends[0].set_usable(false);
        let balancer = Balancer::new(Algorithm::P2c, &backends);
        for _ in 0..100 {
            assert_eq!(balancer.pick(&backends, ip(1), &[2]), Some(1));
        }
        assert_eq!(balancer.pick(&backends, ip(1), &[1, 2]), None);
    }
}
