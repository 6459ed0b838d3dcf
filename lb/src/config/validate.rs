//! Turns the raw schema into a [`Config`], collecting every semantic error
//! in one pass rather than stopping at the first.
//!
//! This file holds the top level only: the whole file's raw form, the walk over its sections
//! (each checked in its own file: `node.rs`, `service.rs`, `pool.rs`, `health.rs`, `vrrp.rs`)
//! and the [`Validator`] helpers they share for locating errors and checking single values.
//!
//! The raw forms are the TOML schema as written by operators, before any semantic checks.
//! Every value is `Spanned` so validation can point at it. Addresses,
//! durations and integers are kept loosely typed (strings, `i64`) so that a
//! bad value becomes one collected, well-worded error instead of aborting
//! deserialization at the first problem.

use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::anycast::RawAnycast;
use super::app::RawApp;
use super::error::position;
use super::node::RawNode;
use super::pool::RawPool;
use super::service::RawService;
use super::values;
use super::vrrp::RawVrrp;
use super::{Config, ConfigError, ConfigErrors};

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
    #[serde(default)]
    pub app: Vec<Spanned<RawApp>>,
    #[serde(default)]
    pub anycast: Vec<Spanned<RawAnycast>>,
}

pub(crate) fn validate(raw: RawConfig, source: &str, file: &str) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        source,
        file,
        errors: Vec::new(),
    };
    if raw.service.is_empty() && raw.vrrp.is_empty() {
        // A node without services is a keepalived replacement, or the primary/secondary
        // health endpoint of an application serving its own traffic; with neither, nothing.
        let message =
            "no [[service]] or [[vrrp]] defined; at least one is required: a service to proxy, \
             or a VRRP instance to hold"
                .to_owned();
        v.error(0..0, message);
    }
    let node = v.node(raw.node);
    let pools = v.pools(&raw.pool);
    let mut services = v.services(&raw.service, &raw.pool);
    let vrrp = v.vrrps(&raw.vrrp, &raw.pool);
    let apps = v.apps(&raw.app, &raw.vrrp);
    let anycast = v.anycasts(&raw.anycast, &raw.pool, &raw.vrrp);
    // A service on a VIP must bind it on the backup too, where the address is not (yet) local;
    // and on an anycast address while it is withdrawn.
    for service in &mut services {
        let on_vip = vrrp
            .iter()
            .flat_map(|i| &i.vips)
            .any(|vip| vip.addr == service.listen.ip())
            || anycast
                .iter()
                .flat_map(|a| &a.vips)
                .any(|vip| *vip == service.listen.ip());
        service.freebind |= on_vip;
    }
    if v.errors.is_empty() {
        Ok(Config {
            node,
            services,
            pools,
            vrrp,
            apps,
            anycast,
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
        self.line_column(span).0
    }

    /// 1-based (line, column) where `span` starts.
    pub(crate) fn line_column(&self, span: &Range<usize>) -> (usize, usize) {
        position(self.source, span.start)
    }

    /// Records `result`'s error at `span`; returns the value or `fallback`
    /// so that checking can continue past a bad value.
    fn check<T>(&mut self, span: Range<usize>, result: Result<T, String>, fallback: T) -> T {
        result.unwrap_or_else(|message| {
            self.error(span, message);
            fallback
        })
    }

    pub(crate) fn name(&mut self, kind: &str, name: &Spanned<String>) {
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

    pub(crate) fn addr(&mut self, key: &str, value: &Spanned<String>) -> Option<SocketAddr> {
        match values::socket_addr(key, value.get_ref()) {
            Ok(addr) => Some(addr),
            Err(message) => {
                self.error(value.span(), message);
                None
            }
        }
    }
}
