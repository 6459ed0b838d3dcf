//! Balancing algorithms: which backend of a pool gets the next client connection.
//!
//! A [`Balancer`] is built once per pool and config generation, then shared read-only by every
//! data-plane thread. Everything that changes between picks (connection counts, health, drain,
//! `max_conns`) is read through [`BackendView`] at pick time, so health changes need no rebuild;
//! only a config reload (which may change the backend list or weights) builds a new balancer.
//!
//! Backends are split into two groups, primaries and backups, each with its own algorithm state.
//! Backups are a failover reserve, not extra capacity: they are considered only when no primary
//! is eligible for this client, so a single healthy primary still takes all the traffic.
//!
//! Picking is on the accept path of every connection: it never allocates and never takes a lock
//! (the only shared mutable state is a few relaxed atomics).

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

mod least_conn;
mod maglev;
mod p2c;
mod wrr;

#[cfg(test)]
mod tests;

/// What a balancer reads about one backend at pick time. Implemented by the data plane's pool.
pub trait BackendView {
    /// Stable identity of the backend (Maglev sorts and hashes by it).
    fn addr(&self) -> SocketAddr;
    /// Relative share of new connections, 1..=256 (0 is treated as 1).
    fn weight(&self) -> u32;
    /// Backups take traffic only when no primary is usable.
    fn is_backup(&self) -> bool;
    /// Live connections now (an atomic load in the real implementation).
    fn active_conns(&self) -> u64;
    /// Up, not drained, below its `max_conns`.
    fn is_usable(&self) -> bool;
}

/// The balancing algorithm of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Weighted least connections.
    LeastConn,
    /// Power of two random choices, the less loaded (per weight) of the two wins.
    P2c,
    /// Consistent hashing of the client's source IP (Maglev).
    Maglev,
}

/// Picks backends for one pool. Built at start and on each reload; `Send + Sync`, and picking
/// takes `&self`.
pub struct Balancer {
    algorithm: Algorithm,
    primaries: Group,
    backups: Group,
}

impl Balancer {
    /// Builds the per-group state (round-robin sequence, Maglev table, …) for `backends`.
    ///
    /// Weights and addresses are read here and not again: they only change with a config
    /// reload, which builds a new balancer.
    pub fn new<B: BackendView>(algorithm: Algorithm, backends: &[B]) -> Balancer {
        let primaries = Group::new(algorithm, backends, false);
        let backups = Group::new(algorithm, backends, true);
        Balancer {
            algorithm,
            primaries,
            backups,
        }
    }

    /// Index (into `backends`, the same list as given to [`Balancer::new`]) of the backend for
    /// `client`, or None when no backend is usable.
    ///
    /// Never returns an index that is not usable or that is in `exclude` (backends this client
    /// already failed to connect to). Backups are considered only when no primary is usable
    /// and not excluded.
    pub fn pick<B: BackendView>(
        &self,
        backends: &[B],
        client: IpAddr,
        exclude: &[usize],
    ) -> Option<usize> {
        debug_assert!(
            self.primaries.members.len() + self.backups.members.len() == backends.len(),
            "pick() must get the backend list the balancer was built from"
        );
        // Only Maglev uses the client; hashing it once here serves both groups.
        let client_hash = match self.algorithm {
            Algorithm::Maglev => maglev::client_hash(client),
            _ => 0,
        };
        self.primaries
            .pick(backends, client_hash, exclude)
            .or_else(|| self.backups.pick(backends, client_hash, exclude))
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl fmt::Debug for Balancer {
    /// Summarised: the Maglev tables have 65,537 entries per group.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("algorithm", &self.algorithm)
            .field("primaries", &self.primaries.members)
            .field("backups", &self.backups.members)
            .finish()
    }
}

/// One group of backends (the primaries or the backups) and its algorithm state.
struct Group {
    /// Indices into the backend list, in the order given. Algorithms work on positions in this
    /// list ("member positions") and the group maps them back to backend indices.
    members: Box<[usize]>,
    /// Weight of each member, clamped to at least 1.
    weights: Box<[u32]>,
    /// None when the group is empty.
    state: Option<State>,
}

enum State {
    RoundRobin(wrr::Wrr),
    LeastConn(least_conn::LeastConn),
    P2c,
    Maglev(maglev::Table),
}

impl Group {
    fn new<B: BackendView>(algorithm: Algorithm, backends: &[B], backup: bool) -> Self {
        let members: Box<[usize]> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_backup() == backup)
            .map(|(i, _)| i)
            .collect();
        let weights: Box<[u32]> = members
            .iter()
            .map(|&i| backends[i].weight().max(1))
            .collect();
        let state = (!members.is_empty()).then(|| match algorithm {
            Algorithm::RoundRobin => State::RoundRobin(wrr::Wrr::new(&weights)),
            Algorithm::LeastConn => State::LeastConn(least_conn::LeastConn::new()),
            Algorithm::P2c => State::P2c,
            Algorithm::Maglev => {
                let addrs_and_weights: Vec<(SocketAddr, u32)> = members
                    .iter()
                    .zip(weights.iter())
                    .map(|(&i, &w)| (backends[i].addr(), w))
                    .collect();
                State::Maglev(maglev::Table::build(&addrs_and_weights))
            }
        });
        Self {
            members,
            weights,
            state,
        }
    }

    fn pick<B: BackendView>(
        &self,
        backends: &[B],
        client_hash: u64,
        exclude: &[usize],
    ) -> Option<usize> {
        let state = self.state.as_ref()?;
        let view = GroupView {
            members: &self.members,
            weights: &self.weights,
            backends,
            exclude,
        };
        let position = match state {
            State::RoundRobin(wrr) => wrr.pick(&view),
            State::LeastConn(lc) => lc.pick(&view),
            State::P2c => p2c::pick(&view),
            State::Maglev(table) => maglev::pick(table, &view, client_hash),
        }?;
        let index = self.members[position];
        debug_assert!(view.eligible(position));
        Some(index)
    }
}

/// One group's members as seen by a single pick. Positions are indices into `members`.
struct GroupView<'a, B> {
    members: &'a [usize],
    weights: &'a [u32],
    backends: &'a [B],
    exclude: &'a [usize],
}

impl<B: BackendView> GroupView<'_, B> {
    fn len(&self) -> usize {
        self.members.len()
    }

    /// Usable and not excluded. A backend index outside the list (a caller passing a different
    /// list than it built from) counts as not eligible rather than panicking on the data path.
    fn eligible(&self, position: usize) -> bool {
        let index = self.members[position];
        !self.exclude.contains(&index) && self.backends.get(index).is_some_and(|b| b.is_usable())
    }

    fn any_eligible(&self) -> bool {
        (0..self.len()).any(|p| self.eligible(p))
    }

    fn weight(&self, position: usize) -> u32 {
        self.weights[position]
    }

    fn active(&self, position: usize) -> u64 {
        self.backends
            .get(self.members[position])
            .map_or(u64::MAX, |b| b.active_conns())
    }
}

/// Compares two loads `active / weight` exactly, by cross-multiplication (u64 × u32 fits in
/// u128, so no overflow and no float rounding that could make equal loads unequal).
fn compare_load(a_active: u64, a_weight: u32, b_active: u64, b_weight: u32) -> Ordering {
    (u128::from(a_active) * u128::from(b_weight))
        .cmp(&(u128::from(b_active) * u128::from(a_weight)))
}
