//! Per-service counters. They live in the [`crate::registry::Registry`] keyed by service name,
//! so a reload that keeps a service keeps its counts.
//!
//! A UDP service counts its flows where a TCP service counts connections (`accepted`,
//! `active`, `refused`, `idle_timeouts`), and its datagrams, drops and flow ends besides.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Client connections being served now.
    pub active: AtomicU64,
    /// Client connections accepted since start.
    pub accepted: AtomicU64,
    /// Clients refused because no backend was usable (or every retry failed).
    pub refused: AtomicU64,
    /// Connect attempts that were retried on another backend.
    pub retries: AtomicU64,
    /// Client connections that ended because nothing moved for `idle_timeout`.
    pub idle_timeouts: AtomicU64,
    /// Client connections closed because no byte moved either way within `first_byte_timeout`.
    pub first_byte_timeouts: AtomicU64,
    /// Clients reset at accept: their address already held `max_conns_per_source`.
    pub rejected_per_source: AtomicU64,
    /// Open connections per client address, kept while the service has `max_conns_per_source`.
    pub sources: Sources,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// UDP: datagrams passed from clients to backends.
    pub datagrams_in: AtomicU64,
    /// UDP: datagrams passed from backends to clients.
    pub datagrams_out: AtomicU64,
    /// UDP: datagrams dropped, by [`DropReason`].
    pub drops: Counts<{ DropReason::ALL.len() }>,
    /// UDP: flows ended, by [`FlowEnd`] (idling out is also in `idle_timeouts`).
    pub flow_ends: Counts<{ FlowEnd::ALL.len() }>,
    /// Woken when a connection ends, so an accept loop held at `max_conns` can go on.
    pub slot_freed: Notify,
}

impl ServiceStats {
    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    /// Counts a connection open if fewer than `max` are (0: no limit). One atomic step, so
    /// accept loops on several threads never take more than `max` between them.
    pub fn try_open(&self, max: u32) -> bool {
        if max == 0 {
            // No limit: a plain increment, no compare-and-swap loop on the accept path.
            self.connection_opened();
            return true;
        }
        let max = u64::from(max);
        let taken = self
            .active
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok();
        if taken {
            self.accepted.fetch_add(1, Relaxed);
        }
        taken
    }

    /// UDP: counts a flow open if fewer than `max` are (0: no limit), in one atomic step as
    /// [`ServiceStats::try_open`]; `accepted` is counted once the flow has its backend.
    pub fn try_hold_flow(&self, max: u32) -> bool {
        if max == 0 {
            self.active.fetch_add(1, Relaxed);
            return true;
        }
        let max = u64::from(max);
        self.active
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    pub fn connection_closed(&self) {
        self.active.fetch_sub(1, Relaxed);
        self.slot_freed.notify_one();
    }
}

/// Counters indexed by a reason.
#[derive(Debug)]
pub struct Counts<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Counts<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Counts<N> {
    pub fn add(&self, index: usize, n: u64) {
        if let Some(counter) = self.0.get(index) {
            counter.fetch_add(n, Relaxed);
        }
    }

    pub fn get(&self, index: usize) -> u64 {
        self.0.get(index).map_or(0, |c| c.load(Relaxed))
    }
}

/// Why a UDP service dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The first datagram of a flow, and no backend usable.
    NoBackend,
    /// The first datagram of a flow, and the service at `max_flows`.
    MaxFlows,
    /// The first datagram of a flow while the service drains (stopping, or removed by a
    /// reload): only flows already open are served.
    Draining,
    /// No socket for a new flow: this process is out of descriptors, memory or ports.
    LocalResources,
    /// The socket's send buffer was full (a client or backend not keeping up).
    BufferFull,
    /// The kernel refused to send it (another error).
    SendFailed,
    /// Sent to a backend that answered with an ICMP port unreachable.
    BackendRefused,
    /// Longer than the 64 KiB a datagram can be (never from a kernel that keeps to UDP).
    Truncated,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        Self::NoBackend,
        Self::MaxFlows,
        Self::Draining,
        Self::LocalResources,
        Self::BufferFull,
        Self::SendFailed,
        Self::BackendRefused,
        Self::Truncated,
    ];

    /// The label in `/status` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoBackend => "no_backend",
            Self::MaxFlows => "max_flows",
            Self::Draining => "draining",
            Self::LocalResources => "local_resources",
            Self::BufferFull => "buffer_full",
            Self::SendFailed => "send_failed",
            Self::BackendRefused => "backend_refused",
            Self::Truncated => "truncated",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a UDP flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    /// Nothing moved either way for `idle_timeout`.
    Idle,
    /// Every request had its `responses`.
    Answered,
    /// Its thread's flow table was full and this flow had been quiet longest.
    Evicted,
    /// Its backend went down (or was ejected): the client's next datagram picks again.
    BackendDown,
    /// Its backend answered with an ICMP port unreachable.
    Refused,
    /// The node stopped before it ended.
    Stopped,
}

impl FlowEnd {
    pub const ALL: [FlowEnd; 6] = [
        Self::Idle,
        Self::Answered,
        Self::Evicted,
        Self::BackendDown,
        Self::Refused,
        Self::Stopped,
    ];

    /// The label in `/status` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Answered => "answered",
            Self::Evicted => "evicted",
            Self::BackendDown => "backend_down",
            Self::Refused => "refused",
            Self::Stopped => "stopped",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Shards of [`Sources`]: accept loops on different threads seldom wait for each other.
const SOURCE_SHARDS: usize = 16;

/// Open connections per client address, for `max_conns_per_source`: a map in shards, each
/// behind its own lock, touched once when a connection opens and once when it closes, and only
/// by services with the limit. An address leaves the map with its last connection.
#[derive(Debug)]
pub struct Sources {
    shards: [Mutex<HashMap<IpAddr, u32>>; SOURCE_SHARDS],
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl Sources {
    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        let hash = match ip {
            IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64(&v4.octets()),
            IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64(&v6.octets()),
        };
        self.shards[(hash % SOURCE_SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more connection from `ip` if it holds fewer than `max`.
    pub fn try_open(&self, ip: IpAddr, max: u32) -> bool {
        let mut shard = self.shard(ip);
        let open = shard.entry(ip).or_insert(0);
        if *open >= max {
            if *open == 0 {
                shard.remove(&ip);
            }
            return false;
        }
        *open += 1;
        true
    }

    /// Counts a connection from `ip` closed.
    pub fn closed(&self, ip: IpAddr) {
        let mut shard = self.shard(ip);
        if let Some(open) = shard.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                shard.remove(&ip);
            }
        }
    }

    /// Connections open from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.shard(ip).get(&ip).copied().unwrap_or(0)
    }

    /// Addresses with a connection open.
    pub fn addresses(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// One connection counted in [`Sources`]; counted closed when dropped.
#[derive(Debug)]
pub struct SourceSlot {
    stats: Arc<ServiceStats>,
    ip: IpAddr,
}

impl SourceSlot {
    /// Takes a place for a connection from `ip`, if it holds fewer than `max`.
    pub fn take(stats: &Arc<ServiceStats>, ip: IpAddr, max: u32) -> Option<Self> {
        stats.sources.try_open(ip, max).then(|| Self {
            stats: stats.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.stats.sources.closed(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_source_gets_at_most_its_limit_and_others_are_not_affected() {
        let stats = Arc::new(ServiceStats::default());
        let held: Vec<SourceSlot> = (0..3)
            .map(|_| SourceSlot::take(&stats, ip(1), 3).expect("below the limit"))
            .collect();
        assert!(SourceSlot::take(&stats, ip(1), 3).is_none());
        assert!(SourceSlot::take(&stats, ip(2), 3).is_some());
        assert_eq!(stats.sources.open_from(ip(1)), 3);
        drop(held);
        assert_eq!(stats.sources.open_from(ip(1)), 0);
        assert_eq!(
            stats.sources.addresses(),
            0,
            "addresses leave with their last connection"
        );
        assert!(SourceSlot::take(&stats, ip(1), 3).is_some());
    }

    #[test]
    fn a_limit_of_zero_admits_nobody_and_leaves_nothing_behind() {
        let stats = Arc::new(ServiceStats::default());
        assert!(SourceSlot::take(&stats, ip(1), 0).is_none());
        assert_eq!(stats.sources.addresses(), 0);
    }

    #[test]
    fn counts_hold_across_threads() {
        let stats = Arc::new(ServiceStats::default());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let stats = stats.clone();
                scope.spawn(move || {
                    for i in 0..2_000u32 {
                        let slot = SourceSlot::take(&stats, ip((i % 7) as u8), 1_000);
                        assert!(slot.is_some());
                    }
                });
            }
        });
        assert_eq!(stats.sources.addresses(), 0);
    }
}
