//! Checks for single scalar values. Each returns the operator-facing message
//! on failure; the caller attaches the location.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// What an address must look like. Hostnames are refused on purpose: a
/// load balancer resolving DNS at config load hides failures until reload.
const ADDR_EXPECTED: &str = "expected IP:PORT, e.g. 10.0.0.1:80 or [::1]:80";

/// Names become metrics labels and URL path segments, so they are limited
/// to characters that need no escaping in either.
pub(crate) fn name(kind: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{kind} name must not be empty"));
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
/// adding it to a clock reading can never overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

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
