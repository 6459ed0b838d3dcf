//! What the daemon needs to know of a network interface: its index, its MAC, whether it is up.
//!
//! Read from sysfs rather than netlink: three small files, no socket, and `ip netns exec`
//! mounts a sysfs of the namespace, so the answers are the namespace's own.

use std::fs;
use std::io;
use std::path::PathBuf;

/// One interface, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Link {
    /// Looks the interface up; a missing interface is `NotFound` with its name in the message.
    pub fn by_name(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not an interface name"),
            ));
        }
        let dir = sys_dir(name);
        let index = read(&dir, "ifindex")?
            .trim()
            .parse::<u32>()
            .map_err(|e| invalid(name, format!("ifindex: {e}")))?;
        let mac = parse_mac(read(&dir, "address")?.trim())
            .ok_or_else(|| invalid(name, "has no Ethernet address".to_owned()))?;
        Ok(Self {
            name: name.to_owned(),
            index,
            mac,
        })
    }

    /// Whether the link can carry traffic: administratively up with a carrier. A tracked
    /// interface that is not puts its VRRP instances in FAULT.
    pub fn is_up(&self) -> bool {
        is_up(&self.name)
    }
}

/// See [`Link::is_up`]; by name, for interfaces that are only tracked.
pub fn is_up(name: &str) -> bool {
    let dir = sys_dir(name);
    // `operstate` is "up" for a working link, "unknown" for links without carrier detection
    // (loopback, some virtual ones) — then `carrier` decides.
    match read(&dir, "operstate").as_deref().map(str::trim) {
        Ok("up") => true,
        Ok("unknown") => read(&dir, "carrier").is_ok_and(|c| c.trim() == "1"),
        _ => false,
    }
}

fn sys_dir(name: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(name)
}

fn read(dir: &std::path::Path, file: &str) -> io::Result<String> {
    fs::read_to_string(dir.join(file)).map_err(|e| {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface {name:?}"))
        } else {
            io::Error::new(e.kind(), format!("interface {name:?}: {file}: {e}"))
        }
    })
}

fn invalid(name: &str, what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("interface {name:?}: {what}"),
    )
}

/// `aa:bb:cc:dd:ee:ff` → bytes; `None` for anything else (e.g. a tunnel's empty address).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_colon_separated_mac_and_rejects_others() {
        assert_eq!(
            parse_mac("02:00:5e:0a:ff:01"),
            Some([0x02, 0x00, 0x5e, 0x0a, 0xff, 0x01])
        );
        for bad in [
            "",
            "02:00:5e:0a:ff",
            "02:00:5e:0a:ff:01:02",
            "2:00:5e:0a:ff:01",
            "zz:00:5e:0a:ff:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_is_found_and_a_missing_interface_is_not_found() {
        let lo = Link::by_name("lo").expect("every namespace has lo");
        assert!(lo.index >= 1);
        let err = Link::by_name("tandem-none0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("tandem-none0"), "{err}");
        assert!(Link::by_name("../etc").is_err());
    }
}
