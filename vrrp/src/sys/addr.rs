//! Virtual addresses on the interface, through rtnetlink (what `ip addr add/del` does).
//!
//! Both operations are idempotent, because a daemon restarted after a crash finds the VIPs it
//! left behind: adding an address that is already there, or removing one that is gone, is
//! success, not an error.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::{AddressMessageBuilder, Handle};

/// A netlink connection for address changes. Must be created inside a tokio runtime (its
/// connection task is spawned there).
#[derive(Clone)]
pub struct Addresses {
    handle: Handle,
}

impl Addresses {
    pub fn connect() -> io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Adds `ip/prefix` to interface `index`; already present is fine.
    pub async fn add(&self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        // `replace` (NLM_F_REPLACE) rather than the default exclusive create, so an address left
        // over from a crash is taken over instead of failing with EEXIST.
        let mut request = self.handle.address().add(index, ip, prefix).replace();
        if ip.is_ipv6() {
            // No duplicate address detection: the VIP must answer the moment we are master,
            // not a second later, and the election already decided who holds it.
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        request
            .execute()
            .await
            .map_err(|e| netlink_error("add", ip, e))
    }

    /// Removes `ip` from interface `index`; already absent is fine.
    pub async fn remove(&self, index: u32, ip: IpAddr) -> io::Result<()> {
        for message in self.find(index, ip).await? {
            match self.handle.address().del(message).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                Err(e) => return Err(netlink_error("remove", ip, e)),
            }
        }
        Ok(())
    }

    /// Removes `ip` from interface `index` as [`Addresses::remove`] does, after asking the
    /// kernel to delete `ip/prefix` whether or not it is there. The kernel checks that the caller
    /// may change addresses (CAP_NET_ADMIN) before it looks for the address, so this tells a
    /// refusal (`PermissionDenied`) even when there is nothing to remove, and adds nothing.
    pub async fn clear(&self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let message = match ip {
            IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(v4, prefix)
                .build(),
            IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(v6, prefix)
                .build(),
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
            Err(e) => return Err(netlink_error("remove", ip, e)),
        }
        self.remove(index, ip).await
    }

    /// Whether `ip` is on interface `index`.
    pub async fn contains(&self, index: u32, ip: IpAddr) -> io::Result<bool> {
        Ok(!self.find(index, ip).await?.is_empty())
    }

    /// The address adverts come from when the config names none (what peers compare in the
    /// tie-break): the interface's first primary IPv4 address, or its IPv6 link-local one.
    pub async fn primary(&self, index: u32, v6: bool) -> io::Result<Option<IpAddr>> {
        let messages = self.list(index).await?;
        Ok(messages
            .iter()
            .filter(|m| !m.header.flags.contains(AddressHeaderFlags::Secondary))
            .filter_map(address_of)
            // RFC 5798 §5.1.2.1: over IPv6 the source is the link-local address.
            .find(|ip| match ip {
                IpAddr::V4(_) => !v6,
                IpAddr::V6(_) => v6 && is_link_local(*ip),
            }))
    }

    async fn find(&self, index: u32, ip: IpAddr) -> io::Result<Vec<AddressMessage>> {
        Ok(self
            .list(index)
            .await?
            .into_iter()
            .filter(|m| address_of(m) == Some(ip))
            .collect())
    }

    async fn list(&self, index: u32) -> io::Result<Vec<AddressMessage>> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| io::Error::other(format!("listing addresses: {e}")))
    }
}

fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    // IPv4 carries the interface's own address in `Local` (`Address` is the peer on
    // point-to-point links); IPv6 only has `Address`.
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// Link-local: 169.254.0.0/16, fe80::/10 (the IPv6 source of VRRPv3 adverts, RFC 5798
/// §5.1.2.1).
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|c| -c.get()),
        _ => None,
    }
}

/// An address change the kernel answered with an error number.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {ip}: {os}")]
struct Refused {
    what: &'static str,
    ip: IpAddr,
    os: io::Error,
}

fn netlink_error(what: &'static str, ip: IpAddr, e: rtnetlink::Error) -> io::Error {
    match errno(&e) {
        Some(code) => {
            let os = io::Error::from_raw_os_error(code);
            io::Error::new(os.kind(), Refused { what, ip, os })
        }
        None => io::Error::other(format!("cannot {what} {ip}: {e}")),
    }
}

/// The kernel's error number behind `error`: a system call's, or an address change's (whose
/// message says what was changed). EPERM is a missing capability; EACCES is not always a
/// refusal of ours (an IPv6 address on a link with IPv6 disabled).
pub fn os_error(error: &io::Error) -> Option<i32> {
    error.raw_os_error().or_else(|| {
        error
            .get_ref()?
            .downcast_ref::<Refused>()?
            .os
            .raw_os_error()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_number_survives_the_message_of_an_address_change() {
        let os = io::Error::from_raw_os_error(libc::EPERM);
        let refused = io::Error::new(
            os.kind(),
            Refused {
                what: "add",
                ip: "10.0.0.100".parse().unwrap(),
                os,
            },
        );
        assert_eq!(os_error(&refused), Some(libc::EPERM));
        assert!(
            refused.to_string().starts_with("cannot add 10.0.0.100: "),
            "{refused}"
        );
        assert_eq!(
            os_error(&io::Error::from_raw_os_error(libc::EACCES)),
            Some(libc::EACCES)
        );
        assert_eq!(os_error(&io::Error::other("listing addresses: no")), None);
    }
}
