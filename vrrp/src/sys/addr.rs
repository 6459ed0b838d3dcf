//! Virtual addresses on the interface, through rtnetlink (what `ip addr add/del` does).
//!
//! Both operations are idempotent, because a daemon restarted after a crash finds the VIPs it
//! left behind: adding an address that is already there, or removing one that is gone, is
//! success, not an error.

use std::io;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::Handle;

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

fn netlink_error(what: &str, ip: IpAddr, e: rtnetlink::Error) -> io::Error {
    match errno(&e) {
        Some(code) => {
            let os = io::Error::from_raw_os_error(code);
            io::Error::new(os.kind(), format!("cannot {what} {ip}: {os}"))
        }
        None => io::Error::other(format!("cannot {what} {ip}: {e}")),
    }
}
