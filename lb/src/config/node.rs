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
/// Data threads per CPU beyond which `threads` is an error: each thread has its own ring,
/// sockets and buffers, and threads beyond the CPUs only take turns on them.
const MAX_THREADS_PER_CPU: usize = 4;
const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);
const DEFAULT_HEALTHZ_PATH: &str = "/healthz";

/// Settings for this load-balancer process as a whole (`[node]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Identifies this node in logs and metrics. Default "tandem".
    pub name: String,
    /// Data threads, 1..=1024 and at most 4 per CPU. Default: the available parallelism.
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
    /// Lock the process's memory in RAM at start (`mlockall`), so no page the election needs is
    /// ever swapped out. Default false.
    pub lock_memory: bool,
    /// The admin addresses of the pair's other node(s): the console fetches their `/status`
    /// from here and passes actions on to them. Default: none.
    pub peer_admin: Vec<SocketAddr>,
}

/// A token anyone could guess in a few tries is no guard.
pub const MIN_TOKEN_LEN: usize = 16;
/// A token is a secret, not a document.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What makes `token` unfit to be the admin token, if anything. It travels in an HTTP
/// header, which carries printable ASCII only (a control character or a non-ASCII one could
/// never match), and its length is counted in characters.
fn token_problem(token: &str) -> Option<String> {
    if let Some(c) = token.chars().find(|c| c.is_control()) {
        return Some(format!(
            "holds the control character {c:?}; a token travels in an HTTP header: printable \
             ASCII only"
        ));
    }
    if !token.is_ascii() {
        return Some(
            "holds non-ASCII characters; a token travels in an HTTP header: printable ASCII only"
                .to_owned(),
        );
    }
    let length = token.chars().count();
    if length > MAX_TOKEN_LEN {
        return Some(format!(
            "is {length} characters long; at most {MAX_TOKEN_LEN} are allowed"
        ));
    }
    if length < MIN_TOKEN_LEN {
        return Some(format!(
            "must be at least {MIN_TOKEN_LEN} characters (it guards swap, drain and reload)"
        ));
    }
    None
}

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
                let text = read_token_file(path).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("admin_token_file {}: {e}", path.display()),
                    )
                })?;
                let token = text.trim_end_matches(['\n', '\r']).to_owned();
                if let Some(problem) = token_problem(&token) {
                    return Err(std::io::Error::other(format!(
                        "admin_token_file {}: the token {problem}",
                        path.display()
                    )));
                }
                Ok(token)
            }
        }
    }
}

/// What a token file's permission bits let others than its owner do, as a warning says it;
/// `None` when that is nothing a secret must not allow. As ssh does for a private key, but
/// a group may read it: the documented setup is `root:tandem 0640`, which lets the daemon's
/// group read a file it cannot change. Everyone else may not touch it, and the group may not
/// change it.
fn token_file_exposure(mode: u32) -> Option<&'static str> {
    if mode & 0o004 != 0 {
        Some("everyone on this host can read the token")
    } else if mode & 0o002 != 0 {
        Some("everyone on this host can change the token")
    } else if mode & 0o001 != 0 {
        Some("everyone on this host has access to it")
    } else if mode & 0o020 != 0 {
        Some("its group can change the token")
    } else {
        None
    }
}

/// The warning a token file's permissions deserve, naming its mode; `None` when they are
/// tight (see [`token_file_exposure`]) or cannot be read (the read that follows says why).
fn token_file_warning(path: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    let exposure = token_file_exposure(mode)?;
    Some(format!(
        "admin_token_file {path} has mode {mode:04o}: {exposure}, and the token guards swap, \
         drain and reload; make it 0600 (or 0640 for the group tandem runs as): \
         chmod go-w,o-rwx {path}"
    ))
}

/// The text of a token file: a regular file (a FIFO or a device such as /dev/zero would
/// block or never end), of at most a token's length and a line break.
fn read_token_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    // Looked at before it is opened: opening a FIFO waits for a writer.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let limit = MAX_TOKEN_LEN + 2;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        let message = format!("the token is longer than {MAX_TOKEN_LEN} characters");
        return Err(std::io::Error::other(message));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "the token is not text"))
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
    pub lock_memory: Option<bool>,
    pub peer_admin: Option<Vec<Spanned<String>>>,
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
            lock_memory: None,
            peer_admin: None,
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
        if let Some(t) = &raw.threads
            && threads > default_threads
        {
            let cpus = default_threads;
            if threads > MAX_THREADS_PER_CPU * cpus {
                let message = format!(
                    "threads = {threads} is more than {MAX_THREADS_PER_CPU} per CPU ({cpus} here): \
                     each data thread has its own ring, sockets and buffers, and threads beyond \
                     the CPUs only take turns; omit threads to use one per CPU"
                );
                self.error(t.span(), message);
            } else {
                let message = format!(
                    "threads = {threads} is more than the {cpus} CPUs here: the extra threads \
                     take turns on them; omit threads to use one per CPU"
                );
                self.warn(t.span(), message);
            }
        }
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
            Some(a) => self.listen_addr("admin address", a),
        };
        let admin_token = match (&raw.admin_token, &raw.admin_token_file) {
            (Some(_), Some(file)) => {
                let message = "give admin_token or admin_token_file, not both".to_owned();
                self.error(file.span(), message);
                None
            }
            // Spaces around the token are dropped; a line break or other control character
            // anywhere is a mistake.
            (Some(t), None) => match token_problem(t.get_ref().trim_matches(' ')) {
                Some(problem) => {
                    self.error(t.span(), format!("admin_token {problem}"));
                    None
                }
                None => Some(AdminToken::Inline(t.get_ref().trim_matches(' ').to_owned())),
            },
            (None, Some(f)) if f.get_ref().trim().is_empty() => {
                self.error(f.span(), "admin_token_file must name a file".to_owned());
                None
            }
            (None, Some(f)) => {
                // Read now, as `run` and every reload will: a missing or unreadable file, or a
                // bad token in it, is found by `check` rather than at start.
                let token = AdminToken::File(f.get_ref().into());
                if let Err(e) = token.resolve() {
                    self.error(f.span(), e.to_string());
                } else if let Some(warning) = token_file_warning(f.get_ref()) {
                    // Found by `check`, and logged at start and on every reload.
                    self.warn(f.span(), warning);
                }
                Some(token)
            }
            (None, None) => None,
        };
        let healthz_path = match &raw.healthz_path {
            None => DEFAULT_HEALTHZ_PATH.to_owned(),
            Some(p) => {
                let path = p.get_ref();
                let reserved = [
                    "/livez",
                    "/status",
                    "/metrics",
                    "/swap",
                    "/reload",
                    "/events",
                    "/peers",
                    "/index.html",
                    "/console.js",
                    "/console.css",
                ];
                let prefixes = ["/pools/", "/peers/", "/apps/", "/anycast/", "/node/"];
                if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.len() < 2 {
                    let message = format!("healthz_path {path:?} must be a path like \"/healthz\"");
                    self.error(p.span(), message);
                } else if reserved.contains(&path.as_str())
                    || prefixes.iter().any(|prefix| path.starts_with(prefix))
                {
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
        let mut peer_admin: Vec<SocketAddr> = Vec::new();
        for peer in raw.peer_admin.iter().flatten() {
            let Some(addr) = self.addr("peer_admin address", peer) else {
                continue;
            };
            if addr.ip().is_unspecified() || addr.port() == 0 {
                let message =
                    format!("peer_admin {addr} must name a peer's admin address and port");
                self.error(peer.span(), message);
            } else if admin == Some(addr) {
                let message =
                    format!("peer_admin {addr} is this node's own admin address; name the peer's");
                self.error(peer.span(), message);
            } else if peer_admin.contains(&addr) {
                self.error(peer.span(), format!("peer_admin {addr} is listed twice"));
            } else {
                peer_admin.push(addr);
            }
        }
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
            lock_memory: raw.lock_memory.unwrap_or(false),
            peer_admin,
        }
    }
}

#[cfg(test)]
mod tests;
