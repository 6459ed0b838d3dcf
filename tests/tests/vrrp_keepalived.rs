//! Interoperability with keepalived: a Tandem node and a real keepalived node (from the
//! distribution) in one VRRP group, on a bridge the test builds. They must elect one master
//! whichever has the higher priority, and fail over both ways — in VRRPv3 and VRRPv2.
//!
//! lb1 is Tandem, lb2 is keepalived. The keepalived side has a plain backend named "lb2" on
//! 0.0.0.0:80 in its namespace, which answers on the VIP whenever keepalived has added it; so
//! does a Tandem node run with `[[vrrp]]` only (no service), as keepalived's replacement.

mod common;

use std::time::Duration;

use common::keepalived::{self, Keepalived};
use common::netns::{has_addr, in_netns};
use common::rack::Rack;
use common::*;

/// Tandem lb1 at `tandem_priority`, keepalived lb2 at `keepalived_priority`, both speaking
/// `version` at `interval` (Tandem spelling, keepalived spelling).
struct Group {
    rack: Rack,
    version: u8,
    interval: (&'static str, &'static str),
    /// Tandem runs with `[[vrrp]]` only: it moves the VIP, a plain backend answers on it.
    vrrp_only: bool,
    _backends: (Backend, Backend),
}

impl Group {
    fn new(test: &str, version: u8, interval: (&'static str, &'static str)) -> Option<Self> {
        Self::with(test, version, interval, false)
    }

    fn with(
        test: &str,
        version: u8,
        interval: (&'static str, &'static str),
        vrrp_only: bool,
    ) -> Option<Self> {
        if !keepalived::available(test) {
            return None;
        }
        let rack = Rack::new(test)?;
        let b1 = if vrrp_only {
            rack.wildcard_backend(0)
        } else {
            rack.backend(0)
        };
        let b2 = rack.wildcard_backend(1);
        Some(Self {
            rack,
            version,
            interval,
            vrrp_only,
            _backends: (b1, b2),
        })
    }

    fn tandem(&self, priority: u8) -> Node {
        let extra = format!(
            "version = {}\nadvert_interval = \"{}\"",
            self.version, self.interval.0
        );
        if self.vrrp_only {
            let config = self.rack.vrrp_only_config("lb1", priority, &extra);
            self.rack.start_config(0, &config)
        } else {
            self.rack.start(0, priority, &extra)
        }
    }

    fn keepalived(&self, priority: u8) -> Keepalived {
        self.rack
            .start_keepalived(1, self.version, priority, self.interval.1)
    }

    /// The VIP stays where it is for `hold` (nobody else claims it).
    fn assert_stays(&self, i: usize, hold: Duration, context: &dyn Fn() -> String) {
        let until = std::time::Instant::now() + hold;
        while std::time::Instant::now() < until {
            assert!(
                self.rack.vip_only_on(i),
                "the VIP moved or is held twice\n{}",
                context()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Both ways: Tandem master over a keepalived backup, keepalived takes over when Tandem
    /// stops, Tandem takes back on return (preempt); then keepalived master over a Tandem
    /// backup, Tandem takes over when keepalived stops.
    fn fail_over_both_ways(&self, hold: Duration) {
        let rack = &self.rack;
        // Tandem 150 master, keepalived 100 backup: keepalived decodes our adverts. keepalived
        // joins once Tandem is master: started together, whichever's Master_Down_Interval ends
        // first is briefly master, which says nothing about decoding.
        let mut tandem = self.tandem(150);
        rack.wait_master(0, &[&tandem]);
        let mut kad = self.keepalived(100);
        let context = |t: &Node, k: &Keepalived| {
            format!("{}\n---- keepalived:\n{}", t.log_text(), k.log_text())
        };
        self.assert_stays(0, hold, &|| context(&tandem, &kad));
        assert!(
            !kad.log_text().contains("Entering MASTER STATE"),
            "{}",
            kad.log_text()
        );

        // Tandem resigns (priority 0): keepalived takes over.
        tandem.signal(rustix::process::Signal::TERM);
        tandem.wait_exit();
        rack.wait_master(1, &[]);
        // Tandem returns with the higher priority and preempts.
        let tandem = self.tandem(150);
        rack.wait_master(0, &[&tandem]);
        kad.stop();
        drop(tandem);

        // keepalived 200 master, Tandem 150 backup: we decode keepalived's adverts.
        let mut kad = self.keepalived(200);
        wait_until(&format!("keepalived master\n{}", kad.log_text()), || {
            has_addr(&rack.lbs[1], rack.vip)
        });
        let tandem = self.tandem(150);
        tandem.wait_log("INIT -> BACKUP", 1);
        self.assert_stays(1, hold, &|| context(&tandem, &kad));
        assert!(
            !tandem.log_text().contains("-> MASTER"),
            "{}",
            tandem.log_text()
        );

        // keepalived stops: Tandem takes over.
        kad.stop();
        rack.wait_master(0, &[&tandem]);
    }
}

/// Reads one VRRP packet from the group on the client's link and decodes it with our decoder.
fn capture_one_advert(rack: &Rack) -> vrrp::Advert {
    let client_ip = rack.client_ip;
    in_netns(&rack.client, move || {
        use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
        socket
            .join_multicast_v4_n(
                &vrrp::MULTICAST_V4,
                &InterfaceIndexOrAddress::Address(client_ip),
            )
            .unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 2048];
        let n = std::io::Read::read(&mut &socket, &mut buf).expect("a VRRP advert");
        let (meta, payload) = vrrp::parse_ipv4(&buf[..n]).expect("an IPv4 header");
        vrrp::check_ttl(meta.ttl).expect("TTL 255");
        vrrp::decode(payload, meta.src.into(), meta.dst.into()).expect("a valid advert")
    })
}

#[test]
fn tandem_and_keepalived_share_a_vrrpv3_group_and_fail_over_both_ways() {
    let Some(group) = Group::new("keepalived interop v3", 3, ("100ms", "0.1")) else {
        return;
    };
    group.fail_over_both_ways(Duration::from_millis(1500));
}

#[test]
fn tandem_and_keepalived_share_a_vrrpv2_group_and_fail_over_both_ways() {
    let Some(group) = Group::new("keepalived interop v2", 2, ("1s", "1")) else {
        return;
    };
    group.fail_over_both_ways(Duration::from_secs(4));
}

#[test]
fn a_tandem_node_with_only_vrrp_shares_a_group_with_keepalived_and_fails_over_both_ways() {
    let Some(group) = Group::with("keepalived interop, vrrp only", 3, ("100ms", "0.1"), true)
    else {
        return;
    };
    group.fail_over_both_ways(Duration::from_millis(1500));
}

#[test]
fn keepalived_adverts_decode_with_our_codec() {
    let Some(group) = Group::new("keepalived advert decode", 3, ("100ms", "0.1")) else {
        return;
    };
    let _kad = group.keepalived(120);
    let advert = capture_one_advert(&group.rack);
    assert_eq!(advert.version, vrrp::Version::V3);
    assert_eq!((advert.vrid, advert.priority), (51, 120));
    assert_eq!(advert.interval, Duration::from_millis(100));
    assert_eq!(advert.addresses, vec![std::net::IpAddr::V4(group.rack.vip)]);
}
