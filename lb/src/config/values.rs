//! Checks for single scalar values. Each returns the operator-facing message
//! on failure; the caller attaches the location.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// What an address must look like. Hostnames are refused on purpose: a
/// load balancer resolving DNS at config load hides failures until reload.
const ADDR_EXPECTED: &str = "expected IP:PORT, e.g. 10.0.0.1:80 or [::1]:80";

/// Longest name of anything (node, service, pool, instance, app...): a label, not a text.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Names become metrics labels and URL path segments, so they are limited
/// to characters that need no escaping in either, and to [`MAX_NAME_LEN`].
pub(crate) fn name(kind: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{kind} name must not be empty"));
    }
    let length = value.chars().count();
    if length > MAX_NAME_LEN {
        return Err(format!(
            "{kind} name is {length} characters long; at most {MAX_NAME_LEN} are allowed \
             (names are used in metrics labels and URL paths)"
        ));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(bad) => Err(format!(
            "{kind} name {value:?} contains {bad:?}; only letters, digits, '_', '.' and '-' \
             are allowed (names are used in metrics labels and URL paths)"
        )),
        None => Ok(()),
    }
}

/// A concrete `IP:PORT`. Port 0 would mean "any port", which is never what a
/// listener or backend in a config file intends.
pub(crate) fn socket_addr(key: &str, value: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = value
        .trim()
        .parse()
        .map_err(|_| format!("invalid {key} {value:?}: {ADDR_EXPECTED}"))?;
    if addr.port() == 0 {
        return Err(format!(
            "{key} {value:?} has port 0; a fixed port is required"
        ));
    }
    Ok(addr)
}

/// Longest duration accepted anywhere: far beyond any sane timeout, and small enough that
/// adding it to a clock reading can never overflow. Most keys have a tighter bound
/// ([`duration_limits`]).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The shortest and longest value each duration key takes, and why: values outside are typos
/// or misunderstandings ("1ns", "365d"), never a setting someone means. Keys are named as in
/// the file (`restart.within`); `interval` and `timeout` mean the same in every table that has
/// them (`health`, `track_gateway`, `notify`). Zero, where a key allows it, is checked by the
/// caller.
pub(crate) fn duration_limits(key: &str) -> (Duration, Duration, &'static str) {
    match key {
        // The unit that runs Tandem waits 45 s for a stop; a drain is seconds to minutes.
        "drain_timeout" => (Duration::ZERO, HOUR, "a drain of more than an hour"),
        // Below 1 ms no connect completes even on loopback under load; past ~2 min the kernel
        // has given up the SYN on its own (tcp_syn_retries 6 = 127 s).
        "connect_timeout" => (MS, 2 * MIN, "the kernel gives up a connect after about 2m"),
        "idle_timeout" => (100 * MS, 7 * DAY, "an idle connection kept for a week"),
        // A client gets its first byte through in well under a second; an hour of silence
        // before it is a held slot, which is what the key is there to prevent.
        "first_byte_timeout" => (100 * MS, HOUR, "a silent client held for more than an hour"),
        // A probe every millisecond per backend is load, not a health check; one an hour
        // finds nothing in time.
        "interval" => (10 * MS, HOUR, "a check that runs less than hourly"),
        "timeout" => (MS, HOUR, "a timeout of more than an hour"),
        "eject_time" | "eject_time_max" => (10 * MS, HOUR, "an ejection of more than an hour"),
        "garp_interval" => (
            Duration::ZERO,
            MIN,
            "gratuitous ARPs more than a minute apart",
        ),
        "garp_refresh" => (SEC, DAY, "a refresh less than daily"),
        "restart.within" => (SEC, 7 * DAY, "a restart window of more than a week"),
        "restart.backoff" | "restart.backoff_max" => {
            (Duration::ZERO, HOUR, "a restart delay of more than an hour")
        }
        "start_timeout" | "stop_timeout" => {
            (100 * MS, HOUR, "a start or stop of more than an hour")
        }
        "reset_after" => (SEC, 7 * DAY, "a failure forgiven after more than a week"),
        "withdraw_grace" => (Duration::ZERO, 10 * MIN, "routers converge in seconds"),
        _ => (Duration::ZERO, MAX_DURATION, "more than a year"),
    }
}

/// `duration` (written as `text`) for `key` within its [`duration_limits`].
pub(crate) fn duration_in_limits(
    key: &str,
    text: &str,
    duration: Duration,
) -> Result<Duration, String> {
    let (min, max, why) = duration_limits(key);
    let text = text.trim();
    if !duration.is_zero() && duration < min {
        let min = humantime::format_duration(min);
        return Err(format!(
            "{key} {text:?} is shorter than the minimum of {min}"
        ));
    }
    if duration > max {
        let max = humantime::format_duration(max);
        return Err(format!(
            "{key} {text:?} is longer than the maximum of {max} ({why})"
        ));
    }
    Ok(duration)
}

/// What makes `ip` no address of one host, if anything: the unspecified address (every
/// address, or none), a multicast group, or IPv4 broadcast.
pub(crate) fn not_unicast(ip: IpAddr) -> Option<&'static str> {
    match ip {
        _ if ip.is_unspecified() => Some("the unspecified address"),
        _ if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    }
}

/// An argument passed to a program: the system cannot pass a NUL byte.
pub(crate) fn argument(key: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!(
            "{key} holds a NUL byte, which no program argument can"
        ));
    }
    Ok(())
}

/// A human duration such as "500ms", "2s" or "5m", at most a year.
pub(crate) fn duration(key: &str, value: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(value.trim()).map_err(|e| {
        format!(
            "invalid {key} {value:?}: {e}; expected a duration like \"500ms\", \"2s\" or \"5m\""
        )
    })?;
    if parsed > MAX_DURATION {
        return Err(format!(
            "{key} {value:?} is longer than the maximum of 365 days"
        ));
    }
    Ok(parsed)
}

/// An integer within `range`, converted to the field's type.
pub(crate) fn int_in<T: TryFrom<i64>>(
    key: &str,
    value: i64,
    range: RangeInclusive<i64>,
) -> Result<T, String> {
    if !range.contains(&value) {
        return Err(format!(
            "{key} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        ));
    }
    T::try_from(value).map_err(|_| format!("{key} {value} does not fit this platform"))
}

/// `{addr}`, `{host}` and `{port}` in a health command argument, replaced by the backend's, so
/// one pool-level command checks each backend.
pub(crate) fn substitute_backend(arg: &str, addr: SocketAddr) -> String {
    arg.replace("{addr}", &addr.to_string())
        .replace("{host}", &addr.ip().to_string())
        .replace("{port}", &addr.port().to_string())
}

/// Bytes written as hex digits, two per byte; spaces and colons between bytes are allowed
/// (`"00 01 ab"`, `"00:01:ab"`), so a captured packet can be pasted.
pub(crate) fn hex(key: &str, value: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = value
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'\t'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "{key} has an odd number of hex digits; write two per byte, e.g. \"0a1b\""
        ));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = String::from_utf8_lossy(pair);
            u8::from_str_radix(&text, 16)
                .map_err(|_| format!("{key} holds {text:?}, which is not a hex byte"))
        })
        .collect()
}
