//! Tandem's configuration: the TOML schema, parsing and validation.
//!
//! [`parse`] and [`load`] either return a fully checked [`Config`] or every
//! problem found, each located as `file:line:column`, so a bad reload is
//! rejected with a complete list instead of one error per attempt.

// One file per section, each with its checked types, its raw (as written) form, its checks
// and, beside it in `<section>/tests.rs`, its tests. `validate.rs` walks the sections in
// order; `error.rs` and `values.rs` are shared by all of them.
mod anycast;
mod app;
mod error;
mod health;
mod node;
mod pool;
mod service;
mod validate;
mod values;
mod vrrp;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use anycast::{AnycastConfig, AnycastTrack};
pub use app::{AppConfig, RunOn};
pub use error::{ConfigError, ConfigErrors, ConfigWarning, MAX_REPORTED};
pub use health::{HealthCheck, HealthConfig, HttpMethod};
pub use node::{AdminToken, IoMode, MIN_TOKEN_LEN, NodeConfig};
pub use pool::{BackendConfig, Ejection, PoolConfig, Role};
pub use service::{Balance, Protocol, ProxyProtocol, ServiceConfig};
pub use vrrp::{Notify, TrackGateway, TrackPool, Vip, VrrpConfig, VrrpMode};

/// A validated configuration: every reference resolves and every value is in
/// range, so the daemon can apply it without further checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub node: NodeConfig,
    pub services: Vec<ServiceConfig>,
    pub pools: Vec<PoolConfig>,
    /// Virtual routers this node takes part in (`[[vrrp]]`); empty: no failover.
    pub vrrp: Vec<VrrpConfig>,
    /// Applications the pair keeps alive (`[[app]]`).
    pub apps: Vec<AppConfig>,
    /// Addresses announced active-active through the routing daemon (`[[anycast]]`).
    pub anycast: Vec<AnycastConfig>,
}

impl Config {
    /// The pool called `name`; always `Some` for a service's `pool`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// One line for the startup/reload log, e.g.
    /// `node lb1: 2 services, 2 pools, 5 backends`.
    pub fn summary(&self) -> String {
        let backends: usize = self.pools.iter().map(|p| p.backends.len()).sum();
        format!(
            "node {}: {}, {}, {}",
            self.node.name,
            count(self.services.len(), "service"),
            count(self.pools.len(), "pool"),
            count(backends, "backend"),
        )
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A valid configuration and the warnings checking it gave: values that are allowed but
/// most likely not meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
}

/// Parses and validates `source`; `file_name` only labels the errors.
pub fn parse(source: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    parse_checked(source, file_name).map(|c| c.config)
}

/// As [`parse`], keeping the warnings.
pub fn parse_checked(source: &str, file_name: &str) -> Result<Checked, ConfigErrors> {
    let raw: validate::RawConfig = toml::from_str(source).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end().to_owned();
        ConfigError::at(file_name, source, span, message)
    })?;
    validate::validate(raw, source, file_name)
}

/// As [`parse_checked`], for the bytes of a file: text that is not UTF-8 is an error at the
/// line and column of its first bad byte.
pub fn parse_bytes(bytes: &[u8], file_name: &str) -> Result<Checked, ConfigErrors> {
    match std::str::from_utf8(bytes) {
        Ok(source) => parse_checked(source, file_name),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // Valid by definition: the decoder stopped right after it.
            let before = std::str::from_utf8(valid).unwrap_or_default();
            let bad = bytes[e.valid_up_to()];
            let message =
                format!("invalid UTF-8 (byte 0x{bad:02x}): a config file must be UTF-8 text");
            Err(ConfigError::at(file_name, before, before.len()..before.len(), message).into())
        }
    }
}

/// Reads and parses the file at `path`. A read failure is reported as a
/// [`ConfigError`] at line 0 so callers handle one error type.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_checked(path).map(|c| c.config)
}

/// As [`load`], keeping the warnings.
pub fn load_checked(path: &Path) -> Result<Checked, ConfigErrors> {
    let file_name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: file_name.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read config file: {e}"),
    })?;
    parse_bytes(&bytes, &file_name)
}
