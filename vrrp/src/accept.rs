//! Which received VRRP messages count as adverts for this instance (RFC 5798 §7.1), as a pure
//! function of the bytes and what the IP layer said of them.
//!
//! Kept apart from the socket shell so the rules (hop limit, checksum and the rest of the
//! codec's checks, our own looped-back adverts, the unicast peer allow-list, the virtual
//! router id, the version) are tested with real encoded bytes, in memory, by the elections in
//! `tests/election.rs` as well as by the instance that runs them on a link.

use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{self, Version};

/// What an instance accepts adverts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptor {
    /// Our advert source: a message from it is our own, looped back.
    pub own: IpAddr,
    /// Unicast peers, the only senders accepted; empty: multicast, any sender on the link.
    pub peers: Vec<IpAddr>,
    pub vrid: u8,
    pub version: Version,
}

/// One received VRRP message, as the IP layer delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub src: IpAddr,
    /// The group address, or ours for a unicast advert (part of the v3 checksum).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit; 0 when the kernel did not say.
    pub ttl: u8,
    /// The VRRP message, IP header removed.
    pub payload: &'a [u8],
}

/// What a received message is to the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An advert of our virtual router: feed it to the election.
    Advert {
        src: IpAddr,
        priority: u8,
        interval: Duration,
    },
    /// Our own advert, looped back: not news.
    Own,
    /// Another virtual router of the link: not ours to count.
    OtherRouter,
    /// Malformed, forged or foreign: dropped and counted under `reason`.
    Dropped {
        reason: &'static str,
        detail: String,
    },
}

impl Acceptor {
    /// Judges one received message (see the module doc).
    pub fn judge(&self, received: Received<'_>) -> Verdict {
        let Received {
            src,
            dst,
            ttl,
            payload,
        } = received;
        // The header alone: the addresses are not needed here, and collecting them would
        // allocate on every advert.
        let decoded =
            packet::check_ttl(ttl).and_then(|()| packet::decode_header(payload, src, dst));
        let advert = match decoded {
            Ok(advert) => advert,
            Err(e) => return dropped(e.reason(), e.to_string()),
        };
        if src == self.own {
            return Verdict::Own;
        }
        // With unicast peers, only they may take part: anyone else who can reach us would
        // otherwise win the election with a priority-255 advert.
        if !self.peers.is_empty() && !self.peers.contains(&src) {
            return dropped("peer", format!("advert from {src}, which is not a peer"));
        }
        if advert.vrid != self.vrid {
            return Verdict::OtherRouter;
        }
        if advert.version != self.version {
            let detail = format!("version {} advert from {src}", advert.version.number());
            return dropped("version", detail);
        }
        Verdict::Advert {
            src,
            priority: advert.priority,
            interval: advert.interval,
        }
    }
}

fn dropped(reason: &'static str, detail: String) -> Verdict {
    Verdict::Dropped { reason, detail }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::Advert;

    const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));

    fn acceptor(peers: Vec<IpAddr>) -> Acceptor {
        Acceptor {
            own: ME,
            peers,
            vrid: 51,
            version: Version::V3,
        }
    }

    fn bytes(version: Version, vrid: u8, src: IpAddr) -> Vec<u8> {
        let advert = Advert {
            version,
            vrid,
            priority: 150,
            interval: Duration::from_secs(1),
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
        };
        packet::encode(&advert, src, GROUP).unwrap()
    }

    fn judge(acceptor: &Acceptor, src: IpAddr, ttl: u8, payload: &[u8]) -> Verdict {
        acceptor.judge(Received {
            src,
            dst: GROUP,
            ttl,
            payload,
        })
    }

    fn reason(verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::Dropped { reason, .. } => reason,
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    #[test]
    fn an_advert_of_our_router_is_accepted_with_its_priority_and_interval() {
        let payload = bytes(Version::V3, 51, PEER);
        assert_eq!(
            judge(&acceptor(vec![]), PEER, 255, &payload),
            Verdict::Advert {
                src: PEER,
                priority: 150,
                interval: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn each_rule_turns_away_what_it_names() {
        let multicast = acceptor(vec![]);
        let good = bytes(Version::V3, 51, PEER);
        assert_eq!(reason(judge(&multicast, PEER, 254, &good)), "ttl");
        let mut corrupt = good.clone();
        corrupt[6] ^= 1; // the checksum field
        assert_eq!(reason(judge(&multicast, PEER, 255, &corrupt)), "checksum");
        // The checksum covers the source: a forged source fails it.
        assert_eq!(reason(judge(&multicast, STRANGER, 255, &good)), "checksum");
        let own = bytes(Version::V3, 51, ME);
        assert_eq!(judge(&multicast, ME, 255, &own), Verdict::Own);
        let other = bytes(Version::V3, 52, PEER);
        assert_eq!(judge(&multicast, PEER, 255, &other), Verdict::OtherRouter);
        let v2 = bytes(Version::V2, 51, PEER);
        assert_eq!(reason(judge(&multicast, PEER, 255, &v2)), "version");
        let unicast = acceptor(vec![PEER]);
        let stranger = bytes(Version::V3, 51, STRANGER);
        assert_eq!(reason(judge(&unicast, STRANGER, 255, &stranger)), "peer");
        assert!(matches!(
            judge(&unicast, PEER, 255, &good),
            Verdict::Advert { .. }
        ));
    }
}
