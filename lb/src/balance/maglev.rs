//! Maglev consistent hashing of the client's source IP (Eisenbud et al., NSDI '16).
//!
//! Each backend gets a pseudo-random permutation of the table's slots (from an offset and a
//! skip derived from its address); backends take turns claiming their next preferred free slot
//! until the table is full. The result spreads clients evenly, and changing the backend set
//! moves few clients other than those of the backend that changed.
//!
//! Two Tandem nodes in front of the same backends must send a given client to the same backend
//! (after a failover, the client's existing affinity survives). So everything that decides the
//! table is a pure function of the configured addresses and weights: backends are ordered by
//! address, not by config order, and every hash uses a fixed seed — never `RandomState`, whose
//! per-process keys would give each node (and each restart) a different table.

use std::net::{IpAddr, SocketAddr};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{BackendView, GroupView};

/// Table size: prime (so every skip in `1..SIZE` generates a full permutation) and, at 65,537,
/// large enough that with up to a few hundred backends each one's share is within about 1% of
/// its fair share.
pub(super) const SIZE: usize = 65_537;

/// Seeds of the per-backend offset and skip hashes. Fixed forever: changing one remaps almost
/// every client, and two nodes running different versions would then disagree.
const OFFSET_SEED: u64 = 0x7461_6e64_656d_6f66; // "tandemof"
const SKIP_SEED: u64 = 0x7461_6e64_656d_736b; // "tandemsk"
/// Seed of the client-IP hash; fixed for the same reason.
const CLIENT_SEED: u64 = 0x7461_6e64_656d_636c; // "tandemcl"

const EMPTY: u32 = u32::MAX;

/// The lookup table of one group: slot → backend.
pub(super) struct Table {
    /// `SIZE` entries, each an index into the slice given to [`Table::build`].
    entries: Box<[u32]>,
}

impl Table {
    /// Builds the table for `backends` (address and weight, weight 0 counting as 1). The
    /// returned indices refer to positions in `backends`, but which *address* a hash maps to
    /// does not depend on the order of `backends`.
    ///
    /// A backend of weight `w` claims `w` slots per turn, so its share of the table is
    /// proportional to `w`. Panics when `backends` is empty.
    pub(super) fn build(backends: &[(SocketAddr, u32)]) -> Table {
        assert!(!backends.is_empty(), "a Maglev table needs a backend");
        assert!(backends.len() < EMPTY as usize, "too many backends");
        let names: Vec<String> = backends.iter().map(|(addr, _)| addr.to_string()).collect();
        let mut order: Vec<usize> = (0..backends.len()).collect();
        // By address string; a duplicated address (which config validation should reject)
        // is ordered by weight so the table still does not depend on the input order.
        order.sort_by(|&a, &b| {
            names[a]
                .cmp(&names[b])
                .then(backends[a].1.cmp(&backends[b].1))
        });

        struct Turn {
            index: u32,
            weight: u32,
            /// The next slot of this backend's permutation to try.
            next: u64,
            skip: u64,
        }
        let size = SIZE as u64;
        let mut turns: Vec<Turn> = order
            .iter()
            .map(|&i| {
                let name = names[i].as_bytes();
                Turn {
                    index: u32::try_from(i).expect("checked above"),
                    weight: backends[i].1.max(1),
                    next: xxh3_64_with_seed(name, OFFSET_SEED) % size,
                    skip: xxh3_64_with_seed(name, SKIP_SEED) % (size - 1) + 1,
                }
            })
            .collect();

        let mut entries = vec![EMPTY; SIZE];
        let mut filled = 0;
        'fill: loop {
            for turn in &mut turns {
                for _ in 0..turn.weight {
                    // Terminates: the permutation visits every slot, and one is still free.
                    loop {
                        let slot = turn.next as usize;
                        turn.next = (turn.next + turn.skip) % size;
                        if entries[slot] == EMPTY {
                            entries[slot] = turn.index;
                            break;
                        }
                    }
                    filled += 1;
                    if filled == SIZE {
                        break 'fill;
                    }
                }
            }
        }
        Table {
            entries: entries.into_boxed_slice(),
        }
    }

    /// The backend (index into the slice given to `build`) that owns `hash`.
    pub(super) fn lookup(&self, hash: u64) -> usize {
        self.entries[slot_of(hash)] as usize
    }

    /// Every entry from `hash`'s slot onward, wrapping once around the table: the fallback
    /// order when the owner cannot take the client. It depends only on the table, so every node
    /// sends the client to the same fallback, and only the owner's clients move.
    pub(super) fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = slot_of(hash);
        self.entries[start..]
            .iter()
            .chain(&self.entries[..start])
            .map(|&e| e as usize)
    }
}

fn slot_of(hash: u64) -> usize {
    // The remainder is below SIZE, which fits in usize.
    (hash % SIZE as u64) as usize
}

/// The Maglev key of a client: xxh3 of its IP octets (4 bytes for IPv4, 16 for IPv6).
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4
/// clients) is hashed as the IPv4 address, so the client maps the same whichever way the node
/// listens.
pub(super) fn client_hash(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => xxh3_64_with_seed(&v4.octets(), CLIENT_SEED),
        IpAddr::V6(v6) => xxh3_64_with_seed(&v6.octets(), CLIENT_SEED),
    }
}

/// The table's member for `hash`, or the first eligible one walking forward from it.
pub(super) fn pick<B: BackendView>(
    table: &Table,
    view: &GroupView<'_, B>,
    hash: u64,
) -> Option<usize> {
    let owner = table.lookup(hash);
    if view.eligible(owner) {
        return Some(owner);
    }
    // A whole group down (every pick while backups serve) costs O(members), not a table walk.
    if !view.any_eligible() {
        return None;
    }
    table
        .walk(hash)
        .filter(|&p| p != owner)
        .find(|&p| view.eligible(p))
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestBackend;
    use super::super::{Algorithm, Balancer};
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| {
                if i % 3 == 2 {
                    SocketAddr::new(
                        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16).into(),
                        443,
                    )
                } else {
                    SocketAddr::new(Ipv4Addr::new(10, 1, (i / 200) as u8, i as u8).into(), 8080)
                }
            })
            .collect()
    }

    fn with_weight(addrs: &[SocketAddr], weight: u32) -> Vec<(SocketAddr, u32)> {
        addrs.iter().map(|&a| (a, weight)).collect()
    }

    /// Deterministic pseudo-random client IPs, a quarter of them IPv6.
    fn clients(n: usize) -> Vec<IpAddr> {
        let mut rng = fastrand::Rng::with_seed(42);
        (0..n)
            .map(|_| {
                if rng.u8(..4) == 0 {
                    IpAddr::V6(Ipv6Addr::from(rng.u128(..)))
                } else {
                    IpAddr::V4(Ipv4Addr::from(rng.u32(..)))
                }
            })
            .collect()
    }

    fn counts(table: &Table, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &e in table.entries.iter() {
            counts[e as usize] += 1;
        }
        counts
    }

    #[test]
    fn every_slot_is_filled() {
        let table = Table::build(&with_weight(&addrs(7), 1));
        assert_eq!(table.entries.len(), SIZE);
        assert!(table.entries.iter().all(|&e| e < 7));
    }

    #[test]
    fn tables_built_from_different_orders_agree_for_10000_clients() {
        let forward = addrs(20);
        let mut shuffled = forward.clone();
        fastrand::Rng::with_seed(7).shuffle(&mut shuffled);
        assert_ne!(forward, shuffled);
        let a = Table::build(&with_weight(&forward, 3));
        let b = Table::build(&with_weight(&shuffled, 3));
        for client in clients(10_000) {
            let hash = client_hash(client);
            assert_eq!(
                forward[a.lookup(hash)],
                shuffled[b.lookup(hash)],
                "{client}"
            );
        }
    }

    #[test]
    fn balancers_built_from_different_orders_pick_the_same_address() {
        let forward = addrs(9);
        let mut reversed = forward.clone();
        reversed.reverse();
        let a_backends: Vec<TestBackend> = forward.iter().map(|&a| TestBackend::at(a, 1)).collect();
        let b_backends: Vec<TestBackend> =
            reversed.iter().map(|&a| TestBackend::at(a, 1)).collect();
        // The same backend down on both nodes: the fallback agrees too.
        a_backends[4].set_usable(false);
        b_backends[4].set_usable(false);
        let a = Balancer::new(Algorithm::Maglev, &a_backends);
        let b = Balancer::new(Algorithm::Maglev, &b_backends);
        for client in clients(10_000) {
            let from_a = forward[a.pick(&a_backends, client, &[]).unwrap()];
            let from_b = reversed[b.pick(&b_backends, client, &[]).unwrap()];
            assert_eq!(from_a, from_b, "{client}");
        }
    }

    /// Pins the hash functions and seeds: a build that changes them would disagree with nodes
    /// still running the old one about every client.
    #[test]
    fn mapping_is_stable_across_versions() {
        let addrs = addrs(4);
        let table = Table::build(&with_weight(&addrs, 1));
        let picked: Vec<usize> = (1..=8)
            .map(|i| table.lookup(client_hash(Ipv4Addr::new(192, 0, 2, i).into())))
            .collect();
        assert_eq!(picked, GOLDEN);
    }
    const GOLDEN: [usize; 8] = [3, 3, 2, 0, 3, 1, 0, 1];

    #[test]
    fn ipv4_mapped_ipv6_clients_hash_as_ipv4() {
        let v4 = Ipv4Addr::new(198, 51, 100, 7);
        assert_eq!(
            client_hash(v4.into()),
            client_hash(v4.to_ipv6_mapped().into())
        );
        assert_ne!(
            client_hash(v4.into()),
            client_hash(Ipv4Addr::new(198, 51, 100, 8).into())
        );
    }

    #[test]
    fn equal_weights_share_the_table_and_the_clients_within_10_percent() {
        let n = 5;
        let table = Table::build(&with_weight(&addrs(n), 1));
        let fair = SIZE as f64 / n as f64;
        for c in counts(&table, n) {
            assert!((c as f64 - fair).abs() <= fair * 0.10, "{c} vs {fair}");
        }
        let mut by_client = vec![0_usize; n];
        let total = 50_000;
        for client in clients(total) {
            by_client[table.lookup(client_hash(client))] += 1;
        }
        let fair = total as f64 / n as f64;
        for c in by_client {
            assert!((c as f64 - fair).abs() <= fair * 0.10, "{c} vs {fair}");
        }
    }

    #[test]
    fn shares_are_proportional_to_weights_within_10_percent() {
        let weights = [1, 2, 3, 4, 10];
        let input: Vec<(SocketAddr, u32)> = addrs(5).into_iter().zip(weights).collect();
        let table = Table::build(&input);
        let total_weight: u32 = weights.iter().sum();
        for (c, w) in counts(&table, 5).into_iter().zip(weights) {
            let fair = SIZE as f64 * f64::from(w) / f64::from(total_weight);
            assert!((c as f64 - fair).abs() <= fair * 0.10, "{c} vs {fair}");
        }
    }

    #[test]
    fn removing_one_of_five_backends_keeps_at_least_95_percent_of_the_others_clients() {
        let all = addrs(5);
        let removed = all[2];
        let rest: Vec<SocketAddr> = all.iter().copied().filter(|&a| a != removed).collect();
        let before = Table::build(&with_weight(&all, 1));
        let after = Table::build(&with_weight(&rest, 1));
        let (mut others, mut kept) = (0, 0);
        for client in clients(20_000) {
            let hash = client_hash(client);
            let was = all[before.lookup(hash)];
            let now = rest[after.lookup(hash)];
            assert_ne!(now, removed);
            if was != removed {
                others += 1;
                if was == now {
                    kept += 1;
                }
            }
        }
        let kept_share = f64::from(kept) / f64::from(others);
        assert!(
            kept_share >= 0.95,
            "only {kept_share:.4} kept their backend"
        );
    }

    #[test]
    fn an_unusable_backends_clients_move_and_everyone_else_stays() {
        let backends: Vec<TestBackend> = addrs(5)
            .into_iter()
            .map(|a| TestBackend::at(a, 1))
            .collect();
        let balancer = Balancer::new(Algorithm::Maglev, &backends);
        let clients = clients(10_000);
        let before: Vec<usize> = clients
            .iter()
            .map(|&c| balancer.pick(&backends, c, &[]).unwrap())
            .collect();
        assert!(before.contains(&3));
        backends[3].set_usable(false);
        for (&client, &was) in clients.iter().zip(&before) {
            let now = balancer.pick(&backends, client, &[]).unwrap();
            if was == 3 {
                assert_ne!(now, 3);
            } else {
                assert_eq!(now, was, "{client} moved off a healthy backend");
            }
        }
        // Excluding (a failed connect) moves the client the same deterministic way.
        backends[3].set_usable(true);
        for (&client, &was) in clients.iter().zip(&before).take(1000) {
            let now = balancer.pick(&backends, client, &[was]).unwrap();
            assert_ne!(now, was);
            assert_eq!(balancer.pick(&backends, client, &[was]), Some(now));
        }
    }

    #[test]
    fn the_moved_clients_spread_over_the_remaining_backends() {
        let backends: Vec<TestBackend> = addrs(5)
            .into_iter()
            .map(|a| TestBackend::at(a, 1))
            .collect();
        let balancer = Balancer::new(Algorithm::Maglev, &backends);
        backends[0].set_usable(false);
        let mut counts = [0_usize; 5];
        for client in clients(20_000) {
            counts[balancer.pick(&backends, client, &[]).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1..].iter().all(|&c| c > 2_000), "{counts:?}");
    }

    #[test]
    fn nothing_usable_gives_none() {
        let backends: Vec<TestBackend> = addrs(3)
            .into_iter()
            .map(|a| TestBackend::at(a, 1))
            .collect();
        let balancer = Balancer::new(Algorithm::Maglev, &backends);
        for b in &backends {
            b.set_usable(false);
        }
        assert_eq!(
            balancer.pick(&backends, Ipv4Addr::LOCALHOST.into(), &[]),
            None
        );
        backends[1].set_usable(true);
        assert_eq!(
            balancer.pick(&backends, Ipv4Addr::LOCALHOST.into(), &[]),
            Some(1)
        );
        assert_eq!(
            balancer.pick(&backends, Ipv4Addr::LOCALHOST.into(), &[1]),
            None
        );
    }
}
