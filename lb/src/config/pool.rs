//! The `[[pool]]` tables: named sets of backends that services send traffic to.
//!
//! Holds the checked types ([`PoolConfig`], [`BackendConfig`], [`Role`]), the raw form as written
//! and the checks: unique pool names, a non-empty backend list, unique concrete backend
//! addresses, and each backend's weight, limits and merged `health` table.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::health::{HealthConfig, RawHealth};
use super::validate::Validator;
use super::values;

const MAX_WEIGHT: i64 = 256;
const DEFAULT_EJECT_AFTER: u32 = 3;
const DEFAULT_EJECT_TIME: Duration = Duration::from_secs(10);
const DEFAULT_EJECT_TIME_MAX: Duration = Duration::from_secs(300);

/// A named set of backends (`[[pool]]`); several services may share one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    /// Never empty; addresses are unique within the pool.
    pub backends: Vec<BackendConfig>,
    /// Passive ejection of the backends without `health` (none: nothing would bring them
    /// back otherwise): skipped for a while after failed connects, then tried again by
    /// live traffic.
    pub ejection: Ejection,
}

/// Outlier ejection of unchecked backends, as Envoy's outlier detection does it: after
/// `after` connect failures in a row a backend is skipped for `time`, doubled for each
/// ejection in a row up to `time_max`; the first client after that tries it again, and a
/// success clears the count. The last usable backend of a pool is never ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// 0: off.
    pub after: u32,
    pub time: Duration,
    pub time_max: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub addr: SocketAddr,
    /// Relative share of traffic, 1..=256. Default 1.
    pub weight: u32,
    /// Default [`Role::Primary`].
    pub role: Role,
    /// 0 = unlimited (default).
    pub max_conns: u32,
    /// How this backend is probed (the pool's `health` merged with its own); `None`: never
    /// probed, always considered up.
    pub health: Option<HealthConfig>,
}

/// Backups only receive traffic when no primary is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Backup,
}

impl Role {
    /// The spelling used in TOML.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub name: Spanned<String>,
    /// Optional here so that a missing list is reported like an empty one.
    pub backends: Option<Spanned<Vec<Spanned<RawBackend>>>>,
    /// How every backend of the pool is probed; absent: no active checks.
    pub health: Option<Spanned<RawHealth>>,
    pub eject_after: Option<Spanned<i64>>,
    pub eject_time: Option<Spanned<String>>,
    pub eject_time_max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub addr: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub role: Option<Spanned<Role>>,
    pub max_conns: Option<Spanned<i64>>,
    /// Overrides of the pool's `health`, key by key, for this backend.
    pub health: Option<Spanned<RawHealth>>,
}

impl Validator<'_> {
    pub(crate) fn pools(&mut self, raw: &[Spanned<RawPool>]) -> Vec<PoolConfig> {
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        let mut pools = Vec::with_capacity(raw.len());
        for spanned in raw {
            let pool = spanned.get_ref();
            let name = pool.name.get_ref();
            self.name("pool", &pool.name);
            if let Some(&line) = first_seen.get(name.as_str()) {
                let message = format!("duplicate pool name {name:?}; first defined at line {line}");
                self.error(pool.name.span(), message);
            } else {
                first_seen.insert(name, self.line_of(&pool.name.span()));
            }
            let backends = match &pool.backends {
                Some(list) if !list.get_ref().is_empty() => {
                    self.backends(name, list.get_ref(), pool.health.as_ref())
                }
                missing_or_empty => {
                    let span = missing_or_empty
                        .as_ref()
                        .map_or(spanned.span(), |l| l.span());
                    let message =
                        format!("pool {name:?} has no backends; add at least one to `backends`");
                    self.error(span, message);
                    Vec::new()
                }
            };
            let ejection = self.ejection(pool);
            pools.push(PoolConfig {
                name: name.clone(),
                backends,
                ejection,
            });
        }
        pools
    }

    fn ejection(&mut self, pool: &RawPool) -> Ejection {
        if let (Some(_), Some(after)) = (&pool.health, &pool.eject_after) {
            let message = "this pool has `health`: its checks bring an ejected backend back, \
                           so set `eject_after` in the health table"
                .to_owned();
            self.error(after.span(), message);
        }
        let after = self.int(
            "eject_after",
            &pool.eject_after,
            0..=100,
            DEFAULT_EJECT_AFTER,
        );
        let time = self.duration("eject_time", &pool.eject_time, DEFAULT_EJECT_TIME, true);
        let time_max = self.duration(
            "eject_time_max",
            &pool.eject_time_max,
            DEFAULT_EJECT_TIME_MAX.max(time),
            true,
        );
        if time_max < time {
            let span = pool.eject_time_max.as_ref().map(Spanned::span);
            if let Some(span) = span {
                self.error(span, "eject_time_max is shorter than eject_time".to_owned());
            }
        }
        Ejection {
            after,
            time,
            time_max,
        }
    }

    fn backends(
        &mut self,
        pool: &str,
        raw: &[Spanned<RawBackend>],
        pool_health: Option<&Spanned<RawHealth>>,
    ) -> Vec<BackendConfig> {
        // Where each address was first listed (its byte offset: located only when repeated).
        let mut first_seen: HashMap<SocketAddr, usize> = HashMap::new();
        let mut backends = Vec::with_capacity(raw.len());
        for spanned in raw {
            let backend = spanned.get_ref();
            let addr = self.addr("backend addr", &backend.addr);
            if let Some(addr) = addr {
                if let Some(what) = values::not_unicast(addr.ip()) {
                    let message =
                        format!("backend addr {addr} is {what}; name a concrete backend IP");
                    self.error(backend.addr.span(), message);
                } else if let Some(&first) = first_seen.get(&addr) {
                    let (line, column) = self.line_column(&(first..first));
                    let message = format!(
                        "duplicate backend {addr} in pool {pool:?}; first listed at \
                         line {line}, column {column}"
                    );
                    self.error(backend.addr.span(), message);
                } else {
                    first_seen.insert(addr, backend.addr.span().start);
                }
            }
            let weight = match &backend.weight {
                Some(w) if *w.get_ref() == 0 => {
                    let message = "weight 0 is not allowed; to stop traffic to a backend, \
                                   drain it or remove it"
                        .to_owned();
                    self.error(w.span(), message);
                    1
                }
                _ => self.int("weight", &backend.weight, 1..=MAX_WEIGHT, 1),
            };
            let max_conns = self.int("max_conns", &backend.max_conns, 0..=u32::MAX.into(), 0);
            // Each backend's table is its pool's, overridden key by key by its own; a problem
            // shared by every backend is reported once (errors are deduplicated by position).
            let health = match (pool_health, &backend.health) {
                (None, None) => None,
                (Some(p), None) => addr.and_then(|a| self.health(p.get_ref(), p.span(), a)),
                (base, Some(own)) => {
                    let merged = base
                        .map(|p| p.get_ref().overridden_by(own.get_ref()))
                        .unwrap_or_else(|| own.get_ref().clone());
                    addr.and_then(|a| self.health(&merged, own.span(), a))
                }
            };
            backends.push(BackendConfig {
                addr: addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                weight,
                role: backend
                    .role
                    .as_ref()
                    .map_or(Role::Primary, |r| *r.get_ref()),
                max_conns,
                health,
            });
        }
        backends
    }
}

#[cfg(test)]
mod tests;
