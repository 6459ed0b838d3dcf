//! The `health` tables: how each backend is probed.
//!
//! A pool's `health` applies to all its backends; a backend's own `health` table overrides it
//! key by key (say, another `path` or `port` for one backend). The merged table is validated
//! once per backend, so errors point at the key as written, wherever it was written.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;
use super::values;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 3;
const DEFAULT_EJECT_AFTER: u32 = 3;
const MAX_COUNT: i64 = 100;
/// A host name is at most 253 characters (RFC 1035 §2.3.4), plus a `:port`.
const MAX_HOST_LEN: usize = 255;
/// Longer request targets are refused by common servers (8 KiB request lines at most).
const MAX_PATH_LEN: usize = 4096;
/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
const MAX_DATAGRAM: usize = 65_507;

/// How one backend is probed, with the rise/fall rules that turn probes into up/down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub check: HealthCheck,
    /// Time between probes. Default 2s.
    pub interval: Duration,
    /// Longest a probe may take; never longer than `interval`. Default 1s.
    pub timeout: Duration,
    /// Consecutive good probes that bring a down backend up. Default 2.
    pub rise: u32,
    /// Consecutive bad probes that take an up backend down. Default 3.
    pub fall: u32,
    /// Whether a backend is up when it first appears (start, or added by a reload) before any
    /// probe has run. Default up: a restart must not refuse traffic while probes warm up.
    pub start_up: bool,
    /// Consecutive failed connects seen by the data plane that take the backend down at once,
    /// without waiting for probes (which alone bring it back). 0 turns this off. Default 3.
    pub eject_after: u32,
}

/// What one probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// Connect (to `port` if given, else the traffic port); optionally send bytes and require
    /// the reply to start with `expect`.
    Tcp {
        addr: SocketAddr,
        send: Option<String>,
        expect: Option<String>,
    },
    /// One HTTP/1.1 request on a fresh connection.
    Http {
        addr: SocketAddr,
        method: HttpMethod,
        path: String,
        host: Option<String>,
        /// Status codes and ranges, e.g. "200-399" or "200,204".
        expect: String,
        /// A substring the response body must contain.
        body: Option<String>,
    },
    /// Send one datagram (from a fresh socket) to `port` if given, else the traffic port, and
    /// wait for a reply: one that starts with `expect` if set, any if not. An ICMP port
    /// unreachable fails at once.
    Udp {
        addr: SocketAddr,
        send: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
    /// A program (no shell) whose exit status decides; `{addr}`, `{host}` and `{port}` in its
    /// arguments are replaced by the backend's.
    Command { argv: Vec<String> },
    /// A local process is alive: by name, or by the pid in a pid file.
    Process {
        name: Option<String>,
        pidfile: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
}

/// The `health` table as written, every key optional so pool and backend tables can merge.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub kind: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub start: Option<Spanned<String>>,
    pub eject_after: Option<Spanned<i64>>,
    pub port: Option<Spanned<i64>>,
    pub send: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub send_hex: Option<Spanned<String>>,
    pub expect_hex: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    pub process: Option<Spanned<String>>,
    pub pidfile: Option<Spanned<String>>,
}

impl RawHealth {
    /// `over` key by key on top of `self`. A backend that names another `kind` than its pool
    /// keeps only the pool's common keys (timings, thresholds): the pool's `path` means nothing
    /// to a backend checked by `command`.
    pub(crate) fn overridden_by(&self, over: &RawHealth) -> RawHealth {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        let kind_of = |raw: &RawHealth| raw.kind.as_ref().map(|k| k.get_ref().clone());
        if over.kind.is_some() && kind_of(over) != kind_of(self) {
            let common = RawHealth {
                kind: over.kind.clone(),
                interval: self.interval.clone(),
                timeout: self.timeout.clone(),
                rise: self.rise.clone(),
                fall: self.fall.clone(),
                start: self.start.clone(),
                eject_after: self.eject_after.clone(),
                ..RawHealth::default()
            };
            return common.overridden_by(over);
        }
        RawHealth {
            kind: pick(&self.kind, &over.kind),
            interval: pick(&self.interval, &over.interval),
            timeout: pick(&self.timeout, &over.timeout),
            rise: pick(&self.rise, &over.rise),
            fall: pick(&self.fall, &over.fall),
            start: pick(&self.start, &over.start),
            eject_after: pick(&self.eject_after, &over.eject_after),
            port: pick(&self.port, &over.port),
            send: pick(&self.send, &over.send),
            expect: pick(&self.expect, &over.expect),
            send_hex: pick(&self.send_hex, &over.send_hex),
            expect_hex: pick(&self.expect_hex, &over.expect_hex),
            method: pick(&self.method, &over.method),
            path: pick(&self.path, &over.path),
            host: pick(&self.host, &over.host),
            body: pick(&self.body, &over.body),
            command: pick(&self.command, &over.command),
            process: pick(&self.process, &over.process),
            pidfile: pick(&self.pidfile, &over.pidfile),
        }
    }
}

/// Which keys each kind accepts (beyond the common ones).
fn allowed(kind: &str) -> &'static [&'static str] {
    match kind {
        "tcp" => &["port", "send", "expect"],
        "udp" => &["port", "send", "expect", "send_hex", "expect_hex"],
        "http" => &["port", "method", "path", "host", "expect", "body"],
        "command" => &["command"],
        "process" => &["process", "pidfile"],
        _ => &[],
    }
}

impl Validator<'_> {
    /// Validates the merged health table of backend `addr`; `table` is the span to blame for
    /// a missing `kind`.
    pub(crate) fn health(
        &mut self,
        raw: &RawHealth,
        table: Range<usize>,
        addr: SocketAddr,
    ) -> Option<HealthConfig> {
        let Some(kind) = &raw.kind else {
            let message =
                "health needs a kind: \"tcp\", \"http\", \"udp\", \"command\" or \"process\""
                    .to_owned();
            self.error(table, message);
            return None;
        };
        let kind_name = kind.get_ref().as_str();
        if !matches!(kind_name, "tcp" | "http" | "udp" | "command" | "process") {
            let message = format!(
                "unknown health kind {kind_name:?}; expected \"tcp\", \"http\", \"udp\", \
                 \"command\" or \"process\""
            );
            self.error(kind.span(), message);
            return None;
        }
        self.reject_foreign_keys(raw, kind_name);

        let interval = self.duration("interval", &raw.interval, DEFAULT_INTERVAL, true);
        let timeout = self.duration("timeout", &raw.timeout, DEFAULT_TIMEOUT, true);
        if timeout > interval {
            let span = raw
                .timeout
                .as_ref()
                .or(raw.interval.as_ref())
                .map(|s| s.span());
            let message = format!(
                "timeout {} is longer than interval {}: a probe would still be running when \
                 the next one is due",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            );
            self.error(span.unwrap_or(table.clone()), message);
        }
        let rise = self.count("rise", &raw.rise, DEFAULT_RISE);
        let fall = self.count("fall", &raw.fall, DEFAULT_FALL);
        let start_up = match &raw.start {
            None => true,
            Some(s) => match s.get_ref().as_str() {
                "up" => true,
                "down" => false,
                other => {
                    let message = format!("start must be \"up\" or \"down\", not {other:?}");
                    self.error(s.span(), message);
                    true
                }
            },
        };
        let eject_after = self.int(
            "eject_after",
            &raw.eject_after,
            0..=1000,
            DEFAULT_EJECT_AFTER,
        );
        let target = match &raw.port {
            None => addr,
            Some(port) => {
                let port: u16 = self.int("port", &Some(port.clone()), 1..=65535, addr.port());
                SocketAddr::new(addr.ip(), port)
            }
        };
        let check = match kind_name {
            "tcp" => HealthCheck::Tcp {
                addr: target,
                send: raw.send.as_ref().map(|s| s.get_ref().clone()),
                expect: raw.expect.as_ref().map(|s| s.get_ref().clone()),
            },
            "http" => self.http(raw, target),
            "udp" => self.udp(raw, table, target)?,
            "command" => self.command(raw, table, addr)?,
            _ => self.process(raw, table)?,
        };
        Some(HealthConfig {
            check,
            interval,
            timeout,
            rise,
            fall,
            start_up,
            eject_after,
        })
    }

    fn count(&mut self, key: &str, value: &Option<Spanned<i64>>, default: u32) -> u32 {
        if let Some(v) = value
            && *v.get_ref() == 0
        {
            let message = format!("{key} must be at least 1 (one probe decides)");
            self.error(v.span(), message);
            return default;
        }
        self.int(key, value, 1..=MAX_COUNT, default)
    }

    fn reject_foreign_keys(&mut self, raw: &RawHealth, kind: &str) {
        let specific: [(&str, Option<Range<usize>>); 12] = [
            ("port", raw.port.as_ref().map(|s| s.span())),
            ("send", raw.send.as_ref().map(|s| s.span())),
            ("expect", raw.expect.as_ref().map(|s| s.span())),
            ("send_hex", raw.send_hex.as_ref().map(|s| s.span())),
            ("expect_hex", raw.expect_hex.as_ref().map(|s| s.span())),
            ("method", raw.method.as_ref().map(|s| s.span())),
            ("path", raw.path.as_ref().map(|s| s.span())),
            ("host", raw.host.as_ref().map(|s| s.span())),
            ("body", raw.body.as_ref().map(|s| s.span())),
            ("command", raw.command.as_ref().map(|s| s.span())),
            ("process", raw.process.as_ref().map(|s| s.span())),
            ("pidfile", raw.pidfile.as_ref().map(|s| s.span())),
        ];
        for (key, span) in specific {
            if let Some(span) = span
                && !allowed(kind).contains(&key)
            {
                let message = format!("`{key}` does not apply to a {kind} health check");
                self.error(span, message);
            }
        }
    }

    fn http(&mut self, raw: &RawHealth, addr: SocketAddr) -> HealthCheck {
        let method = match &raw.method {
            None => HttpMethod::Get,
            Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
                "GET" => HttpMethod::Get,
                "HEAD" => HttpMethod::Head,
                _ => {
                    let message =
                        format!("method must be \"GET\" or \"HEAD\", not {:?}", m.get_ref());
                    self.error(m.span(), message);
                    HttpMethod::Get
                }
            },
        };
        let path = match &raw.path {
            None => "/".to_owned(),
            Some(p) => {
                let valid = p.get_ref().starts_with('/')
                    && !p
                        .get_ref()
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control());
                if p.get_ref().len() > MAX_PATH_LEN {
                    let message = format!("path is longer than {MAX_PATH_LEN} bytes");
                    self.error(p.span(), message);
                } else if !valid {
                    let message = format!(
                        "path {:?} must start with '/' and hold no spaces",
                        p.get_ref()
                    );
                    self.error(p.span(), message);
                }
                p.get_ref().clone()
            }
        };
        let expect = match &raw.expect {
            None => "200-399".to_owned(),
            Some(e) => {
                if let Err(why) = e.get_ref().parse::<healthcheck::check::StatusMatcher>() {
                    self.error(e.span(), format!("expect {:?}: {why}", e.get_ref()));
                }
                e.get_ref().clone()
            }
        };
        let host = raw.host.as_ref().map(|h| {
            if let Err(message) = host_header(h.get_ref()) {
                self.error(h.span(), message);
            }
            h.get_ref().clone()
        });
        HealthCheck::Http {
            addr,
            method,
            path,
            host,
            expect,
            body: raw.body.as_ref().map(|b| b.get_ref().clone()),
        }
    }

    /// A `udp` check: what to send (text or hex, one of them, not empty) and the reply prefix
    /// to expect (text or hex, at most one).
    fn udp(
        &mut self,
        raw: &RawHealth,
        table: Range<usize>,
        addr: SocketAddr,
    ) -> Option<HealthCheck> {
        let send = self.bytes("send", &raw.send, &raw.send_hex);
        let expect = self.bytes("expect", &raw.expect, &raw.expect_hex);
        let send = match send {
            Err(()) => return None,
            Ok(None) => {
                let message = "a udp health check needs `send` (text) or `send_hex`: the \
                               datagram that asks the backend for a reply"
                    .to_owned();
                self.error(table, message);
                return None;
            }
            Ok(Some(bytes)) => bytes,
        };
        Some(HealthCheck::Udp {
            addr,
            send,
            expect: expect.ok()?,
        })
    }

    /// The bytes of `key` written as text or as `{key}_hex`: `Ok(None)` when neither is set,
    /// `Err` (reported) when both are, or the value is empty, not hex or over 64 KiB.
    fn bytes(
        &mut self,
        key: &str,
        text: &Option<Spanned<String>>,
        hex: &Option<Spanned<String>>,
    ) -> Result<Option<Vec<u8>>, ()> {
        let (span, bytes) = match (text, hex) {
            (None, None) => return Ok(None),
            (Some(_), Some(h)) => {
                let message = format!("give either `{key}` or `{key}_hex`, not both");
                self.error(h.span(), message);
                return Err(());
            }
            (Some(t), None) => (t.span(), Ok(t.get_ref().as_bytes().to_vec())),
            (None, Some(h)) => (h.span(), values::hex(&format!("{key}_hex"), h.get_ref())),
        };
        let checked = bytes.and_then(|b| {
            if b.is_empty() {
                Err(format!("{key} must not be empty"))
            } else if b.len() > MAX_DATAGRAM {
                Err(format!(
                    "{key} is longer than a datagram ({MAX_DATAGRAM} bytes)"
                ))
            } else {
                Ok(b)
            }
        });
        match checked {
            Ok(b) => Ok(Some(b)),
            Err(message) => {
                self.error(span, message);
                Err(())
            }
        }
    }

    fn command(
        &mut self,
        raw: &RawHealth,
        table: Range<usize>,
        addr: SocketAddr,
    ) -> Option<HealthCheck> {
        let Some(command) = &raw.command else {
            let message = "a command health check needs `command`, the program and its \
                           arguments, e.g. [\"/usr/local/bin/check\", \"{addr}\"]"
                .to_owned();
            self.error(table, message);
            return None;
        };
        let args = command.get_ref();
        if args.is_empty() || args[0].get_ref().trim().is_empty() {
            let message = "command must name a program (it is run without a shell)".to_owned();
            self.error(command.span(), message);
            return None;
        }
        for arg in args {
            if let Err(message) = values::argument("command", arg.get_ref()) {
                self.error(arg.span(), message);
            }
        }
        let argv = args
            .iter()
            .map(|a| values::substitute_backend(a.get_ref(), addr))
            .collect();
        Some(HealthCheck::Command { argv })
    }

    fn process(&mut self, raw: &RawHealth, table: Range<usize>) -> Option<HealthCheck> {
        for (key, value) in [("process", &raw.process), ("pidfile", &raw.pidfile)] {
            if let Some(value) = value
                && let Err(message) = values::argument(key, value.get_ref())
            {
                self.error(value.span(), message);
            }
        }
        match (&raw.process, &raw.pidfile) {
            (Some(name), None) if !name.get_ref().is_empty() => Some(HealthCheck::Process {
                name: Some(name.get_ref().clone()),
                pidfile: None,
            }),
            (None, Some(file)) if !file.get_ref().is_empty() => Some(HealthCheck::Process {
                name: None,
                pidfile: Some(PathBuf::from(file.get_ref())),
            }),
            (Some(_), Some(file)) => {
                let message = "give either `process` or `pidfile`, not both".to_owned();
                self.error(file.span(), message);
                None
            }
            _ => {
                let message =
                    "a process health check needs `process` (a name) or `pidfile` (a path)"
                        .to_owned();
                self.error(table, message);
                None
            }
        }
    }
}

/// A `Host` header value: a name or address and an optional port, in ASCII (an
/// internationalised name in its `xn--` form). A CR or LF would end the header early and
/// corrupt the request, and every probe would fail.
fn host_header(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(
            "host must not be empty; leave it out to send the backend's address".to_owned(),
        );
    }
    if host.len() > MAX_HOST_LEN {
        return Err(format!("host is longer than {MAX_HOST_LEN} characters"));
    }
    if let Some(c) = host.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "host {host:?} holds {c:?}; a Host header is a name or address and a port"
        ));
    }
    if !host.is_ascii() {
        return Err(format!(
            "host {host:?} is not ASCII; write an internationalised name in its xn-- form"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
