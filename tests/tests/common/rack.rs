//! A rack for VRRP tests: two LB namespaces (`.1` lb1, `.2` lb2) and a client (`.10`) on one
//! bridge built by the test, and a VIP (`.100`).
//!
//! Each LB namespace gets a backend of its own, named after the node, so a client connection
//! to VIP:80 says which node holds the VIP.
//!
//! Everything here is created in, and runs in, the rack's own namespaces: the LAN deletes them
//! when the rack drops, and the processes started here are stopped by PID when their handles
//! drop (declare them after the rack, so they drop first).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use super::keepalived::{self, Keepalived};
use super::netns::{Lan, has_addr, in_netns};
use super::{Backend, Node, logs_of, wait_until, which_backend_within};

pub const VIP_HOST: u8 = 100;
pub const PORT: u16 = 80;

/// Two LB namespaces (`.1` lb1, `.2` lb2) and a client (`.10`) on one bridge.
pub struct Rack {
    /// The LAN; its `Drop` deletes the namespaces.
    lan: Lan,
    pub lbs: [String; 2],
    pub client: String,
    pub client_ip: Ipv4Addr,
    pub vip: Ipv4Addr,
}

impl Rack {
    pub fn new(test: &str) -> Option<Self> {
        let mut lan = Lan::new(test)?;
        let lbs = [lan.host("lb1", 1), lan.host("lb2", 2)];
        let client = lan.host("client", 10);
        let vip = lan.addr(VIP_HOST);
        let client_ip = lan.addr(10);
        Some(Self {
            lan,
            lbs,
            client,
            client_ip,
            vip,
        })
    }

    /// LB node `i`'s own address on the LAN.
    pub fn lb_ip(&self, i: usize) -> Ipv4Addr {
        self.lan.addr(i as u8 + 1)
    }

    /// Partitions LB node `i` from everyone (its link stays up), or heals the partition.
    pub fn isolate(&self, i: usize, isolated: bool) {
        self.lan.isolate(&self.lbs[i], isolated);
    }

    /// Adds a host to the LAN (e.g. a gateway), returning its namespace.
    pub fn add_host(&mut self, name: &str, host: u8) -> String {
        self.lan.host(name, host)
    }

    /// The IPv6 address `::host` of the LAN.
    pub fn addr6(&self, host: u16) -> std::net::Ipv6Addr {
        self.lan.addr6(host)
    }

    /// The address `.host` of the LAN.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        self.lan.addr(host)
    }

    /// Takes LB node `i`'s link down or up, as a pulled cable would.
    pub fn set_link(&self, i: usize, up: bool) {
        self.lan.set_host_link(&self.lbs[i], up);
    }

    /// LB node `i`'s name (`lb1`, `lb2`): in its config, and the name of its backend.
    pub fn name(&self, i: usize) -> String {
        format!("lb{}", i + 1)
    }

    /// LB node `i`'s backend, named after the node, on 127.0.0.1:9000 inside its namespace:
    /// what the node's web service proxies to.
    pub fn backend(&self, i: usize) -> Backend {
        self.backend_on(i, "127.0.0.1:9000")
    }

    /// Both nodes' backends (see [`Rack::backend`]).
    pub fn backends(&self) -> [Backend; 2] {
        [self.backend(0), self.backend(1)]
    }

    /// A backend named after node `i` on 0.0.0.0:80 inside its namespace, answering on the VIP
    /// whenever the node holds it: for a keepalived node, which moves addresses but does not
    /// proxy.
    pub fn wildcard_backend(&self, i: usize) -> Backend {
        self.backend_on(i, "0.0.0.0:80")
    }

    fn backend_on(&self, i: usize, addr: &'static str) -> Backend {
        let listener = in_netns(&self.lbs[i], move || TcpListener::bind(addr).expect("bind"));
        Backend::from_listener(&self.name(i), listener)
    }

    /// A node's config: one web service on VIP:80 over its local backend (checked every
    /// 100 ms), and one VRRP instance (see [`Rack::vrrp_only_config`]).
    pub fn config(&self, node: &str, priority: u8, extra_vrrp: &str) -> String {
        let service = format!(
            r#"[[service]]
name = "web"
listen = "{vip}:{PORT}"
pool = "web"
connect_timeout = "500ms"

[[pool]]
name = "web"
backends = [{{ addr = "127.0.0.1:9000" }}]
health = {{ kind = "tcp", interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }}

"#,
            vip = self.vip
        );
        self.vrrp_only_config(node, priority, extra_vrrp).replacen(
            "[[vrrp]]",
            &format!("{service}[[vrrp]]"),
            1,
        )
    }

    /// A node's config with no service at all: one VRRP instance (vrid 51, adverts every
    /// 100 ms unless `extra_vrrp` sets `advert_interval`) holding the VIP.
    pub fn vrrp_only_config(&self, node: &str, priority: u8, extra_vrrp: &str) -> String {
        let interval = if extra_vrrp.contains("advert_interval") {
            ""
        } else {
            "advert_interval = \"100ms\""
        };
        format!(
            r#"[node]
name = "{node}"
threads = 1
drain_timeout = "1s"

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 51
priority = {priority}
{interval}
vips = ["{vip}/24"]
garp_interval = "300ms"
{extra_vrrp}
"#,
            vip = self.vip
        )
    }

    /// The `[[vrrp]]` table of LB node `i` in cloud mode (the role drives `/healthz`, no
    /// VIP): vrid 51 at `priority`, adverts every 100 ms, unicast to the other node.
    pub fn cloud_instance(&self, i: usize, priority: u8) -> String {
        format!(
            r#"[[vrrp]]
name = "front"
mode = "cloud"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "100ms"
peers = ["{peer}"]
"#,
            peer = self.lb_ip(1 - i)
        )
    }

    /// Starts LB node `i` on [`Rack::config`] at `priority`, with `extra` VRRP keys.
    pub fn start(&self, i: usize, priority: u8, extra: &str) -> Node {
        self.start_config(i, &self.config(&self.name(i), priority, extra))
    }

    /// Starts LB node `i` on `config`, in its namespace.
    pub fn start_config(&self, i: usize, config: &str) -> Node {
        Node::start_in_netns(&self.lbs[i], config)
    }

    /// Starts lb1 at priority 150 and lb2 at 100 (`extra` VRRP keys for each), and waits until
    /// lb1 is master and serves.
    ///
    /// lb1 becomes master before lb2 starts. Started together, lb2 could start the faster of
    /// the two by more than the skew between their priorities (~20 ms) and take the role first,
    /// which with `preempt = false` it then keeps. lb1's log says when it is master, not the
    /// VIP: a node killed by an earlier phase may have left the VIP on lb1's link.
    pub fn start_pair(&self, extra: [&str; 2]) -> [Node; 2] {
        let lb1 = self.start(0, 150, extra[0]);
        lb1.wait_log("BACKUP -> MASTER", 1);
        let lb2 = self.start(1, 100, extra[1]);
        self.wait_master(0, &[&lb1, &lb2]);
        [lb1, lb2]
    }

    /// Starts keepalived as LB node `i`: VRRP `version`, `priority`, adverts every
    /// `advert_int` (keepalived's spelling), for the rack's VIP (see [`keepalived::config`]).
    pub fn start_keepalived(
        &self,
        i: usize,
        version: u8,
        priority: u8,
        advert_int: &str,
    ) -> Keepalived {
        let vip = self.vip.to_string();
        let config = keepalived::config(&self.name(i), version, priority, advert_int, &vip);
        Keepalived::start_in_netns(&self.lbs[i], &config)
    }

    /// Which backend a new client connection to VIP:80 reaches, if any.
    pub fn served_by(&self) -> Option<String> {
        self.served_by_at(SocketAddr::from((self.vip, PORT)))
    }

    /// Which backend a new client connection to `target` (IPv4 or IPv6) reaches, if any.
    pub fn served_by_at(&self, target: SocketAddr) -> Option<String> {
        in_netns(&self.client, move || {
            which_backend_within(target, Duration::from_millis(500)).ok()
        })
    }

    /// Whether the VIP is on LB node `i` and not on the other.
    pub fn vip_only_on(&self, i: usize) -> bool {
        has_addr(&self.lbs[i], self.vip) && !has_addr(&self.lbs[1 - i], self.vip)
    }

    /// Waits until the VIP is on node `i` only, and clients reach that node's backend.
    pub fn wait_master(&self, i: usize, logs: &[&Node]) {
        let name = self.name(i);
        let context = || logs_of(logs);
        wait_until(&format!("VIP on {name} only\n{}", context()), || {
            self.vip_only_on(i)
        });
        wait_until(&format!("clients served by {name}\n{}", context()), || {
            self.served_by().as_deref() == Some(name.as_str())
        });
    }
}
