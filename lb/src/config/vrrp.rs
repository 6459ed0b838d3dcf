//! The `[[vrrp]]` tables: which virtual routers this node takes part in.
//!
//! Checked here as far as a file can be: ranges the RFCs fix (VRID, priority, advert interval
//! per version), one address family per instance, tracked pools that exist. What only the
//! running system can say (does the interface exist, may we open raw sockets) is reported by the
//! daemon when it starts the instance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;
use super::values;

const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PRIORITY: u8 = 100;
const DEFAULT_GARP_REPEAT: u32 = 5;
const DEFAULT_GARP_INTERVAL: Duration = Duration::from_millis(200);
const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// One virtual router (`[[vrrp]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    pub name: String,
    pub mode: VrrpMode,
    /// The link the election runs on (and the VIPs are added to).
    pub interface: String,
    /// 1..=255, shared by every router of the group.
    pub vrid: u8,
    /// 1..=255; 255 means this node owns the VIPs (RFC 5798 §6.1). Default 100.
    pub priority: u8,
    /// Default 1s. v3: 10ms steps up to 40.95s; v2: whole seconds up to 255s.
    pub advert_interval: Duration,
    /// 2 or 3 (default 3).
    pub version: u8,
    /// Addresses with prefix length; all of one family.
    pub vips: Vec<Vip>,
    /// Unicast peers; empty: multicast on the interface.
    pub peers: Vec<IpAddr>,
    /// The address adverts are sent from; default: the interface's first address of the family.
    pub source: Option<IpAddr>,
    /// Whether a higher-priority backup takes over from a running master. Default true.
    pub preempt: bool,
    /// After start, how long a backup waits before it may preempt. Default 0.
    pub preempt_delay: Duration,
    pub track: Vec<TrackPool>,
    /// Links whose loss puts the instance in FAULT (no VIP, no adverts).
    pub track_interfaces: Vec<String>,
    /// Gratuitous ARPs / NAs sent on becoming master, `garp_interval` apart. Default 5, 200ms.
    pub garp_repeat: u32,
    pub garp_interval: Duration,
    /// While master, re-announce every this long; `None` (default): never.
    pub garp_refresh: Option<Duration>,
    pub notify: Notify,
    /// Instances sharing a sync group share their tracking and their faults (a FAULT of one
    /// puts the others in FAULT), so they fail over together when backends or links fail.
    pub sync_group: Option<String>,
    /// A host (usually the default gateway) this node must reach to take part: while its
    /// pings fail, the instance is in FAULT, so a node cut off from the network never claims
    /// the VIP (split-brain guard).
    pub track_gateway: Option<TrackGateway>,
}

/// `track_gateway = { addr, interval = "1s", timeout = "500ms", rise = 2, fall = 3 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackGateway {
    pub addr: IpAddr,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpMode {
    /// The master holds the VIPs (a rack pair).
    Vip,
    /// No VIP moves: the role only drives the admin `/healthz` answer (a cloud pair behind a
    /// target group).
    Cloud,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// `{ pool, min_healthy, weight }`: while fewer than `min_healthy` backends of `pool` are
/// usable, the instance's priority drops by `weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackPool {
    pub pool: String,
    pub min_healthy: u32,
    pub weight: u8,
}

/// Programs run on role changes: the `vrrp` crate runs them.
pub use ::vrrp::notify::Notify;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrp {
    pub name: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub interface: Spanned<String>,
    pub vrid: Spanned<i64>,
    pub priority: Option<Spanned<i64>>,
    pub advert_interval: Option<Spanned<String>>,
    pub version: Option<Spanned<i64>>,
    #[serde(default)]
    pub vips: Vec<Spanned<String>>,
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<String>>,
    #[serde(default)]
    pub track: Vec<Spanned<RawTrack>>,
    #[serde(default)]
    pub track_interfaces: Vec<Spanned<String>>,
    pub garp_repeat: Option<Spanned<i64>>,
    pub garp_interval: Option<Spanned<String>>,
    pub garp_refresh: Option<Spanned<String>>,
    pub notify: Option<Spanned<RawNotify>>,
    pub sync_group: Option<Spanned<String>>,
    pub track_gateway: Option<Spanned<RawTrackGateway>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrackGateway {
    pub addr: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrack {
    pub pool: Spanned<String>,
    pub min_healthy: Option<Spanned<i64>>,
    pub weight: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub master: Option<Spanned<Vec<String>>>,
    pub backup: Option<Spanned<Vec<String>>>,
    pub fault: Option<Spanned<Vec<String>>>,
    pub stop: Option<Spanned<Vec<String>>>,
    pub timeout: Option<Spanned<String>>,
}

impl Validator<'_> {
    pub(crate) fn vrrps(&mut self, raw: &[Spanned<RawVrrp>]) -> Vec<VrrpConfig> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut groups: HashMap<(String, u8, bool), String> = HashMap::new();
        // Each VIP is held by one instance: two masters would add it twice.
        let mut held: HashMap<IpAddr, (&str, usize)> = HashMap::new();
        let mut all = Vec::with_capacity(raw.len());
        for spanned in raw {
            let r = spanned.get_ref();
            let name = r.name.get_ref();
            let result = values::name("vrrp", name);
            if let Err(message) = result {
                self.error(r.name.span(), message);
            }
            if let Some(&line) = names.get(name.as_str()) {
                let message = format!("duplicate vrrp name {name:?}; first defined at line {line}");
                self.error(r.name.span(), message);
            } else {
                names.insert(name, self.line_of(&r.name.span()));
            }
            let Some(config) = self.vrrp(r, spanned.span()) else {
                continue;
            };
            for raw in &r.vips {
                let Some(addr) = vip_addr(raw.get_ref()) else {
                    continue;
                };
                match held.get(&addr) {
                    Some(&(other, line)) => {
                        let message = if other == name.as_str() {
                            format!("vip {addr} is listed twice (first at line {line})")
                        } else {
                            format!(
                                "vip {addr} is already held by vrrp {other:?} (line {line}); \
                                 each address belongs to one instance"
                            )
                        };
                        self.error(raw.span(), message);
                    }
                    None => {
                        held.insert(addr, (name, self.line_of(&raw.span())));
                    }
                }
            }
            // The family as the instance will pick it: VIPs, then source, then peers.
            let v6 = config
                .vips
                .first()
                .map(|v| v.addr.is_ipv6())
                .or(config.source.map(|s| s.is_ipv6()))
                .or(config.peers.first().map(IpAddr::is_ipv6))
                .unwrap_or(false);
            let key = (config.interface.clone(), config.vrid, v6);
            if let Some(other) = groups.get(&key) {
                let message = format!(
                    "vrid {} on {} is already used by vrrp {other:?}; each virtual router of a \
                     link needs its own vrid",
                    config.vrid, config.interface
                );
                self.error(r.vrid.span(), message);
            } else {
                groups.insert(key, config.name.clone());
            }
            all.push(config);
        }
        all
    }

    fn vrrp(&mut self, r: &RawVrrp, table: Range<usize>) -> Option<VrrpConfig> {
        let mode = match r.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("vip") => VrrpMode::Vip,
            Some("cloud") => VrrpMode::Cloud,
            Some(other) => {
                let message = format!("mode must be \"vip\" or \"cloud\", not {other:?}");
                self.error(r.mode.as_ref().map_or(table.clone(), |m| m.span()), message);
                VrrpMode::Vip
            }
        };
        let interface = r.interface.get_ref().clone();
        if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
            let message = format!("interface {interface:?} is not an interface name");
            self.error(r.interface.span(), message);
        }
        let vrid = self.int("vrid", &Some(r.vrid.clone()), 1..=255, 1u8);
        let priority = self.int("priority", &r.priority, 1..=255, DEFAULT_PRIORITY);
        let version = self.int("version", &r.version, 2..=3, 3u8);
        let advert_interval = self.advert_interval(r, version);

        let vips: Vec<Vip> = r.vips.iter().filter_map(|v| self.vip(v)).collect();
        match mode {
            VrrpMode::Vip if r.vips.is_empty() => {
                let message = "a vrrp instance in vip mode needs `vips`, e.g. \
                               [\"10.0.0.100/24\"]"
                    .to_owned();
                self.error(table.clone(), message);
            }
            VrrpMode::Cloud if !r.vips.is_empty() => {
                let message = "cloud mode moves no address: remove `vips`".to_owned();
                self.error(r.vips[0].span(), message);
            }
            VrrpMode::Cloud if r.peers.is_empty() => {
                let message =
                    "cloud mode needs unicast `peers` (clouds carry no multicast)".to_owned();
                self.error(table.clone(), message);
            }
            _ => {}
        }
        let peers: Vec<IpAddr> = r.peers.iter().filter_map(|p| self.ip("peer", p)).collect();
        // RFC 5798 §5.1.2.1: over IPv6 adverts come from link-local addresses, so a peer is
        // known, and its adverts checked, by its link-local address.
        for (raw, peer) in r.peers.iter().zip(&peers) {
            if peer.is_ipv6() && !vrrp::sys::addr::is_link_local(*peer) {
                let message = format!(
                    "IPv6 peer {peer} must be the peer's link-local address (fe80::/10): VRRPv3 \
                     over IPv6 speaks from link-local addresses"
                );
                self.error(raw.span(), message);
            }
        }
        if r.vips.len() > 255 {
            let message = format!(
                "{} vips: an advert carries at most 255 (RFC 5798 §5.2.5)",
                r.vips.len()
            );
            self.error(r.vips[255].span(), message);
        }
        let source = r.source.as_ref().and_then(|s| {
            let ip = self.ip("source", s)?;
            if ip.is_unspecified() {
                let message = format!(
                    "source {ip} is no address to send adverts from; leave `source` out for the \
                     interface's own"
                );
                self.error(s.span(), message);
                return None;
            }
            Some(ip)
        });

        // One family per instance (RFC 5798 §5.2.9: one address family per advert).
        let family_v6 = vips
            .first()
            .map(|v| v.addr.is_ipv6())
            .or(source.map(|s| s.is_ipv6()))
            .or(peers.first().map(IpAddr::is_ipv6));
        if let Some(v6) = family_v6 {
            let spans = r
                .vips
                .iter()
                .zip(vips.iter().map(|v| v.addr))
                .chain(r.peers.iter().zip(peers.iter().copied()))
                .chain(r.source.iter().zip(source));
            for (raw, addr) in spans {
                if addr.is_ipv6() != v6 {
                    let message = format!(
                        "{addr} is not of the instance's address family; use one [[vrrp]] per \
                         family"
                    );
                    self.error(raw.span(), message);
                }
            }
            if v6 && version == 2 {
                let span = r.version.as_ref().map_or(table.clone(), |v| v.span());
                let message = "VRRPv2 is IPv4 only (RFC 3768); use version = 3 for IPv6".to_owned();
                self.error(span, message);
            }
        }

        let mut track = Vec::new();
        for t in &r.track {
            track.extend(self.track(t.get_ref()));
        }
        if priority == 255 && !r.track.is_empty() {
            let message = "priority 255 marks the address owner, whose priority never changes \
                           (RFC 5798 §6.1); use 254 or less with `track`"
                .to_owned();
            self.error(r.track[0].span(), message);
        }
        let track_interfaces = r
            .track_interfaces
            .iter()
            .map(|i| i.get_ref().clone())
            .collect();
        let garp_repeat = self.int("garp_repeat", &r.garp_repeat, 0..=100, DEFAULT_GARP_REPEAT);
        let garp_interval = self.duration(
            "garp_interval",
            &r.garp_interval,
            DEFAULT_GARP_INTERVAL,
            false,
        );
        let garp_refresh = r
            .garp_refresh
            .as_ref()
            .map(|_| self.duration("garp_refresh", &r.garp_refresh, Duration::ZERO, true));
        let notify = self.notify(r.notify.as_ref());
        let sync_group = r.sync_group.as_ref().map(|g| {
            if let Err(message) = values::name("sync_group", g.get_ref()) {
                self.error(g.span(), message);
            }
            g.get_ref().clone()
        });
        let track_gateway = r.track_gateway.as_ref().and_then(|g| self.track_gateway(g));
        Some(VrrpConfig {
            name: r.name.get_ref().clone(),
            mode,
            interface,
            vrid,
            priority,
            advert_interval,
            version,
            vips,
            peers,
            source,
            preempt: r.preempt.as_ref().is_none_or(|p| *p.get_ref()),
            preempt_delay: self.preempt_delay(r),
            track,
            track_interfaces,
            garp_repeat,
            garp_interval,
            garp_refresh,
            notify,
            sync_group,
            track_gateway,
        })
    }

    fn track_gateway(&mut self, raw: &Spanned<RawTrackGateway>) -> Option<TrackGateway> {
        let g = raw.get_ref();
        let addr = self.ip("track_gateway addr", &g.addr)?;
        if addr.is_ipv6() {
            let message = "track_gateway pings IPv4 addresses only for now".to_owned();
            self.error(g.addr.span(), message);
        }
        let interval = self.duration("interval", &g.interval, Duration::from_secs(1), true);
        let timeout = self.duration("timeout", &g.timeout, Duration::from_millis(500), true);
        if timeout > interval {
            let span = g.timeout.as_ref().map_or(raw.span(), |t| t.span());
            self.error(span, "timeout is longer than interval".to_owned());
        }
        Some(TrackGateway {
            addr,
            interval,
            timeout,
            rise: self.int("rise", &g.rise, 1..=100, 2),
            fall: self.int("fall", &g.fall, 1..=100, 3),
        })
    }

    fn preempt_delay(&mut self, r: &RawVrrp) -> Duration {
        let delay = self.duration("preempt_delay", &r.preempt_delay, Duration::ZERO, false);
        match &r.preempt_delay {
            Some(raw) if delay > vrrp::MAX_PREEMPT_DELAY => {
                let message = "preempt_delay is at most 1000s".to_owned();
                self.error(raw.span(), message);
                Duration::ZERO
            }
            _ => delay,
        }
    }

    fn advert_interval(&mut self, r: &RawVrrp, version: u8) -> Duration {
        let interval = self.duration(
            "advert_interval",
            &r.advert_interval,
            DEFAULT_ADVERT_INTERVAL,
            true,
        );
        let Some(raw) = &r.advert_interval else {
            return interval;
        };
        // The wire format decides what is representable (RFC 5798 §5.2.7, RFC 3768 §5.3.7).
        let wire = if version == 2 {
            vrrp::Version::V2
        } else {
            vrrp::Version::V3
        };
        let problem = wire.wire_interval(interval).is_none().then(|| {
            if version == 2 {
                "VRRPv2 advert_interval is whole seconds from 1s to 255s (RFC 3768 §5.3.7)"
            } else {
                "VRRPv3 advert_interval is a multiple of 10ms from 10ms to 40.95s (RFC 5798 §5.2.7)"
            }
            .to_owned()
        });
        match problem {
            Some(message) => {
                self.error(raw.span(), message);
                DEFAULT_ADVERT_INTERVAL
            }
            None => interval,
        }
    }

    pub(crate) fn vip(&mut self, raw: &Spanned<String>) -> Option<Vip> {
        let text = raw.get_ref().trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let Ok(addr) = addr.parse::<IpAddr>() else {
            let message =
                format!("invalid vip {text:?}: expected ADDRESS[/PREFIX], e.g. 10.0.0.100/24");
            self.error(raw.span(), message);
            return None;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix.map(str::parse::<u8>) {
            None => max,
            Some(Ok(p)) if (1..=max).contains(&p) => p,
            Some(_) => {
                let message = format!("vip {text:?}: prefix length must be 1 to {max}");
                self.error(raw.span(), message);
                return None;
            }
        };
        if let Some(why) = not_a_vip(addr, prefix) {
            let message = format!("vip {addr} cannot be a virtual address: {why}");
            self.error(raw.span(), message);
            return None;
        }
        Some(Vip { addr, prefix })
    }

    /// The address of one host (a peer, the advert source, a gateway): never multicast or
    /// broadcast, nor unspecified.
    fn ip(&mut self, key: &str, raw: &Spanned<String>) -> Option<IpAddr> {
        let Ok(ip) = raw.get_ref().trim().parse::<IpAddr>() else {
            let message = format!("invalid {key} {:?}: expected an IP address", raw.get_ref());
            self.error(raw.span(), message);
            return None;
        };
        match values::not_unicast(ip) {
            // An unspecified source has a message of its own.
            Some(what) if !(key == "source" && ip.is_unspecified()) => {
                let hint = if key == "peer" {
                    "; leave `peers` out to advertise by multicast"
                } else {
                    ""
                };
                let message = format!("{key} {ip} is {what}, not one host's address{hint}");
                self.error(raw.span(), message);
                None
            }
            _ => Some(ip),
        }
    }

    fn track(&mut self, t: &RawTrack) -> Option<TrackPool> {
        let name = t.pool.get_ref();
        let pool = self.pool_size(name);
        let size = pool.unwrap_or(0);
        if pool.is_none() {
            let message = format!("track names pool {name:?}, which is not defined");
            self.error(t.pool.span(), message);
        }
        let max = i64::try_from(size.max(1)).unwrap_or(i64::MAX);
        let min_healthy = self.int("min_healthy", &t.min_healthy, 1..=max, 1u32);
        let weight = self.int("weight", &Some(t.weight.clone()), 1..=254, 1u8);
        pool.map(|_| TrackPool {
            pool: name.clone(),
            min_healthy,
            weight,
        })
    }

    fn notify(&mut self, raw: Option<&Spanned<RawNotify>>) -> Notify {
        let Some(raw) = raw else {
            return Notify {
                timeout: DEFAULT_NOTIFY_TIMEOUT,
                ..Notify::default()
            };
        };
        let raw = raw.get_ref();
        let mut argv = |key: &str, value: &Option<Spanned<Vec<String>>>| {
            let v = value.as_ref()?;
            if v.get_ref().first().is_none_or(|p| p.trim().is_empty()) {
                let message = format!("notify.{key} must name a program (it runs without a shell)");
                self.error(v.span(), message);
                return None;
            }
            for arg in v.get_ref() {
                if let Err(message) = values::argument(&format!("notify.{key}"), arg) {
                    self.error(v.span(), message);
                    return None;
                }
            }
            Some(v.get_ref().clone())
        };
        let (master, backup) = (argv("master", &raw.master), argv("backup", &raw.backup));
        let (fault, stop) = (argv("fault", &raw.fault), argv("stop", &raw.stop));
        Notify {
            master,
            backup,
            fault,
            stop,
            timeout: self.duration("timeout", &raw.timeout, DEFAULT_NOTIFY_TIMEOUT, true),
        }
    }
}

/// The address of a `vips` entry as written (`ADDRESS[/PREFIX]`), if it parses.
fn vip_addr(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.trim().parse().ok()
}

/// Why `addr`/`prefix` cannot be a virtual address, if it cannot: it must be one host's
/// unicast address, which neighbours resolve and routers forward.
fn not_a_vip(addr: IpAddr, prefix: u8) -> Option<String> {
    if let Some(what) = values::not_unicast(addr) {
        return Some(format!("it is {what}"));
    }
    if addr.is_loopback() {
        return Some("it is a loopback address".to_owned());
    }
    let IpAddr::V4(v4) = addr else {
        return None;
    };
    let first = v4.octets()[0];
    if first == 0 {
        return Some("0.0.0.0/8 means this network, no host on it".to_owned());
    }
    if first >= 240 {
        return Some("240.0.0.0/4 is reserved and never routed".to_owned());
    }
    // The all-ones host part of its own subnet is that subnet's broadcast (/31 and /32 have
    // none, RFC 3021).
    if prefix <= 30 {
        let host_bits = u32::MAX >> prefix;
        if u32::from(v4) & host_bits == host_bits {
            return Some(format!("it is the broadcast address of its /{prefix}"));
        }
    }
    None
}

#[cfg(test)]
mod tests;
