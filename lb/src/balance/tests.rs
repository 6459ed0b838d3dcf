//! Tests across algorithms (backups, invariants, timing) and the helpers the per-algorithm
//! tests share.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::{Algorithm, BackendView, Balancer};

const ALL: [Algorithm; 4] = [
    Algorithm::RoundRobin,
    Algorithm::LeastConn,
    Algorithm::P2c,
    Algorithm::Maglev,
];

/// A backend whose dynamic state the test sets directly.
pub(super) struct TestBackend {
    addr: SocketAddr,
    weight: u32,
    backup: bool,
    active: Cell<u64>,
    usable: Cell<bool>,
}

impl TestBackend {
    pub(super) fn at(addr: SocketAddr, weight: u32) -> Self {
        Self {
            addr,
            weight,
            backup: false,
            active: Cell::new(0),
            usable: Cell::new(true),
        }
    }

    /// Usable primaries at 10.0.0.1:80, 10.0.0.2:80, … with these weights.
    pub(super) fn weighted(weights: &[u32]) -> Vec<Self> {
        weights
            .iter()
            .zip(1_u32..)
            .map(|(&w, i)| Self::at(SocketAddr::new(ip(0x0a00_0000 + i), 80), w))
            .collect()
    }

    pub(super) fn set_usable(&self, usable: bool) {
        self.usable.set(usable);
    }

    pub(super) fn set_active(&self, active: u64) {
        self.active.set(active);
    }

    fn set_backup(mut self, backup: bool) -> Self {
        self.backup = backup;
        self
    }
}

impl BackendView for TestBackend {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn is_backup(&self) -> bool {
        self.backup
    }
    fn active_conns(&self) -> u64 {
        self.active.get()
    }
    fn is_usable(&self) -> bool {
        self.usable.get()
    }
}

pub(super) fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

/// How often each backend is picked in `picks` picks by a fresh balancer, one client IP per
/// pick. Panics when a pick finds nothing.
pub(super) fn pick_counts(
    algorithm: Algorithm,
    backends: &[TestBackend],
    picks: u32,
    exclude: &[usize],
) -> Vec<usize> {
    let balancer = Balancer::new(algorithm, backends);
    let mut counts = vec![0; backends.len()];
    for i in 0..picks {
        let picked = balancer
            .pick(backends, ip(0xc000_0200 + i), exclude)
            .expect("a usable backend");
        counts[picked] += 1;
    }
    counts
}

/// Primaries 0 and 1, backups 2 and 3.
fn with_backups() -> Vec<TestBackend> {
    TestBackend::weighted(&[1, 1, 1, 1])
        .into_iter()
        .enumerate()
        .map(|(i, b)| b.set_backup(i >= 2))
        .collect()
}

#[test]
fn balancer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Balancer>();
}

#[test]
fn an_empty_pool_picks_nothing() {
    let backends: Vec<TestBackend> = Vec::new();
    for algorithm in ALL {
        let balancer = Balancer::new(algorithm, &backends);
        assert_eq!(balancer.algorithm(), algorithm);
        assert_eq!(balancer.pick(&backends, ip(1), &[]), None);
    }
}

#[test]
fn backups_get_nothing_while_any_primary_is_usable() {
    for algorithm in ALL {
        let backends = with_backups();
        backends[0].set_usable(false);
        backends[1].set_active(1_000); // even heavily loaded, the primary wins
        let counts = pick_counts(algorithm, &backends, 1_000, &[]);
        assert_eq!(counts, vec![0, 1_000, 0, 0], "{algorithm:?}");
    }
}

#[test]
fn backups_take_over_when_all_primaries_are_unusable() {
    for algorithm in ALL {
        let backends = with_backups();
        backends[0].set_usable(false);
        backends[1].set_usable(false);
        let counts = pick_counts(algorithm, &backends, 1_000, &[]);
        assert_eq!(counts[0] + counts[1], 0, "{algorithm:?}");
        assert!(counts[2] > 0 && counts[3] > 0, "{algorithm:?}: {counts:?}");
    }
}

#[test]
fn backups_take_over_when_all_primaries_are_excluded() {
    for algorithm in ALL {
        let backends = with_backups();
        backends[0].set_usable(false);
        let counts = pick_counts(algorithm, &backends, 1_000, &[1, 3]);
        assert_eq!(counts, vec![0, 0, 1_000, 0], "{algorithm:?}");
    }
}

#[test]
fn nothing_usable_gives_none() {
    for algorithm in ALL {
        let backends = with_backups();
        let balancer = Balancer::new(algorithm, &backends);
        assert_eq!(
            balancer.pick(&backends, ip(1), &[0, 1, 2, 3]),
            None,
            "{algorithm:?}"
        );
        for b in &backends {
            b.set_usable(false);
        }
        assert_eq!(balancer.pick(&backends, ip(1), &[]), None, "{algorithm:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_pick_is_eligible_and_backups_serve_only_as_fallback(
        specs in prop::collection::vec((1_u32..=256, any::<bool>(), any::<bool>(), 0_u64..50), 0..10),
        excluded in any::<u16>(),
        clients in prop::collection::vec(any::<u128>(), 1..16),
    ) {
        let backends: Vec<TestBackend> = specs
            .iter()
            .zip(1_u32..)
            .map(|(&(weight, backup, usable, active), i)| {
                let b = TestBackend::at(SocketAddr::new(ip(0x0a00_0000 + i), 80), weight)
                    .set_backup(backup);
                b.set_usable(usable);
                b.set_active(active);
                b
            })
            .collect();
        let exclude: Vec<usize> = (0..backends.len()).filter(|i| excluded & (1 << i) != 0).collect();
        let eligible = |i: usize| backends[i].is_usable() && !exclude.contains(&i);
        let any_primary = (0..backends.len()).any(|i| !backends[i].is_backup() && eligible(i));
        let any_at_all = (0..backends.len()).any(eligible);
        for algorithm in ALL {
            let balancer = Balancer::new(algorithm, &backends);
            for &client in &clients {
                // Alternate IPv4 and IPv6 clients.
                let client = if client & 1 == 0 {
                    IpAddr::V4(Ipv4Addr::from(client as u32))
                } else {
                    IpAddr::V6(client.into())
                };
                let picked = balancer.pick(&backends, client, &exclude);
                prop_assert_eq!(picked.is_some(), any_at_all, "{:?}", algorithm);
                if let Some(i) = picked {
                    prop_assert!(eligible(i), "{:?} picked ineligible {}", algorithm, i);
                    prop_assert_eq!(backends[i].is_backup(), !any_primary, "{:?}", algorithm);
                }
            }
        }
    }
}

/// Rough cost of one pick; printed, not asserted. Run with
/// `cargo test --release -- --ignored --nocapture pick_timing`.
#[test]
#[ignore = "timing only: run in release with --nocapture"]
#[allow(
    clippy::disallowed_types,
    reason = "a wall-clock measurement outside any runtime; paused time does not apply"
)]
fn pick_timing() {
    const PICKS: u32 = 1_000_000;
    let backends = TestBackend::weighted(&[5, 3, 2, 1, 1, 4, 2, 2, 1, 3]);
    for (i, b) in backends.iter().enumerate() {
        b.set_active(i as u64 * 7 % 10);
    }
    for algorithm in ALL {
        let balancer = Balancer::new(algorithm, &backends);
        let start = std::time::Instant::now();
        let mut sum = 0;
        for i in 0..PICKS {
            sum += balancer.pick(&backends, ip(i), &[]).unwrap();
        }
        let per_pick = start.elapsed().as_nanos() as f64 / f64::from(PICKS);
        println!("{algorithm:?}: {per_pick:.1} ns/pick, 10 backends (checksum {sum})");
    }
    // The slow paths: one backend of ten down, and the client excluding another.
    backends[0].set_usable(false);
    for algorithm in ALL {
        let balancer = Balancer::new(algorithm, &backends);
        let start = std::time::Instant::now();
        let mut sum = 0;
        for i in 0..PICKS {
            sum += balancer.pick(&backends, ip(i), &[5]).unwrap();
        }
        let per_pick = start.elapsed().as_nanos() as f64 / f64::from(PICKS);
        println!("{algorithm:?}: {per_pick:.1} ns/pick, one down, one excluded (checksum {sum})");
    }
}
