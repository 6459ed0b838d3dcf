//! The TOML schema as written by operators, before any semantic checks.
//!
//! Every value is `Spanned` so validation can point at it. Addresses,
//! durations and integers are kept loosely typed (strings, `i64`) so that a
//! bad value becomes one collected, well-worded error instead of aborting
//! deserialization at the first problem.

use serde::Deserialize;
use toml::Spanned;

use super::health::RawHealth;
use super::vrrp::RawVrrp;
use super::{Balance, IoMode, ProxyProtocol, Role};

/// The whole file. Table names are singular (`[[service]]`, `[[pool]]`)
/// because each header introduces one item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub node: Option<RawNode>,
    #[serde(default)]
    pub service: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub pool: Vec<Spanned<RawPool>>,
    #[serde(default)]
    pub vrrp: Vec<Spanned<RawVrrp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: Option<Spanned<String>>,
    pub threads: Option<Spanned<i64>>,
    pub io: Option<Spanned<IoMode>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    pub admin_token: Option<Spanned<String>>,
    pub admin_token_file: Option<Spanned<String>>,
    pub healthz_path: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Spanned<String>,
    pub listen: Spanned<String>,
    pub pool: Spanned<String>,
    pub balance: Option<Spanned<Balance>>,
    pub retries: Option<Spanned<i64>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_conns: Option<Spanned<i64>>,
    pub proxy_protocol: Option<Spanned<ProxyProtocol>>,
    pub backlog: Option<Spanned<i64>>,
    pub freebind: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub name: Spanned<String>,
    /// Optional here so that a missing list is reported like an empty one.
    pub backends: Option<Spanned<Vec<Spanned<RawBackend>>>>,
    /// How every backend of the pool is probed; absent: no active checks.
    pub health: Option<Spanned<RawHealth>>,
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
