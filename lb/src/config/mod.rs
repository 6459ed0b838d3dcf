//! Tandem's configuration: the TOML schema, parsing and validation.
//!
//! [`parse`] and [`load`] either return a fully checked [`Config`] or every
//! problem found, each located as `file:line:column`, so a bad reload is
//! rejected with a complete list instead of one error per attempt.

mod error;
mod health;
mod raw;
mod validate;
mod values;
mod vrrp;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use error::{ConfigError, ConfigErrors};
pub use health::{HealthCheck, HealthConfig, HttpMethod};
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
}

/// Settings for this load-balancer process as a whole (`[node]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Identifies this node in logs and metrics. Default "tandem".
    pub name: String,
    /// Worker threads, 1..=1024. Default: the available parallelism.
    pub threads: usize,
    /// How the relay moves bytes. Default `auto`.
    pub io: IoMode,
    /// How long SIGTERM waits for open connections. Default 30s.
    pub drain_timeout: Duration,
    /// Where the admin HTTP API listens; `None` (`admin = ""`) turns it off. Default
    /// 127.0.0.1:9090.
    pub admin: Option<SocketAddr>,
    /// Where the bearer token for admin mutations comes from; `None`: mutations are refused.
    pub admin_token: Option<AdminToken>,
    /// The path of the health endpoint for load balancers in front (AWS target groups).
    /// Default "/healthz".
    pub healthz_path: String,
}

/// A token anyone could guess in a few tries is no guard.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin token, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    Inline(String),
    /// Read when the config is applied (start and every reload); a trailing newline is ignored.
    File(std::path::PathBuf),
}

impl AdminToken {
    /// The token itself.
    pub fn resolve(&self) -> std::io::Result<String> {
        match self {
            AdminToken::Inline(t) => Ok(t.clone()),
            AdminToken::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("admin_token_file {}: {e}", path.display()),
                    )
                })?;
                let token = text.trim_end_matches(['\n', '\r']).to_owned();
                if token.len() < MIN_TOKEN_LEN {
                    return Err(std::io::Error::other(format!(
                        "admin_token_file {}: the token must be at least {MIN_TOKEN_LEN} characters",
                        path.display()
                    )));
                }
                Ok(token)
            }
        }
    }
}

/// One listener and how its connections are spread over a pool (`[[service]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub name: String,
    /// IPv4 or IPv6 (`[::1]:80`); never port 0.
    pub listen: SocketAddr,
    /// Names a [`PoolConfig`] that exists in the same [`Config`].
    pub pool: String,
    /// Default [`Balance::RoundRobin`].
    pub balance: Balance,
    /// Extra backends tried after a failed connect, 0..=16. Default 2.
    pub retries: u32,
    /// Default 3s, never zero.
    pub connect_timeout: Duration,
    /// Default 300s, never zero.
    pub idle_timeout: Duration,
    /// 0 = unlimited (default).
    pub max_conns: u32,
    /// PROXY protocol header sent to backends; `None` sends none.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Listen backlog, 1..=65535. Default 1024.
    pub backlog: u32,
    /// IP_FREEBIND: bind an address this node does not hold yet (a VIP that
    /// VRRP may move here later). Default false.
    pub freebind: bool,
}

/// Backend selection algorithm of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    RoundRobin,
    LeastConn,
    P2c,
    Maglev,
}

/// How the data plane moves bytes between clients and backends (`[node] io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    /// A ring per data thread where one wakes its thread promptly (the deferring ring, else
    /// the plain one, each proved by a probe at start), else epoll.
    Auto,
    /// Readiness with epoll and one system call per read or write.
    Epoll,
    /// As `Auto`, but refuse to start rather than fall back to epoll.
    IoUring,
    /// The deferring ring only (kernels 6.1 and later), or refuse to start.
    IoUringDeferring,
    /// The plain ring only, or refuse to start.
    IoUringPlain,
}

impl IoMode {
    /// The name the config file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Epoll => "epoll",
            Self::IoUring => "io_uring",
            Self::IoUringDeferring => "io_uring_deferring",
            Self::IoUringPlain => "io_uring_plain",
        }
    }
}

/// PROXY protocol version announced to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// A named set of backends (`[[pool]]`); several services may share one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    /// Never empty; addresses are unique within the pool.
    pub backends: Vec<BackendConfig>,
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

impl Balance {
    /// The spelling used in TOML, for logs and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::P2c => "p2c",
            Balance::Maglev => "maglev",
        }
    }
}

impl ProxyProtocol {
    /// The spelling used in TOML.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
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

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Parses and validates `source`; `file_name` only labels the errors.
pub fn parse(source: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(source).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end().to_owned();
        ConfigError::at(file_name, source, span, message)
    })?;
    validate::validate(raw, source, file_name)
}

/// Reads and parses the file at `path`. A read failure is reported as a
/// [`ConfigError`] at line 0 so callers handle one error type.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file_name = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file_name.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read config file: {e}"),
    })?;
    parse(&source, &file_name)
}
