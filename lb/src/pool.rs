//! Runtime state of backend pools: what the balancer reads and what the data plane counts.
//!
//! A [`Pool`] is immutable once built (from one config generation) and shared through the
//! generation. The mutable part of each backend — counters, up/drained flags — lives in a
//! [`BackendState`] that the [`crate::registry::Registry`] hands out by (pool, address), so a
//! reload that keeps a backend keeps its counters and health.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::balance::{Algorithm, BackendView, Balancer};
use crate::config::{Balance, Ejection, PoolConfig, Role};

/// Counters and flags of one backend. Survives reloads while the backend stays configured.
#[derive(Debug)]
pub struct BackendState {
    pub addr: SocketAddr,
    /// Connections relayed to this backend right now (UDP: flows open to it).
    pub active: AtomicU64,
    /// Connections successfully established since start.
    pub total: AtomicU64,
    /// Connect attempts that failed (refused, unreachable, timed out).
    pub connect_failures: AtomicU64,
    /// Failures since the last successful connect; the health-check layer ejects on it.
    pub consecutive_failures: AtomicU64,
    /// Bytes from clients to this backend.
    pub bytes_in: AtomicU64,
    /// Bytes from this backend to clients.
    pub bytes_out: AtomicU64,
    /// UDP datagrams from clients to this backend, and back.
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    /// False when health checks (or passive ejection) found the backend down.
    pub up: AtomicBool,
    /// True when an operator drained it: no new connections, existing ones finish.
    pub drained: AtomicBool,
    /// While ejected (no `health`, too many failed connects): until when, in
    /// [`millis_now`] time; 0: not ejected. Read on every pick, so a plain atomic.
    pub ejected_until: AtomicU64,
    /// Ejections in a row (each doubles the next one's time); cleared by a connect that works.
    pub ejections_in_a_row: AtomicU32,
    /// Ejections since start.
    pub ejections: AtomicU64,
}

impl BackendState {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            datagrams_in: AtomicU64::new(0),
            datagrams_out: AtomicU64::new(0),
            up: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            ejected_until: AtomicU64::new(0),
            ejections_in_a_row: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
        }
    }

    /// Whether it is ejected now. The clock is read only while an ejection is set.
    pub fn ejected(&self) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && millis_now() < until
    }

    /// A connect worked: failures in a row and ejections in a row start again from zero.
    pub fn record_connect_success(&self) {
        self.consecutive_failures.store(0, Relaxed);
        if self.ejections_in_a_row.load(Relaxed) != 0 {
            self.ejections_in_a_row.store(0, Relaxed);
            self.ejected_until.store(0, Relaxed);
        }
    }

    /// Ejects it under `rule` (doubling per ejection in a row); returns for how long.
    pub fn eject(&self, rule: &Ejection) -> Duration {
        let in_a_row = self.ejections_in_a_row.fetch_add(1, Relaxed);
        let time = rule
            .time
            .saturating_mul(1u32 << in_a_row.min(16))
            .min(rule.time_max);
        let until =
            millis_now().saturating_add(u64::try_from(time.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until.store(until.max(1), Relaxed);
        self.ejections.fetch_add(1, Relaxed);
        time
    }

    pub fn record_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Relaxed);
        self.consecutive_failures.fetch_add(1, Relaxed);
    }
}

/// One backend as configured in the current generation, with its shared state.
#[derive(Debug)]
pub struct Backend {
    pub state: Arc<BackendState>,
    pub weight: u32,
    pub role: Role,
    /// 0 = unlimited.
    pub max_conns: u32,
    /// Consecutive connect failures that eject the backend at once, until its health
    /// checks bring it back; 0: never (or no health checks: see `ejection`).
    pub eject_after: u32,
    /// For a backend without health checks: its pool's outlier ejection (see [`Ejection`]);
    /// `None` when it has checks or the pool turned ejection off.
    pub ejection: Option<Ejection>,
}

impl Backend {
    /// Takes one connection slot, or None when the backend is at `max_conns`. A
    /// compare-and-swap loop so concurrent picks cannot overshoot the limit. The slot is given
    /// back when the returned guard drops, however the connection ends.
    pub fn try_acquire(&self) -> Option<Slot<'_>> {
        let active = &self.state.active;
        if self.max_conns == 0 {
            active.fetch_add(1, Relaxed);
        } else {
            let max = u64::from(self.max_conns);
            active
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .ok()?;
        }
        Some(Slot { backend: self })
    }
}

impl Backend {
    /// As [`Backend::try_acquire`], for a hold that outlives the borrow of its generation
    /// (a UDP flow, kept in a flow table).
    pub fn try_hold(&self) -> Option<Hold> {
        let slot = self.try_acquire()?;
        std::mem::forget(slot);
        Some(Hold {
            state: self.state.clone(),
        })
    }
}

/// A UDP flow's hold on a backend: counted in `active` until dropped.
#[derive(Debug)]
pub struct Hold {
    pub state: Arc<BackendState>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Relaxed);
    }
}

/// One connection's hold on a backend: counted in `active` until dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    pub backend: &'a Backend,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.backend.state.active.fetch_sub(1, Relaxed);
    }
}

impl BackendView for Backend {
    fn addr(&self) -> SocketAddr {
        self.state.addr
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn is_backup(&self) -> bool {
        self.role == Role::Backup
    }
    fn active_conns(&self) -> u64 {
        self.state.active.load(Relaxed)
    }
    fn is_usable(&self) -> bool {
        self.state.up.load(Relaxed)
            && !self.state.drained.load(Relaxed)
            && (self.max_conns == 0 || self.state.active.load(Relaxed) < u64::from(self.max_conns))
            && !self.state.ejected()
    }
}

/// A pool of one config generation: its backends and the balancer built over them.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub backends: Vec<Backend>,
    balancer: Balancer,
}

impl Pool {
    /// Builds the pool for `config`, taking each backend's state from `state_of`.
    pub fn build(
        config: &PoolConfig,
        balance: Balance,
        mut state_of: impl FnMut(SocketAddr) -> Arc<BackendState>,
    ) -> Self {
        let backends: Vec<Backend> = config
            .backends
            .iter()
            .map(|b| Backend {
                state: state_of(b.addr),
                weight: b.weight,
                role: b.role,
                max_conns: b.max_conns,
                eject_after: b.health.as_ref().map_or(0, |h| h.eject_after),
                ejection: (b.health.is_none() && config.ejection.after > 0)
                    .then_some(config.ejection),
            })
            .collect();
        let balancer = Balancer::new(algorithm_of(balance), &backends);
        Self {
            name: config.name.clone(),
            backends,
            balancer,
        }
    }

    /// The backend for `client`, skipping the indices in `exclude`; None when nothing is usable.
    pub fn pick(&self, client: IpAddr, exclude: &[usize]) -> Option<usize> {
        self.balancer.pick(&self.backends, client, exclude)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.balancer.algorithm()
    }
}

/// Milliseconds on the monotonic clock since the first call (tokio's clock, so paused-time
/// tests can move it); never 0, which [`BackendState::ejected_until`] reserves.
pub fn millis_now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

fn algorithm_of(balance: Balance) -> Algorithm {
    match balance {
        Balance::RoundRobin => Algorithm::RoundRobin,
        Balance::LeastConn => Algorithm::LeastConn,
        Balance::P2c => Algorithm::P2c,
        Balance::Maglev => Algorithm::Maglev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Ejection = Ejection {
        after: 3,
        time: Duration::from_secs(10),
        time_max: Duration::from_secs(35),
    };

    #[tokio::test(start_paused = true)]
    async fn an_ejection_lasts_its_time_doubles_while_it_keeps_failing_and_a_success_clears_it() {
        let state = BackendState::new("127.0.0.1:1".parse().unwrap());
        assert!(!state.ejected());
        assert_eq!(state.eject(&RULE), Duration::from_secs(10));
        assert!(state.ejected());
        tokio::time::advance(Duration::from_millis(9_990)).await;
        assert!(state.ejected());
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(!state.ejected(), "tried again once its time is up");
        assert_eq!(
            state.eject(&RULE),
            Duration::from_secs(20),
            "failed again: twice as long"
        );
        assert_eq!(
            state.eject(&RULE),
            Duration::from_secs(35),
            "capped at time_max"
        );
        assert_eq!(state.ejections.load(Relaxed), 3);
        state.record_connect_success();
        assert!(!state.ejected());
        assert_eq!(
            state.eject(&RULE),
            Duration::from_secs(10),
            "a success starts afresh"
        );
    }
}
