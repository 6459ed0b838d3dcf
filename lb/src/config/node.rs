//! The `[node]` table: settings for this load-balancer process as a whole.
//!
//! Holds the checked types ([`NodeConfig`], [`AdminToken`], [`IoMode`]), the raw form as written
//! and the checks that turn one into the other; the table is optional and every key has a default.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;

const DEFAULT_NODE_NAME: &str = "tandem";
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_THREADS: i64 = 1024;
const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);
const DEFAULT_HEALTHZ_PATH: &str = "/healthz";

/// Settings for this load-balancer process as a whole (`[node]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Identifies this node in logs and metrics. Default "tandem".
    pub name: String,
    /// Data threads, 1..=1024. Default: the available parallelism.
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
    /// A listener of its own that serves only `healthz_path`, for a load balancer in front;
    /// `None` (default): the health path is served on the admin address only.
    pub healthz_listen: Option<SocketAddr>,
    /// Real-time priority (SCHED_RR, 1..=99) for the VRRP election thread; 0 (default): normal
    /// scheduling. keepalived's `vrrp_rt_priority`.
    pub realtime_priority: u8,
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
    pub healthz_listen: Option<Spanned<String>>,
    pub realtime_priority: Option<Spanned<i64>>,
}

impl Validator<'_> {
    pub(crate) fn node(&mut self, raw: Option<RawNode>) -> NodeConfig {
        let raw = raw.unwrap_or(RawNode {
            name: None,
            threads: None,
            io: None,
            drain_timeout: None,
            admin: None,
            admin_token: None,
            admin_token_file: None,
            healthz_path: None,
            healthz_listen: None,
            realtime_priority: None,
        });
        let name = match &raw.name {
            Some(name) => {
                self.name("node", name);
                name.get_ref().clone()
            }
            None => DEFAULT_NODE_NAME.to_owned(),
        };
        let default_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match &raw.threads {
            Some(t) if *t.get_ref() == 0 => {
                let message = "threads must be at least 1; omit it to use one per CPU".to_owned();
                self.error(t.span(), message);
                default_threads
            }
            _ => self.int("threads", &raw.threads, 1..=MAX_THREADS, default_threads),
        };
        let io = raw.io.as_ref().map_or(IoMode::Auto, |io| *io.get_ref());
        // Zero is allowed: it means "close open connections immediately".
        let drain_timeout = self.duration(
            "drain_timeout",
            &raw.drain_timeout,
            DEFAULT_DRAIN_TIMEOUT,
            false,
        );
        let admin = match &raw.admin {
            None => Some(DEFAULT_ADMIN),
            Some(a) if a.get_ref().trim().is_empty() => None,
            Some(a) => self.addr("admin address", a),
        };
        let admin_token = match (&raw.admin_token, &raw.admin_token_file) {
            (Some(_), Some(file)) => {
                let message = "give admin_token or admin_token_file, not both".to_owned();
                self.error(file.span(), message);
                None
            }
            (Some(t), None) if t.get_ref().trim().len() < MIN_TOKEN_LEN => {
                let message = format!(
                    "admin_token must be at least {MIN_TOKEN_LEN} characters (it guards swap, drain and reload)"
                );
                self.error(t.span(), message);
                None
            }
            (Some(t), None) => Some(AdminToken::Inline(t.get_ref().trim().to_owned())),
            (None, Some(f)) if f.get_ref().trim().is_empty() => {
                self.error(f.span(), "admin_token_file must name a file".to_owned());
                None
            }
            (None, Some(f)) => Some(AdminToken::File(f.get_ref().into())),
            (None, None) => None,
        };
        let healthz_path = match &raw.healthz_path {
            None => DEFAULT_HEALTHZ_PATH.to_owned(),
            Some(p) => {
                let path = p.get_ref();
                let reserved = ["/livez", "/status", "/metrics", "/swap", "/reload"];
                if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.len() < 2 {
                    let message = format!("healthz_path {path:?} must be a path like \"/healthz\"");
                    self.error(p.span(), message);
                } else if reserved.contains(&path.as_str()) || path.starts_with("/pools/") {
                    let message = format!("healthz_path {path:?} is already an admin endpoint");
                    self.error(p.span(), message);
                }
                path.clone()
            }
        };
        let healthz_listen = match &raw.healthz_listen {
            None => None,
            Some(a) if a.get_ref().trim().is_empty() => None,
            Some(a) => self.addr("healthz_listen address", a).filter(|listen| {
                let same = admin == Some(*listen);
                if same {
                    let message = format!(
                        "healthz_listen {listen} is the admin address; give it an address of its own or leave it out"
                    );
                    self.error(a.span(), message);
                }
                !same
            }),
        };
        let realtime_priority = self.int("realtime_priority", &raw.realtime_priority, 0..=99, 0);
        NodeConfig {
            name,
            threads,
            io,
            drain_timeout,
            admin,
            admin_token,
            healthz_path,
            healthz_listen,
            realtime_priority,
        }
    }
}

#[cfg(test)]
mod tests;
