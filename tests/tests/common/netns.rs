//! Network namespaces built by a test: a bridge (the "switch") and hosts plugged into it.
//!
//! Everything a VRRP test sends — adverts, multicast, ARP — stays on this bridge: every
//! interface involved is created inside namespaces of the test's own, and the namespaces are
//! deleted (with their interfaces) when the [`Lan`] drops. Nothing is ever created in, or sent
//! from, the namespace the tests run in.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN). [`Lan::new`] returns `None` without them, after
//! printing why; with `TANDEM_REQUIRE_PRIVILEGED=1` (set by CI) it fails the test instead.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A bridge in a namespace of its own, and the hosts attached to it.
pub struct Lan {
    /// Prefix of every namespace of this LAN: unique per test process and LAN.
    prefix: String,
    switch: String,
    hosts: Vec<String>,
    /// Each host namespace and its port on the switch.
    ports: Vec<(String, String)>,
    /// The first three octets of the LAN's /24.
    pub subnet: [u8; 3],
}

/// Whether privileged tests can run here; prints why not, or panics under CI.
pub fn privileged(test: &str) -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "not running as root"
    } else if Command::new("ip").arg("-V").output().is_err() {
        "iproute2 (`ip`) is not installed"
    } else {
        return true;
    };
    super::skipped(&format!("{test}: needs network namespaces ({why})"))
}

/// A command that runs `program` inside namespace `ns` (`ip netns exec`, which execs it in
/// place: the child PID is the program's, for stopping it by PID). Arguments follow.
pub fn exec(ns: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, program]);
    command
}

/// Runs `ip` with `args`; panics with its output if it fails.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lan {
    /// A new bridge in a fresh namespace; `None` if privileged tests cannot run (see
    /// [`privileged`]).
    pub fn new(test: &str) -> Option<Self> {
        if !privileged(test) {
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("td{pid}x{n}");
        let switch = format!("{prefix}-sw");
        ip(&["netns", "add", &switch]);
        let lan = Self {
            prefix,
            switch: switch.clone(),
            hosts: Vec::new(),
            ports: Vec::new(),
            // 10.X.Y.0/24 from the pid and counter: distinct between parallel tests (each LAN is
            // isolated anyway; distinct subnets only make logs unambiguous).
            subnet: [10, 200 + (n % 50) as u8, (pid % 250) as u8],
        };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        ip(&["-n", &switch, "link", "set", "lo", "up"]);
        Some(lan)
    }

    /// The address `.host` in this LAN's subnet.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    /// The IPv6 address `::host` in this LAN's ULA prefix.
    pub fn addr6(&self, host: u16) -> std::net::Ipv6Addr {
        let [_, b, c] = self.subnet;
        std::net::Ipv6Addr::new(0xfd00, u16::from(b), u16::from(c), 0, 0, 0, 0, host)
    }

    /// A host namespace `name` with `eth0` on the bridge at `.host/24`, and `lo` up.
    /// Returns the namespace's name.
    pub fn host(&mut self, name: &str, host: u8) -> String {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        let port = format!("p{}", self.hosts.len());
        // Both ends are created from inside the switch namespace: nothing touches ours.
        ip(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        self.ports.push((ns.clone(), port.clone()));
        let cidr = format!("{}/24", self.addr(host));
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
        // IPv6 too: a ULA of the LAN's own, and no duplicate address detection, so the
        // link-local address is usable at once (VRRPv3 over IPv6 sends from it).
        ip(&[
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.eth0.accept_dad=0",
        ]);
        let cidr6 = format!("{}/64", self.addr6(u16::from(host)));
        ip(&[
            "-n", &ns, "-6", "addr", "add", &cidr6, "dev", "eth0", "nodad",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Cuts a host off from everyone else while its own link stays up (its switch port moves
    /// to a bridge of its own), or plugs it back: a partition, not a pulled cable.
    pub fn isolate(&self, ns: &str, isolated: bool) {
        let port = &self
            .ports
            .iter()
            .find(|(n, _)| n == ns)
            .expect("a host of this LAN")
            .1;
        if isolated {
            let exists = ip(&["-n", &self.switch, "-o", "link", "show"]).contains(" br-iso:");
            if !exists {
                ip(&[
                    "-n",
                    &self.switch,
                    "link",
                    "add",
                    "br-iso",
                    "type",
                    "bridge",
                ]);
                ip(&["-n", &self.switch, "link", "set", "br-iso", "up"]);
            }
        }
        let bridge = if isolated { "br-iso" } else { "br0" };
        ip(&["-n", &self.switch, "link", "set", port, "master", bridge]);
    }

    /// Takes a host's link down or up (its bridge port), as a pulled cable would.
    pub fn set_host_link(&self, ns: &str, up: bool) {
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces; veth peers go with them.
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`: sockets it creates belong to
/// that namespace and keep belonging to it when handed back to other threads.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap_or_else(|e| panic!("enter {path}: {e}"));
        f()
    })
    .join()
    .expect("thread in namespace")
}

/// The MAC address of `eth0` in `ns`, as `ip` prints it (`aa:bb:...`).
pub fn mac_of(ns: &str) -> String {
    let out = ip(&["-n", ns, "-o", "link", "show", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Whether IPv6 `addr` is on `eth0` in `ns`.
pub fn has_addr6(ns: &str, addr: std::net::Ipv6Addr) -> bool {
    let out = ip(&["-n", ns, "-o", "-6", "addr", "show", "dev", "eth0"]);
    out.split_whitespace()
        .any(|w| w.split('/').next() == Some(&addr.to_string()))
}

/// Whether `addr` is on `eth0` in `ns`.
pub fn has_addr(ns: &str, addr: Ipv4Addr) -> bool {
    let out = ip(&["-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"]);
    out.split_whitespace()
        .any(|w| w.split('/').next() == Some(&addr.to_string()))
}

/// The MAC `ns` has cached for `addr`, if any (its neighbour table).
pub fn neighbour_mac(ns: &str, addr: Ipv4Addr) -> Option<String> {
    let out = ip(&["-n", ns, "neigh", "show", &addr.to_string(), "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_owned)
}

/// `METHOD path` against the admin API of the node in `ns`, at its default address on its own
/// loopback (127.0.0.1:9090), with the test token: (status, body); `None` if it did not answer.
pub fn admin_in(ns: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {}",
        super::ADMIN_TOKEN
    );
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], 9090));
    in_netns(ns, move || super::http_raw(admin, &head, b""))
}

/// Field `key` of the first VRRP instance in the `/status` of the node in `ns` (see
/// [`admin_in`]); `null` while it does not answer.
pub fn first_instance_status(ns: &str, key: &str) -> serde_json::Value {
    let body = admin_in(ns, "GET", "/status").map(|(_, body)| body);
    let status: serde_json::Value =
        serde_json::from_str(&body.unwrap_or_default()).unwrap_or_default();
    status["vrrp"][0][key].clone()
}
