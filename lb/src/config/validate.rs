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

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::anycast::RawAnycast;
use super::app::RawApp;
use super::error::{LineIndex, MAX_REPORTED};
use super::node::RawNode;
use super::pool::RawPool;
use super::service::RawService;
use super::values;
use super::vrrp::RawVrrp;
use super::{Checked, Config, ConfigError, ConfigErrors, ConfigWarning};

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

pub(crate) fn validate(raw: RawConfig, source: &str, file: &str) -> Result<Checked, ConfigErrors> {
    let mut v = Validator::new(source, file, &raw);
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
    let vrrp = v.vrrps(&raw.vrrp);
    let apps = v.apps(&raw.app, &raw.vrrp);
    let anycast = v.anycasts(&raw.anycast, &raw.vrrp);
    // A service on a VIP must bind it on the backup too, where the address is not (yet) local;
    // and on an anycast address while it is withdrawn.
    let vips: HashSet<IpAddr> = vrrp
        .iter()
        .flat_map(|i| i.vips.iter().map(|vip| vip.addr))
        .chain(anycast.iter().flat_map(|a| a.vips.iter().copied()))
        .collect();
    for service in &mut services {
        service.freebind |= vips.contains(&service.listen.ip());
    }
    let (errors, more, warnings) = v.finish();
    if errors.is_empty() {
        let config = Config {
            node,
            services,
            pools,
            vrrp,
            apps,
            anycast,
        };
        Ok(Checked { config, warnings })
    } else {
        Err(ConfigErrors {
            shown: errors,
            more,
        })
    }
}

pub(crate) struct Validator<'a> {
    file: &'a str,
    index: LineIndex<'a>,
    /// (byte offset, message) of each error, and of each warning.
    errors: Vec<(usize, String)>,
    warnings: Vec<(usize, String)>,
    /// What was already reported (warning?, offset, message): a problem of a pool's `health`
    /// is found once per backend, and reported once.
    seen: HashSet<(bool, usize, String)>,
    /// Each pool's name (as first defined) and number of backends, and each `[[vrrp]]`
    /// instance's name, so references resolve without a scan of every table.
    pool_sizes: HashMap<String, usize>,
    vrrp_names: HashSet<String>,
    /// "defined pools: ..." and "defined: ..." for references that resolve to nothing,
    /// listed once.
    defined_pools: Option<String>,
    defined_instances: Option<String>,
}

/// How many names an error about an undefined name lists; the rest are counted.
const NAMES_LISTED: usize = 10;

impl<'a> Validator<'a> {
    fn new(source: &'a str, file: &'a str, raw: &RawConfig) -> Self {
        let mut pool_sizes = HashMap::with_capacity(raw.pool.len());
        for pool in &raw.pool {
            let pool = pool.get_ref();
            let size = pool.backends.as_ref().map_or(0, |b| b.get_ref().len());
            pool_sizes
                .entry(pool.name.get_ref().clone())
                .or_insert(size);
        }
        let vrrp_names = raw
            .vrrp
            .iter()
            .map(|v| v.get_ref().name.get_ref().clone())
            .collect();
        Validator {
            file,
            index: LineIndex::new(source),
            errors: Vec::new(),
            warnings: Vec::new(),
            seen: HashSet::new(),
            pool_sizes,
            vrrp_names,
            defined_pools: None,
            defined_instances: None,
        }
    }

    /// The errors (the first [`MAX_REPORTED`] located, the rest counted) and the warnings,
    /// in document order; same-spot problems keep the order they were found in.
    fn finish(mut self) -> (Vec<ConfigError>, usize, Vec<ConfigWarning>) {
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.warnings.sort_by_key(|(offset, _)| *offset);
        let more = self.errors.len().saturating_sub(MAX_REPORTED);
        self.errors.truncate(MAX_REPORTED);
        let locate = |(offset, message): (usize, String)| {
            let (line, column) = self.index.position(offset);
            ConfigError {
                file: self.file.to_owned(),
                line,
                column,
                message: shortened(message),
            }
        };
        let errors = std::mem::take(&mut self.errors)
            .into_iter()
            .map(locate)
            .collect();
        let warnings = std::mem::take(&mut self.warnings)
            .into_iter()
            .map(|w| ConfigWarning(locate(w)))
            .collect();
        (errors, more, warnings)
    }

    pub(crate) fn error(&mut self, span: Range<usize>, message: String) {
        if self.seen.insert((false, span.start, message.clone())) {
            self.errors.push((span.start, message));
        }
    }

    /// A value that may be deliberate but is most likely not meant: `check` shows it and
    /// passes, the daemon logs it.
    pub(crate) fn warn(&mut self, span: Range<usize>, message: String) {
        if self.seen.insert((true, span.start, message.clone())) {
            self.warnings.push((span.start, message));
        }
    }

    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        self.index.line(span.start)
    }

    /// 1-based (line, column) where `span` starts.
    pub(crate) fn line_column(&self, span: &Range<usize>) -> (usize, usize) {
        self.index.position(span.start)
    }

    /// The number of backends of the `[[pool]]` called `name` (its first definition), or
    /// `None` when there is no such pool.
    pub(crate) fn pool_size(&self, name: &str) -> Option<usize> {
        self.pool_sizes.get(name).copied()
    }

    /// Whether a `[[vrrp]]` instance called `name` exists.
    pub(crate) fn vrrp_defined(&self, name: &str) -> bool {
        self.vrrp_names.contains(name)
    }

    /// `defined pools: "a", "b"` (or that there is none), for a reference to no pool.
    pub(crate) fn defined_pools(&mut self, pools: &[Spanned<RawPool>]) -> String {
        self.defined_pools
            .get_or_insert_with(|| {
                let names = pools.iter().map(|p| p.get_ref().name.get_ref().as_str());
                match listed(names, true) {
                    None => "no [[pool]] is defined".to_owned(),
                    Some(list) => format!("defined pools: {list}"),
                }
            })
            .clone()
    }

    /// `defined: "a", "b"` (or that there is none), for a reference to no `[[vrrp]]` instance.
    pub(crate) fn defined_instances(&mut self, vrrp: &[Spanned<RawVrrp>]) -> String {
        self.defined_instances
            .get_or_insert_with(|| {
                let names = vrrp.iter().map(|v| v.get_ref().name.get_ref().as_str());
                match listed(names, false) {
                    None => "no [[vrrp]] instance exists".to_owned(),
                    Some(list) => format!("defined: {list}"),
                }
            })
            .clone()
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

    /// A duration within the bounds of its key ([`values::duration_limits`]), optionally
    /// required to be non-zero.
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
                values::duration_in_limits(key, value.get_ref(), d)
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

    /// An address to listen on: one of this host's, or the unspecified address (all of
    /// them); never a multicast group or broadcast, which no TCP listener can serve.
    pub(crate) fn listen_addr(&mut self, key: &str, value: &Spanned<String>) -> Option<SocketAddr> {
        let addr = self.addr(key, value)?;
        match values::not_unicast(addr.ip()) {
            Some(what) if !addr.ip().is_unspecified() => {
                let message = format!("{key} {addr} is {what}; TCP listens on unicast addresses");
                self.error(value.span(), message);
                None
            }
            _ => Some(addr),
        }
    }
}

/// `"a", "b", "c"` (or `a, b, c`): the distinct non-empty names in document order, the
/// first [`NAMES_LISTED`] of them and a count of the others; `None` when there is none.
fn listed<'n>(names: impl Iterator<Item = &'n str>, quoted: bool) -> Option<String> {
    let mut seen = HashSet::new();
    let mut shown = Vec::new();
    let mut others = 0;
    for name in names.filter(|n| !n.is_empty()) {
        if !seen.insert(name) {
            continue;
        }
        if shown.len() < NAMES_LISTED {
            shown.push(if quoted {
                format!("{name:?}")
            } else {
                name.to_owned()
            });
        } else {
            others += 1;
        }
    }
    if shown.is_empty() {
        return None;
    }
    let mut list = shown.join(", ");
    if others > 0 {
        list.push_str(&format!(" and {others} more"));
    }
    Some(list)
}

/// Longest message shown: one quoting a huge value is cut, so that the output stays bounded
/// with the number of errors.
const MAX_MESSAGE_LEN: usize = 300;

fn shortened(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}
