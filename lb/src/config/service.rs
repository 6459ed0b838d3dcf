//! The `[[service]]` tables: one listener each, and how its connections are spread over a pool.
//!
//! Holds the checked types ([`ServiceConfig`], [`Balance`], [`ProxyProtocol`]), the raw form as
//! written and the checks: unique names and listen addresses, a `pool` that exists, and ranges.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::pool::RawPool;
use super::validate::Validator;
#[cfg(doc)]
use super::{Config, PoolConfig};

const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_BACKLOG: u32 = 1024;
const MAX_RETRIES: i64 = 16;

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
    /// A connection on which no byte has moved either way this long after it reached its
    /// backend is closed (a client that connects and says nothing, to a backend that waits for
    /// it). Default 30s; zero: off. Protocols where the server speaks first are unaffected:
    /// its greeting is a byte moved.
    pub first_byte_timeout: Duration,
    /// 0 = unlimited (default).
    pub max_conns: u32,
    /// Client connections one source address may hold open at once; a client over it is
    /// reset at accept. 0 = unlimited (default).
    pub max_conns_per_source: u32,
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

/// PROXY protocol version announced to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    V1,
    V2,
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
    pub first_byte_timeout: Option<Spanned<String>>,
    pub max_conns: Option<Spanned<i64>>,
    pub max_conns_per_source: Option<Spanned<i64>>,
    pub proxy_protocol: Option<Spanned<ProxyProtocol>>,
    pub backlog: Option<Spanned<i64>>,
    pub freebind: Option<Spanned<bool>>,
}

impl Validator<'_> {
    pub(crate) fn services(
        &mut self,
        raw: &[Spanned<RawService>],
        pools: &[Spanned<RawPool>],
    ) -> Vec<ServiceConfig> {
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

            let listen = self.listen_addr("listen address", &service.listen);
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
            first_byte_timeout: self.duration(
                "first_byte_timeout",
                &raw.first_byte_timeout,
                DEFAULT_FIRST_BYTE_TIMEOUT,
                false,
            ),
            max_conns: self.int("max_conns", &raw.max_conns, 0..=u32::MAX.into(), 0),
            max_conns_per_source: self.int(
                "max_conns_per_source",
                &raw.max_conns_per_source,
                0..=u32::MAX.into(),
                0,
            ),
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
        if self.pool_size(wanted).is_some() {
            return;
        }
        // Listed in document order, once each, so the typo is easy to spot.
        let defined = self.defined_pools(pools);
        let message =
            format!("service {service:?} uses pool {wanted:?}, which is not defined; {defined}");
        self.error(pool.span(), message);
    }
}

#[cfg(test)]
mod tests;
