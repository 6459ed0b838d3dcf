//! The `[[service]]` tables: one listener each, and how its connections (TCP) or flows (UDP)
//! are spread over a pool.
//!
//! Holds the checked types ([`ServiceConfig`], [`Protocol`], [`Balance`], [`ProxyProtocol`]),
//! the raw form as written and the checks: unique names, listen addresses unique per protocol,
//! a `pool` that exists, ranges, and keys that belong to the other protocol.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
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
/// A UDP flow has no close: it ends when nothing moved for this long (nginx's
/// `proxy_timeout` in its stream module defaults to 10 minutes, LVS's UDP timeout to 5; a
/// DNS or syslog client that goes quiet for half a minute has moved on).
const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Replies a `responses` count may ask for per request: more is a stream, not a reply.
const MAX_RESPONSES: i64 = 1000;
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_BACKLOG: u32 = 1024;
const MAX_RETRIES: i64 = 16;

/// One listener and how its connections are spread over a pool (`[[service]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub name: String,
    /// TCP connections or UDP flows. Default [`Protocol::Tcp`].
    pub protocol: Protocol,
    /// IPv4 or IPv6 (`[::1]:80`); never port 0. A TCP and a UDP service may share it.
    pub listen: SocketAddr,
    /// Names a [`PoolConfig`] that exists in the same [`Config`].
    pub pool: String,
    /// Default [`Balance::RoundRobin`].
    pub balance: Balance,
    /// Extra backends tried after a failed connect, 0..=16. Default 2.
    pub retries: u32,
    /// Default 3s, never zero.
    pub connect_timeout: Duration,
    /// Default 300s (UDP: 30s), never zero. A UDP flow ends when no datagram moved either way
    /// for this long.
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
    /// UDP: replies the backend sends per request datagram (`1` for DNS); a flow ends as soon
    /// as it has them all. 0 (default): until `idle_timeout`.
    pub responses: u32,
    /// UDP: flows open at once; a datagram that would start one more is dropped and counted.
    /// 0 = unlimited (default; each data thread's flow table still has a bound of its own).
    pub max_flows: u32,
}

/// The transport a service balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Connections, proxied as byte streams.
    #[default]
    Tcp,
    /// Datagrams, grouped into flows by client address and port.
    Udp,
}

impl Protocol {
    /// The spelling used in TOML.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub protocol: Option<Spanned<Protocol>>,
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
    pub responses: Option<Spanned<i64>>,
    pub max_flows: Option<Spanned<i64>>,
}

impl RawService {
    fn protocol(&self) -> Protocol {
        self.protocol
            .as_ref()
            .map_or(Protocol::Tcp, |p| *p.get_ref())
    }

    /// The keys set that only the other protocol understands, with where they were written.
    fn foreign_keys(&self) -> Vec<(&'static str, Range<usize>)> {
        let span = |key: &'static str, value: Option<Range<usize>>| value.map(|s| (key, s));
        let keys = match self.protocol() {
            Protocol::Udp => [
                span("retries", self.retries.as_ref().map(Spanned::span)),
                span(
                    "connect_timeout",
                    self.connect_timeout.as_ref().map(Spanned::span),
                ),
                span(
                    "first_byte_timeout",
                    self.first_byte_timeout.as_ref().map(Spanned::span),
                ),
                span("max_conns", self.max_conns.as_ref().map(Spanned::span)),
                span(
                    "max_conns_per_source",
                    self.max_conns_per_source.as_ref().map(Spanned::span),
                ),
                span("backlog", self.backlog.as_ref().map(Spanned::span)),
            ]
            .to_vec(),
            Protocol::Tcp => [
                span("responses", self.responses.as_ref().map(Spanned::span)),
                span("max_flows", self.max_flows.as_ref().map(Spanned::span)),
            ]
            .to_vec(),
        };
        keys.into_iter().flatten().collect()
    }
}

impl Validator<'_> {
    pub(crate) fn services(
        &mut self,
        raw: &[Spanned<RawService>],
        pools: &[Spanned<RawPool>],
    ) -> Vec<ServiceConfig> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        // A TCP and a UDP socket on one address and port are different sockets.
        let mut listens: HashMap<(Protocol, SocketAddr), (&str, usize)> = HashMap::new();
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

            let protocol = service.protocol();
            let mut listen = self.listen_addr("listen address", &service.listen);
            if protocol == Protocol::Udp
                && let Some(addr) = listen
                && addr.ip().is_unspecified()
            {
                let message = format!(
                    "a UDP service listens on one address, not {addr}: its replies must leave \
                     from the address the client sent to (name the address, or the VIP)"
                );
                self.error(service.listen.span(), message);
                listen = None;
            }
            if let Some(addr) = listen {
                if let Some(&(other, line)) = listens.get(&(protocol, addr)) {
                    let message = format!(
                        "{protocol} listen address {addr} is already used by service {other:?} \
                         at line {line}"
                    );
                    self.error(service.listen.span(), message);
                } else {
                    let line = self.line_of(&service.listen.span());
                    listens.insert((protocol, addr), (name, line));
                }
            }
            for (key, span) in service.foreign_keys() {
                let other = match protocol {
                    Protocol::Tcp => "UDP",
                    Protocol::Udp => "TCP",
                };
                let message =
                    format!("`{key}` applies to {other} services only; this one is {protocol}");
                self.error(span, message);
            }
            if protocol == Protocol::Udp
                && let Some(p) = &service.proxy_protocol
                && *p.get_ref() == ProxyProtocol::V1
            {
                let message = "a UDP service sends the PROXY protocol as v2 (its DGRAM header); \
                               v1 has no form for datagrams"
                    .to_owned();
                self.error(p.span(), message);
            }

            self.pool_reference(name, &service.pool, pools);
            services.push(self.service(service, listen));
        }
        services
    }

    /// The scalar settings of one service.
    fn service(&mut self, raw: &RawService, listen: Option<SocketAddr>) -> ServiceConfig {
        let protocol = raw.protocol();
        let default_idle = match protocol {
            Protocol::Tcp => DEFAULT_IDLE_TIMEOUT,
            Protocol::Udp => DEFAULT_UDP_IDLE_TIMEOUT,
        };
        ServiceConfig {
            name: raw.name.get_ref().clone(),
            protocol,
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
            idle_timeout: self.duration("idle_timeout", &raw.idle_timeout, default_idle, true),
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
            responses: self.int("responses", &raw.responses, 0..=MAX_RESPONSES, 0),
            max_flows: self.int("max_flows", &raw.max_flows, 0..=u32::MAX.into(), 0),
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
