//! Turns the raw schema into a [`Config`], collecting every semantic error
//! in one pass rather than stopping at the first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use super::error::position;
use super::health::RawHealth;
use super::raw::{RawBackend, RawConfig, RawNode, RawPool, RawService};
use super::values;
use super::{
    AdminToken, BackendConfig, Balance, Config, ConfigError, ConfigErrors, IoMode, MIN_TOKEN_LEN,
    NodeConfig, PoolConfig, Role, ServiceConfig,
};

const DEFAULT_NODE_NAME: &str = "tandem";
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_BACKLOG: u32 = 1024;
const MAX_THREADS: i64 = 1024;
const MAX_RETRIES: i64 = 16;
const MAX_WEIGHT: i64 = 256;
const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);
const DEFAULT_HEALTHZ_PATH: &str = "/healthz";

pub(crate) fn validate(raw: RawConfig, source: &str, file: &str) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        source,
        file,
        errors: Vec::new(),
    };
    let node = v.node(raw.node);
    let pools = v.pools(&raw.pool);
    let mut services = v.services(&raw.service, &raw.pool);
    let vrrp = v.vrrps(&raw.vrrp, &raw.pool);
    // A service on a VIP must bind it on the backup too, where the address is not (yet) local.
    for service in &mut services {
        let on_vip = vrrp
            .iter()
            .flat_map(|i| &i.vips)
            .any(|vip| vip.addr == service.listen.ip());
        service.freebind |= on_vip;
    }
    if v.errors.is_empty() {
        Ok(Config {
            node,
            services,
            pools,
            vrrp,
        })
    } else {
        // Document order reads best; the sort is stable for same-spot errors. A pool-level
        // health problem is found once per backend: report it once.
        v.errors.sort_by_key(|e| (e.line, e.column));
        v.errors.dedup();
        Err(ConfigErrors(v.errors))
    }
}

pub(crate) struct Validator<'a> {
    source: &'a str,
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    pub(crate) fn error(&mut self, span: Range<usize>, message: String) {
        let error = ConfigError::at(self.file, self.source, span, message);
        self.errors.push(error);
    }

    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        position(self.source, span.start).0
    }

    /// Records `result`'s error at `span`; returns the value or `fallback`
    /// so that checking can continue past a bad value.
    fn check<T>(&mut self, span: Range<usize>, result: Result<T, String>, fallback: T) -> T {
        result.unwrap_or_else(|message| {
            self.error(span, message);
            fallback
        })
    }

    fn name(&mut self, kind: &str, name: &Spanned<String>) {
        let result = values::name(kind, name.get_ref());
        self.check(name.span(), result, ());
    }

    pub(crate) fn int<T: TryFrom<i64>>(
        &mut self,
        key: &str,
        value: &Option<Spanned<i64>>,
        range: RangeInclusive<i64>,
        default: T,
    ) -> T {
        let Some(value) = value else { return default };
        match values::int_in(key, *value.get_ref(), range) {
            Ok(v) => v,
            Err(message) => {
                self.error(value.span(), message);
                default
            }
        }
    }

    /// A duration, optionally required to be non-zero.
    pub(crate) fn duration(
        &mut self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
        nonzero: bool,
    ) -> Duration {
        let Some(value) = value else { return default };
        let parsed = values::duration(key, value.get_ref()).and_then(|d| {
            if nonzero && d.is_zero() {
                Err(format!("{key} must be greater than 0"))
            } else {
                Ok(d)
            }
        });
        self.check(value.span(), parsed, default)
    }

    fn addr(&mut self, key: &str, value: &Spanned<String>) -> Option<SocketAddr> {
        match values::socket_addr(key, value.get_ref()) {
            Ok(addr) => Some(addr),
            Err(message) => {
                self.error(value.span(), message);
                None
            }
        }
    }

    fn node(&mut self, raw: Option<RawNode>) -> NodeConfig {
        let raw = raw.unwrap_or(RawNode {
            name: None,
            threads: None,
            io: None,
            drain_timeout: None,
            admin: None,
            admin_token: None,
            admin_token_file: None,
            healthz_path: None,
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
        NodeConfig {
            name,
            threads,
            io,
            drain_timeout,
            admin,
            admin_token,
            healthz_path,
        }
    }

    fn pools(&mut self, raw: &[Spanned<RawPool>]) -> Vec<PoolConfig> {
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
            pools.push(PoolConfig {
                name: name.clone(),
                backends,
            });
        }
        pools
    }

    fn backends(
        &mut self,
        pool: &str,
        raw: &[Spanned<RawBackend>],
        pool_health: Option<&Spanned<RawHealth>>,
    ) -> Vec<BackendConfig> {
        let mut first_seen: HashMap<SocketAddr, (usize, usize)> = HashMap::new();
        let mut backends = Vec::with_capacity(raw.len());
        for spanned in raw {
            let backend = spanned.get_ref();
            let addr = self.addr("backend addr", &backend.addr);
            if let Some(addr) = addr {
                if addr.ip().is_unspecified() {
                    let message = format!(
                        "backend addr {addr} is the unspecified address; name a concrete backend IP"
                    );
                    self.error(backend.addr.span(), message);
                } else if let Some(&(line, column)) = first_seen.get(&addr) {
                    let message = format!(
                        "duplicate backend {addr} in pool {pool:?}; first listed at \
                         line {line}, column {column}"
                    );
                    self.error(backend.addr.span(), message);
                } else {
                    first_seen.insert(addr, position(self.source, backend.addr.span().start));
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

    fn services(
        &mut self,
        raw: &[Spanned<RawService>],
        pools: &[Spanned<RawPool>],
    ) -> Vec<ServiceConfig> {
        if raw.is_empty() {
            let message = "no [[service]] defined; at least one is required".to_owned();
            self.error(0..0, message);
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut listens: HashMap<SocketAddr, (&str, usize)> = HashMap::new();
        let mut services = Vec::with_capacity(raw.len());
        for spanned in raw {
            let service = spanned.get_ref();
            let name = service.name.get_ref();
            self.name("service", &service.name);
            if let Some(&line) = names.get(name.as_str()) {
                let message =
                    format!("duplicate service name {name:?}; first defined at line {line}");
                self.error(service.name.span(), message);
            } else {
                names.insert(name, self.line_of(&service.name.span()));
            }

            let listen = self.addr("listen address", &service.listen);
            if let Some(addr) = listen {
                if let Some(&(other, line)) = listens.get(&addr) {
                    let message = format!(
                        "listen address {addr} is already used by service {other:?} at line {line}"
                    );
                    self.error(service.listen.span(), message);
                } else {
                    listens.insert(addr, (name, self.line_of(&service.listen.span())));
                }
            }

            self.pool_reference(name, &service.pool, pools);
            services.push(self.service(service, listen));
        }
        services
    }

    /// The scalar settings of one service.
    fn service(&mut self, raw: &RawService, listen: Option<SocketAddr>) -> ServiceConfig {
        ServiceConfig {
            name: raw.name.get_ref().clone(),
            listen: listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            pool: raw.pool.get_ref().clone(),
            balance: raw
                .balance
                .as_ref()
                .map_or(Balance::RoundRobin, |b| *b.get_ref()),
            retries: self.int("retries", &raw.retries, 0..=MAX_RETRIES, DEFAULT_RETRIES),
            connect_timeout: self.duration(
                "connect_timeout",
                &raw.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
                true,
            ),
            idle_timeout: self.duration(
                "idle_timeout",
                &raw.idle_timeout,
                DEFAULT_IDLE_TIMEOUT,
                true,
            ),
            max_conns: self.int("max_conns", &raw.max_conns, 0..=u32::MAX.into(), 0),
            proxy_protocol: raw.proxy_protocol.as_ref().map(|p| *p.get_ref()),
            backlog: self.int("backlog", &raw.backlog, 1..=65535, DEFAULT_BACKLOG),
            freebind: raw.freebind.as_ref().is_some_and(|f| *f.get_ref()),
        }
    }

    fn pool_reference(
        &mut self,
        service: &str,
        pool: &Spanned<String>,
        pools: &[Spanned<RawPool>],
    ) {
        let wanted = pool.get_ref();
        if pools.iter().any(|p| p.get_ref().name.get_ref() == wanted) {
            return;
        }
        // Listed in document order, once each, so the typo is easy to spot.
        let mut names: Vec<String> = Vec::new();
        for p in pools {
            let name = p.get_ref().name.get_ref();
            let quoted = format!("{name:?}");
            if !name.is_empty() && !names.contains(&quoted) {
                names.push(quoted);
            }
        }
        let defined = if names.is_empty() {
            "no [[pool]] is defined".to_owned()
        } else {
            format!("defined pools: {}", names.join(", "))
        };
        let message =
            format!("service {service:?} uses pool {wanted:?}, which is not defined; {defined}");
        self.error(pool.span(), message);
    }
}
