//! Per-service counters. They live in the [`crate::registry::Registry`] keyed by service name,
//! so a reload that keeps a service keeps its counts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
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

    pub fn connection_closed(&self) {
        self.active.fetch_sub(1, Relaxed);
        self.slot_freed.notify_one();
    }
}
