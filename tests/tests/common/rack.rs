//! A rack for VRRP tests: two LB namespaces (`.1` lb1, `.2` lb2) and a client (`.10`) on one
//! bridge built by the test, and a VIP (`.100`).
//!
//! Each LB namespace gets a backend of its own, named after the node, so a client connection
//! to VIP:80 says which node holds the VIP.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use super::netns::{Lan, has_addr, in_netns};
use super::{Backend, Client, Node, wait_until};

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

    /// A backend named `name` on 127.0.0.1:9000 inside `ns`.
    pub fn backend(&self, ns: &str, name: &str) -> Backend {
        let listener = in_netns(ns, || TcpListener::bind("127.0.0.1:9000").expect("bind"));
        Backend::from_listener(name, listener)
    }

    /// A node's config: one web service on VIP:80 over its local backend (checked every
    /// 100 ms), and one VRRP instance (vrid 51, adverts every 100 ms unless `extra_vrrp` sets
    /// `advert_interval`).
    pub fn config(&self, node: &str, priority: u8, extra_vrrp: &str) -> String {
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

[[service]]
name = "web"
listen = "{vip}:{PORT}"
pool = "web"
connect_timeout = "500ms"

[[pool]]
name = "web"
backends = [{{ addr = "127.0.0.1:9000" }}]
health = {{ kind = "tcp", interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }}

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

    pub fn start(&self, i: usize, priority: u8, extra: &str) -> Node {
        let name = format!("lb{}", i + 1);
        Node::start_in_netns(&self.lbs[i], &self.config(&name, priority, extra))
    }

    /// Which backend a new client connection to VIP:80 reaches, if any.
    pub fn served_by(&self) -> Option<String> {
        self.served_by_at(SocketAddr::from((self.vip, PORT)))
    }

    /// Which backend a new client connection to `target` (IPv4 or IPv6) reaches, if any.
    pub fn served_by_at(&self, target: SocketAddr) -> Option<String> {
        in_netns(&self.client, move || {
            let domain = socket2::Domain::for_address(target);
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).ok()?;
            socket
                .connect_timeout(&target.into(), Duration::from_millis(500))
                .ok()?;
            let stream: std::net::TcpStream = socket.into();
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .ok()?;
            Client { stream }.backend_name().ok()
        })
    }

    /// Waits until the VIP is on node `i` only, and clients reach that node's backend.
    pub fn wait_master(&self, i: usize, logs: &[&Node]) {
        let name = format!("lb{}", i + 1);
        let other = &self.lbs[1 - i];
        let context = || {
            logs.iter()
                .map(|n| n.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        };
        wait_until(&format!("VIP on {name} only\n{}", context()), || {
            has_addr(&self.lbs[i], self.vip) && !has_addr(other, self.vip)
        });
        wait_until(&format!("clients served by {name}\n{}", context()), || {
            self.served_by().as_deref() == Some(name.as_str())
        });
    }
}
