//! Passive health: what the data plane does to a backend it saw fail (a TCP connect that
//! failed, or an ICMP port unreachable on a UDP flow's socket). It counts the failure and,
//! past the backend's threshold, takes it out of the picks at once: down until its health
//! checks bring it back (`eject_after`), or, for a backend without checks, ejected for a
//! while (the pool's `ejection`).

use std::io;
use std::sync::atomic::Ordering::Relaxed;

use crate::balance::BackendView;
use crate::generation::ServiceGeneration;

/// Counts a failure of backend `index` of `service`'s pool (`what` failed, plural: "connect
/// failures"; `error` says how) and ejects it when it has failed often enough in a row.
/// Returns the failures in a row.
pub fn backend_failed(
    service: &ServiceGeneration,
    index: usize,
    what: &str,
    error: &io::Error,
) -> u64 {
    let pool = &service.pool;
    let config = &service.config;
    let backend = &pool.backends[index];
    let addr = backend.state.addr;
    backend.state.record_connect_failure();
    let consecutive = backend.state.consecutive_failures.load(Relaxed);
    if backend.eject_after > 0
        && consecutive >= u64::from(backend.eject_after)
        && backend.state.up.swap(false, Relaxed)
    {
        // Out of every pick now; the monitor hears of it and only its probes (rise) bring
        // the backend back.
        let reason = format!("{consecutive} consecutive {what} ({error})");
        service
            .monitor
            .eject(&crate::health::target_id(&pool.name, addr), &reason);
    }
    if let Some(rule) = &backend.ejection {
        let others_usable = pool
            .backends
            .iter()
            .enumerate()
            .any(|(i, b)| i != index && b.is_usable());
        if consecutive >= u64::from(rule.after) && !backend.state.ejected() {
            if others_usable {
                let time = backend.state.eject(rule);
                tracing::warn!(service = %config.name, pool = %pool.name, backend = %addr,
                    error = %error, consecutive, ?time,
                    "backend ejected: skipped until the time is up, then tried again by the next client");
            } else {
                tracing::debug!(pool = %pool.name, backend = %addr,
                    "not ejected: the last usable backend of its pool");
            }
        }
    }
    consecutive
}
