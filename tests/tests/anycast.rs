//! Active-active behind ECMP (issue 17), end to end: three Tandem nodes, each with a BIRD
//! beside it exporting what Tandem announces, and a router namespace whose BIRD installs one
//! multipath route over every node announcing; a client behind the router.
//!
//! Everything runs in namespaces on one bridge the test builds (router `.254`, nodes `.1`-`.3`,
//! client `.10`); the service address 192.0.2.100 (TEST-NET-1) exists only there. BGP, BFD
//! and the client's traffic never leave the bridge.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::bird::{self, Bird};
use common::netns::{self, Lan, admin_in, in_netns, ip};
use common::*;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const ROUTER: u8 = 254;
const CLIENT: u8 = 10;

/// The rack: a router, three nodes, a client, and what runs in them. Fields drop in order:
/// the processes before the LAN.
struct Rack {
    tandems: Vec<Option<Node>>,
    birds: Vec<Bird>,
    backends: Vec<Backend>,
    router_bird: Bird,
    lan: Lan,
    router: String,
    nodes: Vec<String>,
    client: String,
}

fn sysctl(ns: &str, settings: &[&str]) {
    for s in settings {
        let out = netns::exec(ns, "sysctl").args(["-qw", s]).output().unwrap();
        assert!(out.status.success(), "sysctl {s} in {ns}: {out:?}");
    }
}

fn node_bird(lan: &Lan, i: u8) -> String {
    let me = lan.addr(i);
    let router = lan.addr(ROUTER);
    format!(
        r#"router id {me};
log stderr all;
protocol device {{ scan time 1; }}
protocol direct {{ ipv4; interface "lo"; }}
protocol bfd {{
  interface "eth0" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};
}}
filter service_addresses {{ if net = {VIP}/32 then accept; reject; }}
protocol bgp uplink {{
  local {me} as 65001;
  neighbor {router} as 65000;
  bfd on;
  hold time 3; keepalive time 1; connect delay time 1; connect retry time 2; error wait time 1, 2;
  ipv4 {{ import none; export filter service_addresses; }};
}}
"#
    )
}

fn router_bird(lan: &Lan) -> String {
    let me = lan.addr(ROUTER);
    let mut config = format!(
        r#"router id {me};
log stderr all;
protocol device {{ scan time 1; }}
protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}
protocol bfd {{
  interface "eth0" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};
}}
template bgp node {{
  local {me} as 65000;
  bfd on;
  hold time 3; keepalive time 1; connect delay time 1; connect retry time 2; error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"#
    );
    for i in 1..=3 {
        config.push_str(&format!(
            "protocol bgp n{i} from node {{ neighbor {} as 65001; }}\n",
            lan.addr(i)
        ));
    }
    config
}

fn tandem_config(i: u8) -> String {
    format!(
        r#"[node]
name = "n{i}"
threads = 1
drain_timeout = "2s"
admin = "127.0.0.1:9090"
admin_token = "{ADMIN_TOKEN}"

[[service]]
name = "web"
listen = "{VIP}:80"
pool = "web"
balance = "maglev"
connect_timeout = "500ms"

[[pool]]
name = "web"
backends = [{{ addr = "127.0.0.1:9000" }}]
health = {{ kind = "tcp", interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }}

[[anycast]]
name = "front"
vips = ["{VIP}"]
track = [{{ pool = "web" }}]
withdraw_grace = "300ms"
"#
    )
}

impl Rack {
    fn new(test: &str) -> Option<Self> {
        if !bird::available(test) {
            return None;
        }
        let mut lan = Lan::new(test)?;
        let router = lan.host("r", ROUTER);
        let nodes: Vec<String> = (1..=3).map(|i| lan.host(&format!("n{i}"), i)).collect();
        let client = lan.host("c", CLIENT);
        sysctl(
            &router,
            &[
                "net.ipv4.ip_forward=1",
                // Client and nodes share the router's one link: no redirects to bypass it.
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.eth0.send_redirects=0",
                // Spread by ports too, so one client's connections use every node.
                "net.ipv4.fib_multipath_hash_policy=1",
            ],
        );
        let via = lan.addr(ROUTER).to_string();
        ip(&[
            "-n",
            &client,
            "route",
            "add",
            &format!("{VIP}/32"),
            "via",
            &via,
        ]);
        let router_bird = Bird::start_in_netns(&router, &router_bird(&lan));
        let mut backends = Vec::new();
        let mut birds = Vec::new();
        let mut tandems = Vec::new();
        for (i, ns) in nodes.iter().enumerate() {
            let i = i as u8 + 1;
            let listener = in_netns(ns, || TcpListener::bind("127.0.0.1:9000").expect("bind"));
            backends.push(Backend::from_listener(&format!("n{i}"), listener));
            birds.push(Bird::start_in_netns(ns, &node_bird(&lan, i)));
            tandems.push(Some(Node::start_in_netns(ns, &tandem_config(i))));
        }
        Some(Self {
            tandems,
            birds,
            backends,
            router_bird,
            lan,
            router,
            nodes,
            client,
        })
    }

    fn logs(&self) -> String {
        let mut text = format!(
            "router route: {}\nrouter bird:\n{}\n",
            self.route(),
            self.router_bird.log_text()
        );
        for (i, t) in self.tandems.iter().enumerate() {
            if let Some(t) = t {
                text.push_str(&format!("--- n{} tandem\n{}\n", i + 1, t.log_text()));
            }
            text.push_str(&format!(
                "--- n{} bird\n{}\n",
                i + 1,
                self.birds[i].log_text()
            ));
        }
        text
    }

    /// The router's kernel route to the service address.
    fn route(&self) -> String {
        ip(&["-n", &self.router, "route", "show", &format!("{VIP}/32")])
    }

    /// The nodes the router's route goes through, by number.
    fn next_hops(&self) -> Vec<u8> {
        let route = self.route();
        (1..=3)
            .filter(|&i| route.contains(&format!("via {} ", self.lan.addr(i))))
            .collect()
    }

    fn wait_next_hops(&self, want: &[u8]) {
        let start = Instant::now();
        while self.next_hops() != want {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the router never routed over {want:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Which node served each of `n` new client connections (from as many source ports).
    fn spread(&self, n: usize) -> BTreeMap<String, usize> {
        let target = SocketAddr::from((VIP, 80));
        in_netns(&self.client, move || {
            let mut served = BTreeMap::new();
            for _ in 0..n {
                let name = which_backend_within(target, Duration::from_millis(500))
                    .unwrap_or_else(|e| format!("failed: {e}"));
                *served.entry(name).or_default() += 1;
            }
            served
        })
    }

    /// An admin request to node `i` (1-based), on its loopback, with the token.
    fn admin(&self, i: usize, method: &str, path: &str) -> (u16, String) {
        admin_in(&self.nodes[i - 1], method, path).expect("the admin API answers")
    }

    fn announcement(&self, i: usize) -> serde_json::Value {
        let (_, body) = self.admin(i, "GET", "/status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["anycast"][0].clone()
    }
}

#[test]
fn nodes_announced_by_bgp_share_the_traffic_and_withdraw_when_drained_unhealthy_or_dead() {
    let Some(mut rack) = Rack::new("anycast ECMP") else {
        return;
    };
    rack.wait_next_hops(&[1, 2, 3]);
    let served = rack.spread(60);
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        ["n1", "n2", "n3"],
        "60 connections over three next hops reach every node: {served:?}\n{}",
        rack.logs()
    );
    assert_eq!(rack.announcement(1)["announced"], true);

    // A reload that leaves the announcement as it was does not touch it.
    let node1 = rack.tandems[0].as_ref().unwrap();
    node1.reload(&tandem_config(1).replace("drain_timeout = \"2s\"", "drain_timeout = \"3s\""));
    node1.wait_log("configuration reloaded", 1);
    assert_eq!(rack.next_hops(), [1, 2, 3]);
    assert_eq!(rack.announcement(1)["withdrawals"], 0, "no flap on reload");

    // Drained: withdrawn, and new connections go elsewhere; enabled: back.
    let out = netns::exec(&rack.nodes[2], tandem_bin())
        .args([
            "drain",
            "node",
            "--admin",
            "127.0.0.1:9090",
            "--token",
            ADMIN_TOKEN,
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("withdrawn: 1"),
        "{said}"
    );
    rack.wait_next_hops(&[1, 2]);
    let served = rack.spread(30);
    assert!(!served.contains_key("n3"), "{served:?}");
    assert_eq!(rack.announcement(3)["announced"], false);
    let (code, body) = rack.admin(3, "POST", "/node/enable");
    assert_eq!(code, 200, "{body}");
    rack.wait_next_hops(&[1, 2, 3]);

    // A node whose pool has no usable backend withdraws.
    rack.backends[1].stop();
    rack.wait_next_hops(&[1, 3]);
    let why = rack.announcement(2)["why"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("usable backend"), "{why}");
    let served = rack.spread(30);
    assert!(
        !served.contains_key("n2") && served.keys().all(|k| k.starts_with('n')),
        "{served:?}"
    );
    let listener = in_netns(&rack.nodes[1], || {
        TcpListener::bind("127.0.0.1:9000").expect("bind")
    });
    rack.backends[1] = Backend::from_listener("n2", listener);
    rack.wait_next_hops(&[1, 2, 3]);

    // SIGTERM: withdrawn first, served through withdraw_grace, then drained and gone.
    let mut stopped = rack.tandems[1].take().unwrap();
    stopped.signal(rustix::process::Signal::TERM);
    rack.wait_next_hops(&[1, 3]);
    assert!(stopped.wait_exit().success());
    let log = stopped.log_text();
    let withdrawn = log
        .find("announcements withdrawn")
        .unwrap_or_else(|| panic!("{log}"));
    let draining = log
        .find("no longer accepting")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(withdrawn < draining, "withdraw, then drain:\n{log}");

    // A node that dies outright (its Tandem killed, its link gone): BFD tells the router
    // within ~300 ms, and new connections succeed through the node left.
    let dead = rack.tandems[0].take().unwrap();
    dead.signal(rustix::process::Signal::KILL);
    let died = Instant::now();
    rack.lan.set_host_link(&rack.nodes[0], false);
    let target = SocketAddr::from((VIP, 80));
    let client = rack.client.clone();
    let recovered = in_netns(&client, move || {
        let mut streak = 0;
        while died.elapsed() < Duration::from_secs(10) {
            match which_backend_within(target, Duration::from_millis(200)) {
                Ok(name) if name == "n3" => streak += 1,
                _ => streak = 0,
            }
            if streak == 5 {
                return Some(died.elapsed());
            }
        }
        None
    });
    let recovered =
        recovered.unwrap_or_else(|| panic!("never served by n3 alone\n{}", rack.logs()));
    rack.wait_next_hops(&[3]);
    eprintln!("node death to five connections in a row served by the survivor: {recovered:?}");
    assert!(
        recovered < Duration::from_secs(3),
        "{recovered:?}: slower than BFD (300 ms) and BGP can explain\n{}",
        rack.logs()
    );
}

/// A node joining behind a router with resilient hashing takes new flows within seconds, and
/// no connection open through the other nodes breaks: they keep their buckets while they carry
/// traffic, and only buckets idle for the group's `idle_timer` move to the newcomer. (Plain
/// ECMP re-spreads about a third of all flows when a third next hop comes, breaking them.)
#[test]
fn a_node_joining_behind_resilient_hashing_takes_new_flows_and_breaks_no_open_connection() {
    const OPEN: usize = 100;
    let Some(rack) = Rack::new("anycast join") else {
        return;
    };
    rack.wait_next_hops(&[1, 2, 3]);
    let (code, body) = rack.admin(3, "POST", "/node/drain");
    assert_eq!(code, 200, "{body}");
    rack.wait_next_hops(&[1, 2]);
    let _glue = StopOnDrop(resilient_router(&rack, &[1, 2], Some(1)));
    let target = SocketAddr::from((VIP, 80));
    let open: Vec<(String, Client)> = in_netns(&rack.client, move || {
        (0..OPEN)
            .map(|_| {
                let mut c = Client::connect(target).expect("connect");
                (c.backend_name().expect("served"), c)
            })
            .collect()
    });
    assert!(
        open.iter().all(|(name, _)| name == "n1" || name == "n2"),
        "n3 is withdrawn: {:?}",
        open.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );

    let (code, body) = rack.admin(3, "POST", "/node/enable");
    assert_eq!(code, 200, "{body}");
    rack.wait_next_hops(&[1, 2, 3]);
    // The open connections keep talking (a round trip each, every cycle) while new ones are
    // made, until five new ones have reached n3 (bounded: 20 s).
    let (new, broken, cycles) = in_netns(&rack.client, move || {
        let mut open = open;
        let (mut new, mut broken, mut cycles) = (BTreeMap::<String, usize>::new(), Vec::new(), 0);
        let start = Instant::now();
        while new.get("n3").copied().unwrap_or(0) < 5 && start.elapsed() < Duration::from_secs(20) {
            cycles += 1;
            open.retain_mut(|(name, c)| {
                let ok = c.round_trip(b"ping").ok().as_deref() == Some(b"ping".as_slice());
                if !ok {
                    broken.push(name.clone());
                }
                ok
            });
            let name = which_backend_within(target, Duration::from_millis(500))
                .unwrap_or_else(|e| format!("failed: {e}"));
            *new.entry(name).or_default() += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        (new, broken, cycles)
    });
    eprintln!("after the join, {cycles} cycles: new connections {new:?}, broken {broken:?}");
    assert!(
        new.get("n3").copied().unwrap_or(0) >= 5,
        "the joining node took no new flows in 20 s: {new:?}\n{}",
        rack.logs()
    );
    assert!(
        broken.is_empty(),
        "open connections broken by the join: {broken:?}\n{}",
        rack.logs()
    );
    assert!(
        new.keys().all(|k| k.starts_with('n')),
        "a new connection failed: {new:?}"
    );
}

/// What a change to one node costs: until when new connections still fail or reach it, and
/// how many of the connections open before it break (a round trip fails), on that node and
/// on the others.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Its Tandem killed and its link down.
    Death,
    /// `POST /node/drain`.
    Drain,
    /// Its pool's only backend stops.
    PoolFailure,
}

/// Makes the router forward the service address through a resilient next-hop group that
/// follows the next hops BIRD installs (polled every 20 ms): what a router with resilient
/// ECMP hashing does, which BIRD 2.0 cannot program itself. The group starts over `members`;
/// with `idle_timer` (seconds), buckets unused that long move to a next hop short of its
/// share (a joining one); without, only a leaving next hop's buckets move. Returns the
/// thread's stop flag.
fn resilient_router(
    rack: &Rack,
    members: &[u8],
    idle_timer: Option<u32>,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let r = rack.router.clone();
    for i in 1..=3u8 {
        let via = rack.lan.addr(i).to_string();
        ip(&[
            "-n",
            &r,
            "nexthop",
            "add",
            "id",
            &i.to_string(),
            "via",
            &via,
            "dev",
            "eth0",
        ]);
    }
    let group = |members: &[u8]| {
        members
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("/")
    };
    let timers: Vec<String> = idle_timer
        .map(|t| vec!["idle_timer".to_owned(), t.to_string()])
        .unwrap_or_default();
    let set_group = move |r: &str, verb: &str, members: &[u8]| {
        let members = group(members);
        let mut args = vec![
            "-n",
            r,
            "nexthop",
            verb,
            "id",
            "100",
            "group",
            &members,
            "type",
            "resilient",
            "buckets",
            "128",
        ];
        args.extend(timers.iter().map(String::as_str));
        ip(&args);
    };
    set_group(&r, "add", members);
    let vip = format!("{VIP}/32");
    // Below BIRD's route (metric 32): this one wins.
    ip(&[
        "-n", &r, "route", "add", &vip, "nhid", "100", "metric", "10",
    ]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stop.clone();
    let members = members.to_vec();
    let addrs: Vec<String> = (1..=3).map(|i| rack.lan.addr(i).to_string()).collect();
    std::thread::spawn(move || {
        let mut current = members;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let bird = ip(&["-n", &r, "route", "show", &vip, "proto", "bird"]);
            let now: Vec<u8> = (1..=3u8)
                .filter(|&i| bird.contains(&format!("via {} ", addrs[usize::from(i) - 1])))
                .collect();
            if !now.is_empty() && now != current {
                set_group(&r, "replace", &now);
                current = now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    stop
}

/// The benchmark of BENCHMARKS.md's active-active section: 300 connections open over three
/// nodes behind the router, one node changes, and the connections are counted; with the
/// plain ECMP route BIRD installs, then with a resilient next-hop group.
#[test]
#[ignore = "a benchmark (about 30 s): cargo test --release -p tandem-tests --test anycast -- --ignored --nocapture"]
fn bench_what_a_node_change_costs_new_and_open_connections() {
    const OPEN: usize = 300;
    for resilient in [false, true] {
        for change in [Change::Death, Change::Drain, Change::PoolFailure] {
            let Some(mut rack) = Rack::new("anycast bench") else {
                return;
            };
            rack.wait_next_hops(&[1, 2, 3]);
            let _glue = resilient.then(|| StopOnDrop(resilient_router(&rack, &[1, 2, 3], None)));
            let target = SocketAddr::from((VIP, 80));
            let client = rack.client.clone();
            let open: Vec<(String, Client)> = in_netns(&client, move || {
                (0..OPEN)
                    .map(|_| {
                        let mut c = Client::connect(target).expect("connect");
                        let name = c.backend_name().expect("served");
                        c.stream
                            .set_read_timeout(Some(Duration::from_millis(500)))
                            .unwrap();
                        (name, c)
                    })
                    .collect()
            });
            let at = Instant::now();
            match change {
                Change::Death => {
                    rack.tandems[0]
                        .take()
                        .unwrap()
                        .signal(rustix::process::Signal::KILL);
                    rack.lan.set_host_link(&rack.nodes[0], false);
                }
                Change::Drain => {
                    let (code, body) = rack.admin(1, "POST", "/node/drain");
                    assert_eq!(code, 200, "{body}");
                }
                Change::PoolFailure => rack.backends[0].stop(),
            }
            // For 2 s: when the last new connection that failed or still reached n1 was made.
            let (recovered, failed_new) = in_netns(&client, move || {
                let (mut last_bad, mut failed) = (Duration::ZERO, 0);
                while at.elapsed() < Duration::from_secs(2) {
                    match which_backend_within(target, Duration::from_millis(200)) {
                        Ok(name) if name != "n1" => {}
                        Ok(_) => last_bad = at.elapsed(),
                        Err(_) => {
                            last_bad = at.elapsed();
                            failed += 1;
                        }
                    }
                }
                (last_bad, failed)
            });
            rack.wait_next_hops(&[2, 3]);
            let (mut broken, mut total) = (
                BTreeMap::<String, usize>::new(),
                BTreeMap::<String, usize>::new(),
            );
            for (name, mut c) in open {
                *total.entry(name.clone()).or_default() += 1;
                if c.round_trip(b"ping").ok().as_deref() != Some(b"ping".as_slice()) {
                    *broken.entry(name).or_default() += 1;
                }
            }
            let on =
                |map: &BTreeMap<String, usize>, node: &str| map.get(node).copied().unwrap_or(0);
            let others = |map: &BTreeMap<String, usize>| on(map, "n2") + on(map, "n3");
            let hashing = if resilient { "resilient" } else { "plain ECMP" };
            println!(
                "{hashing}, {change:?}: last new connection failed or sent to n1 at {recovered:?} ({failed_new} failed); \
             open connections broken: {} of {} on the changed node, {} of {} on the others",
                on(&broken, "n1"),
                on(&total, "n1"),
                others(&broken),
                others(&total)
            );
        }
    }
}

/// Stops the resilient router's thread when dropped.
struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
