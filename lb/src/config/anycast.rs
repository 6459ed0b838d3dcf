//! The `[[anycast]]` tables: addresses this node announces, beside its peers, for the rack's
//! router to spread flows over by ECMP (active-active, issue 17).
//!
//! Tandem does not speak BGP: while the node should receive traffic it puts each address on a
//! local interface (`lo` by default), and the routing daemon beside it (BIRD's `protocol
//! direct`) exports it to the router. Holds the checked type, the raw form and the checks:
//! unique names, host addresses (/32, /128) that are unicast and not also a VRRP VIP or
//! another announcement's, tracked pools that exist.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;
use super::vrrp::RawVrrp;

const DEFAULT_INTERFACE: &str = "lo";
const DEFAULT_WITHDRAW_GRACE: Duration = Duration::from_secs(2);

/// One announcement (`[[anycast]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnycastConfig {
    pub name: String,
    /// Host addresses, announced together.
    pub vips: Vec<IpAddr>,
    /// Where the addresses go while announced. Default `lo`.
    pub interface: String,
    /// Pools that must have `min_healthy` usable backends for the node to announce.
    pub track: Vec<AnycastTrack>,
    /// After a planned withdrawal (drain, SIGTERM), how long to keep serving what still
    /// arrives while the routers converge, before draining. Default 2s.
    pub withdraw_grace: Duration,
}

/// A pool an announcement depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnycastTrack {
    pub pool: String,
    pub min_healthy: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnycast {
    pub name: Spanned<String>,
    #[serde(default)]
    pub vips: Vec<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    #[serde(default)]
    pub track: Vec<Spanned<RawAnycastTrack>>,
    pub withdraw_grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnycastTrack {
    pub pool: Spanned<String>,
    pub min_healthy: Option<Spanned<i64>>,
}

impl Validator<'_> {
    pub(crate) fn anycasts(
        &mut self,
        raw: &[Spanned<RawAnycast>],
        vrrp: &[Spanned<RawVrrp>],
    ) -> Vec<AnycastConfig> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        // Each address once, across announcements: two would fight over it.
        let mut addresses: HashMap<IpAddr, usize> = HashMap::new();
        let vrrp_vips: HashSet<IpAddr> = vrrp
            .iter()
            .flat_map(|v| v.get_ref().vips.iter())
            .filter_map(|raw| raw.get_ref().split('/').next()?.trim().parse().ok())
            .collect();
        let mut out = Vec::with_capacity(raw.len());
        for spanned in raw {
            let r = spanned.get_ref();
            let name = r.name.get_ref();
            self.name("anycast", &r.name);
            if let Some(&line) = names.get(name.as_str()) {
                let message =
                    format!("duplicate anycast name {name:?}; first defined at line {line}");
                self.error(r.name.span(), message);
            } else {
                names.insert(name, self.line_of(&r.name.span()));
            }
            if r.vips.is_empty() {
                let message = "anycast needs `vips`: the addresses to announce, e.g. \
                               [\"192.0.2.10\"]"
                    .to_owned();
                self.error(spanned.span(), message);
            }
            let mut vips = Vec::with_capacity(r.vips.len());
            for raw_vip in &r.vips {
                let Some(vip) = self.vip(raw_vip) else {
                    continue;
                };
                let host = if vip.addr.is_ipv4() { 32 } else { 128 };
                if vip.prefix != host {
                    let message = format!(
                        "anycast vip {}/{}: announced as a host route, so /{host} (or no prefix)",
                        vip.addr, vip.prefix
                    );
                    self.error(raw_vip.span(), message);
                    continue;
                }
                if vrrp_vips.contains(&vip.addr) {
                    let message = format!(
                        "anycast vip {} is also a [[vrrp]] vip: one mode per address",
                        vip.addr
                    );
                    self.error(raw_vip.span(), message);
                    continue;
                }
                if let Some(&line) = addresses.get(&vip.addr) {
                    let message = format!(
                        "anycast vip {} is already announced at line {line}",
                        vip.addr
                    );
                    self.error(raw_vip.span(), message);
                    continue;
                }
                addresses.insert(vip.addr, self.line_of(&raw_vip.span()));
                vips.push(vip.addr);
            }
            let track = r
                .track
                .iter()
                .filter_map(|t| self.anycast_track(t))
                .collect();
            let interface = match &r.interface {
                Some(i) if i.get_ref().trim().is_empty() || i.get_ref().len() > 15 => {
                    let message =
                        "interface must be a Linux interface name (1 to 15 bytes)".to_owned();
                    self.error(i.span(), message);
                    DEFAULT_INTERFACE.to_owned()
                }
                Some(i) => i.get_ref().clone(),
                None => DEFAULT_INTERFACE.to_owned(),
            };
            let withdraw_grace = self.duration(
                "withdraw_grace",
                &r.withdraw_grace,
                DEFAULT_WITHDRAW_GRACE,
                false,
            );
            out.push(AnycastConfig {
                name: name.clone(),
                vips,
                interface,
                track,
                withdraw_grace,
            });
        }
        out
    }

    fn anycast_track(&mut self, raw: &Spanned<RawAnycastTrack>) -> Option<AnycastTrack> {
        let t = raw.get_ref();
        let name = t.pool.get_ref();
        let Some(size) = self.pool_size(name) else {
            let message = format!("track names pool {name:?}, which is not defined");
            self.error(t.pool.span(), message);
            return None;
        };
        let max = i64::try_from(size.max(1)).unwrap_or(i64::MAX);
        let min_healthy = self.int("min_healthy", &t.min_healthy, 1..=max, 1u32);
        Some(AnycastTrack {
            pool: name.clone(),
            min_healthy,
        })
    }
}

#[cfg(test)]
mod tests;
