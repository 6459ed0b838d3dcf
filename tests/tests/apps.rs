//! Application high availability (issue 15), end to end: two Tandem nodes with only `[[vrrp]]`
//! and `[[app]]` tables, each in its own network namespace on a bridge the test builds, keep a
//! real application (`tandem-test-app`) alive: on the master only (mirror), or on both (farm).
//!
//! Each node's copy of the app listens on 0.0.0.0:80 in the node's namespace and says the
//! node's name to every client, so a client connection to VIP:80 says which node's app served
//! it. Its pidfile and its "refuse" file (present: the app exits at once, as an app that cannot
//! stay up) are in a directory of the node's own. All traffic stays on the test's bridge (see
//! `common::netns`); the apps the nodes leave behind are stopped by PID (see [`AppDirs`]).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::netns::{self, admin_in, has_addr, in_netns};
use common::rack::Rack;
use common::*;
use serde_json::Value;

const TOKEN_LINE: &str = "admin_token = \"test-token-0123456789\"";

fn test_app() -> &'static str {
    env!("CARGO_BIN_EXE_tandem-test-app")
}

/// A directory per node for its app's pidfile and refuse file. When dropped (after the nodes:
/// declare it before them), it stops by PID every app process still running from it (a node
/// killed by its handle takes its app down, but a test that fails midway must leave nothing
/// behind either), then deletes the directories.
struct AppDirs {
    dirs: [TempDir; 2],
    /// Each node's app pidfile: `app.pid` in its directory unless a test names it otherwise.
    pidfiles: [PathBuf; 2],
}

impl AppDirs {
    fn new() -> Self {
        let dirs = [TempDir::create(), TempDir::create()];
        let pidfiles = [0, 1].map(|i| dirs[i].path().join("app.pid"));
        Self { dirs, pidfiles }
    }

    fn dir(&self, i: usize) -> &Path {
        self.dirs[i].path()
    }

    /// Node `i`'s app pidfile.
    fn pidfile(&self, i: usize) -> &Path {
        &self.pidfiles[i]
    }

    /// The file whose presence makes node `i`'s app exit at once.
    fn refuse_file(&self, i: usize) -> PathBuf {
        self.dir(i).join("refuse")
    }

    /// The pid of node `i`'s app if one is running (its pidfile names a live process).
    fn running_pid(&self, i: usize) -> Option<i32> {
        let pid = std::fs::read_to_string(self.pidfile(i)).ok()?;
        let pid: i32 = pid.trim().parse().ok()?;
        self.is_app_of(i, pid).then_some(pid)
    }

    /// Whether `pid` is a live copy of node `i`'s app.
    fn is_app_of(&self, i: usize, pid: i32) -> bool {
        is_app(pid, &self.dir(i).to_string_lossy())
    }

    /// Every live app process started with one of these directories in its arguments.
    fn live_apps(&self) -> Vec<i32> {
        let dirs: Vec<String> = (0..2)
            .map(|i| self.dir(i).to_string_lossy().into_owned())
            .collect();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| dirs.iter().any(|d| is_app(pid, d)))
            .collect()
    }
}

impl Drop for AppDirs {
    fn drop(&mut self) {
        for pid in self.live_apps() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Whether `pid` is a live (not zombie) `tandem-test-app` with `dir/` in its arguments.
fn is_app(pid: i32, dir: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('Z'));
    !zombie && cmdline.contains("tandem-test-app") && cmdline.contains(&format!("{dir}/"))
}

fn kill9(pid: i32) {
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill the app");
}

/// Node `i`'s app command: tandem-test-app on 0.0.0.0:80 named after the node (`lb1`, `lb2`),
/// with its pidfile and refuse file in its directory.
fn start_argv(dirs: &AppDirs, i: usize) -> Vec<String> {
    vec![
        test_app().to_owned(),
        "--listen".to_owned(),
        "0.0.0.0:80".to_owned(),
        "--name".to_owned(),
        format!("lb{}", i + 1),
        "--pidfile".to_owned(),
        dirs.pidfile(i).to_string_lossy().into_owned(),
        "--refuse-if".to_owned(),
        dirs.refuse_file(i).to_string_lossy().into_owned(),
    ]
}

/// An `[[app]]` table "web" running `argv`: `placement` says where (`run_on`, `instance`),
/// `extra` adds keys. Checked by TCP on port 80 every 200 ms; two restarts at most.
fn app_table(argv: &[String], placement: &str, extra: &str) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"
[[app]]
name = "web"
start = [{argv}]
{placement}
checks = [{{ kind = "tcp", port = 80, interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }}]
restart = {{ max = 2, within = "60s", backoff = "100ms" }}
start_timeout = "3s"
stop_timeout = "2s"
{extra}
"#,
        argv = argv.join(", ")
    )
}

const MIRROR: &str = "run_on = \"primary\"\ninstance = \"front\"";
const FARM: &str = "run_on = \"all\"";

/// Node `i`'s config: the rack's VRRP-only config ("front", VIP, 100 ms adverts) at
/// `priority`, an admin token, and `app`.
fn node_config(rack: &Rack, i: usize, priority: u8, app: &str) -> String {
    let vrrp = rack.vrrp_only_config(&rack.name(i), priority, "");
    let vrrp = vrrp.replacen(
        "drain_timeout = \"1s\"\n",
        &format!("drain_timeout = \"1s\"\n{TOKEN_LINE}\n"),
        1,
    );
    format!("{vrrp}{app}")
}

/// Starts lb1 (priority 150) and, once it is master, lb2 (100), each on its config from
/// `app_of(i)`; waits until the VIP is on lb1 only and a client on it is served by lb1's app.
fn start_pair(rack: &Rack, app_of: impl Fn(usize) -> String) -> [Node; 2] {
    let lb1 = rack.start_config(0, &node_config(rack, 0, 150, &app_of(0)));
    lb1.wait_log("BACKUP -> MASTER", 1);
    let lb2 = rack.start_config(1, &node_config(rack, 1, 100, &app_of(1)));
    lb2.wait_log("INIT -> BACKUP", 1);
    rack.wait_master(0, &[&lb1, &lb2]);
    [lb1, lb2]
}

fn healthz(ns: &str) -> Option<(u16, String)> {
    admin_in(ns, "GET", "/healthz").map(|(code, body)| (code, body.trim().to_owned()))
}

/// The node's `/status` document.
fn status(ns: &str) -> Value {
    let (code, body) = admin_in(ns, "GET", "/status").expect("the admin API answers");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// App "web" in the node's `/status`.
fn web_status(ns: &str) -> Value {
    let status = status(ns);
    let apps = status["apps"]
        .as_array()
        .unwrap_or_else(|| panic!("no `apps` array in /status: {status}"));
    apps.iter()
        .find(|a| a["name"] == "web")
        .unwrap_or_else(|| panic!("no app \"web\" in /status: {status}"))
        .clone()
}

/// The state of app "web" in the node's `/status` (`running`, `failed`...).
fn web_state(ns: &str) -> String {
    web_status(ns)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The state of VRRP instance "front" in the node's `/status`.
fn front_state(ns: &str) -> String {
    status(ns)["vrrp"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Runs `tandem ARGS -c FILE` inside `ns` (the node's admin address and token come from its
/// config FILE); fails the test if it does not succeed. Returns its stdout.
fn cli(ns: &str, args: &[&str], node: &Node) -> String {
    let out = netns::exec(ns, tandem_bin())
        .args(args)
        .arg("-c")
        .arg(&node.config)
        .output()
        .expect("run tandem");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tandem {}: {stdout}{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        node.log_text()
    );
    stdout
}

/// Like `wait_until`, failing with the nodes' logs as they are when it gives up.
fn wait_for(what: &str, nodes: &[&Node], mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > PATIENCE {
            panic!("gave up waiting for: {what}\n{}", logs_of(nodes));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until node `i`'s app runs, its pidfile naming a live process other than `old`, and
/// `/status` says `running` with that pid; returns the pid.
fn wait_app_running(
    rack: &Rack,
    dirs: &AppDirs,
    i: usize,
    old: Option<i32>,
    nodes: &[&Node],
) -> i32 {
    let mut pid = None;
    wait_for(
        &format!("lb{}'s app running (not pid {old:?})", i + 1),
        nodes,
        || {
            pid = dirs.running_pid(i).filter(|&p| Some(p) != old);
            pid.is_some_and(|p| {
                let web = web_status(&rack.lbs[i]);
                web["state"] == "running" && web["pid"] == p
            })
        },
    );
    pid.unwrap()
}

/// Waits until node `i` runs no copy of the app and `/status` says `state` with no pid.
fn wait_app_not_running(rack: &Rack, dirs: &AppDirs, i: usize, state: &str, nodes: &[&Node]) {
    wait_for(
        &format!("lb{}'s app {state}, not running", i + 1),
        nodes,
        || {
            let web = web_status(&rack.lbs[i]);
            dirs.running_pid(i).is_none() && web["state"] == state && web["pid"].is_null()
        },
    );
}

/// The value of variable `name` in the environment of process `pid`.
fn env_of(pid: i32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let prefix = format!("{name}=");
    environ
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .find_map(|v| v.strip_prefix(&prefix).map(str::to_owned))
}

/// `TANDEM_APP`, `TANDEM_ROLE` and `TANDEM_INSTANCE` as the app `pid` was started with.
fn app_env(pid: i32) -> [Option<String>; 3] {
    ["TANDEM_APP", "TANDEM_ROLE", "TANDEM_INSTANCE"].map(|name| env_of(pid, name))
}

/// Mirror mode, and what an operator does with a running app: it runs on the master only; a
/// `kill -9` brings it back there (the VIP stays); `restart` gives a new process; `disable`
/// stops it for good, `enable` starts it again.
#[test]
fn mirror_mode_runs_the_app_on_the_master_only_and_restarts_it_there() {
    let Some(rack) = Rack::new("apps mirror + restart") else {
        return;
    };
    let mut dirs = AppDirs::new();
    // lb1's pidfile is named by the start argv's placeholders: web-front-primary.pid.
    dirs.pidfiles[0] = dirs.dir(0).join("web-front-primary.pid");
    let argv = |i: usize| {
        let mut argv = start_argv(&dirs, i);
        if i == 0 {
            argv[6] = format!(
                "{}/{{app}}-{{instance}}-{{role}}.pid",
                dirs.dir(0).display()
            );
        }
        argv
    };
    let [lb1, lb2] = start_pair(&rack, |i| app_table(&argv(i), MIRROR, ""));
    let nodes = [&lb1, &lb2];

    // On the master only, with the variables that say what it runs as.
    let pid = wait_app_running(&rack, &dirs, 0, None, &nodes);
    let [app, role, instance] = app_env(pid);
    assert_eq!(
        (app.as_deref(), role.as_deref(), instance.as_deref()),
        (Some("web"), Some("primary"), Some("front"))
    );
    let web = web_status(&rack.lbs[0]);
    assert_eq!(web["run_on"], "primary", "{web}");
    assert_eq!(web["instance"], "front", "{web}");
    assert_eq!(web["disabled"], false, "{web}");
    assert!(web["seconds_in_state"].is_f64(), "{web}");
    wait_app_not_running(&rack, &dirs, 1, "stopped", &nodes);
    assert_eq!(dirs.live_apps(), [pid]);

    // kill -9: lb1 starts it again itself, and the VIP never leaves it.
    kill9(pid);
    let mut vip_moved = false;
    wait_for("a new app on lb1", &nodes, || {
        vip_moved |= !rack.vip_only_on(0);
        dirs.running_pid(0).is_some_and(|p| p != pid)
    });
    let pid = wait_app_running(&rack, &dirs, 0, Some(pid), &nodes);
    assert!(!vip_moved, "the VIP left lb1\n{}", logs_of(&nodes));
    assert!(rack.vip_only_on(0), "{}", logs_of(&nodes));
    assert!(!lb2.log_text().contains("-> MASTER"), "{}", lb2.log_text());
    assert_eq!(rack.served_by().as_deref(), Some("lb1"));
    let web = web_status(&rack.lbs[0]);
    assert!(web["restarts"].as_u64() >= Some(1), "{web}");
    assert!(web["restarts_total"].as_u64() >= Some(1), "{web}");
    assert!(dirs.running_pid(1).is_none());

    // `tandem restart app`: a new process.
    cli(&rack.lbs[0], &["restart", "app", "web"], &lb1);
    let pid = wait_app_running(&rack, &dirs, 0, Some(pid), &nodes);
    assert_eq!(rack.served_by().as_deref(), Some("lb1"));
    // An app the node does not have: 404.
    let (code, body) = admin_in(&rack.lbs[0], "POST", "/apps/nope/restart").unwrap();
    assert_eq!(code, 404, "{body}");

    // `tandem disable app`: stopped, and it stays stopped (several check intervals and
    // backoffs later, nothing started it again).
    cli(&rack.lbs[0], &["disable", "app", "web"], &lb1);
    wait_app_not_running(&rack, &dirs, 0, "stopped", &nodes);
    assert!(!dirs.is_app_of(0, pid));
    assert_eq!(web_status(&rack.lbs[0])["disabled"], true);
    std::thread::sleep(Duration::from_millis(1500));
    let web = web_status(&rack.lbs[0]);
    assert_eq!(web["state"], "stopped", "{web}\n{}", lb1.log_text());
    assert!(dirs.running_pid(0).is_none(), "{}", lb1.log_text());

    // `tandem enable app`: running again.
    cli(&rack.lbs[0], &["enable", "app", "web"], &lb1);
    wait_app_running(&rack, &dirs, 0, Some(pid), &nodes);
    assert_eq!(web_status(&rack.lbs[0])["disabled"], false);
    wait_for("clients served by lb1's app again", &nodes, || {
        rack.served_by().as_deref() == Some("lb1")
    });
}

/// An app that cannot stay up on the master moves the role: the VIP and the app go to the
/// peer, and clients follow. Once the cause is fixed and an operator enables the app again,
/// the higher-priority node takes both back (preempt).
#[test]
fn an_app_that_cannot_stay_up_moves_the_vip_to_the_peer_and_comes_back_when_enabled() {
    let Some(rack) = Rack::new("apps escalation + failback") else {
        return;
    };
    let dirs = AppDirs::new();
    let [lb1, lb2] = start_pair(&rack, |i| app_table(&start_argv(&dirs, i), MIRROR, ""));
    let nodes = [&lb1, &lb2];
    let pid = wait_app_running(&rack, &dirs, 0, None, &nodes);

    // It crashes, and every restart exits at once (two allowed): failed, and lb1 gives up the
    // role; lb2 starts its copy and serves the VIP.
    std::fs::write(dirs.refuse_file(0), "broken\n").unwrap();
    kill9(pid);
    rack.wait_master(1, &nodes);
    wait_app_running(&rack, &dirs, 1, None, &nodes);
    wait_app_not_running(&rack, &dirs, 0, "failed", &nodes);
    let web = web_status(&rack.lbs[0]);
    assert!(web["last_error"].is_string(), "{web}");
    assert_eq!(front_state(&rack.lbs[0]), "FAULT", "{}", lb1.log_text());
    assert_eq!(healthz(&rack.lbs[0]).map(|(c, _)| c), Some(503));

    // Failed stays failed: lb1 starts nothing and claims nothing by itself.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(web_state(&rack.lbs[0]), "failed", "{}", lb1.log_text());
    assert!(rack.vip_only_on(1), "{}", logs_of(&nodes));
    assert_eq!(rack.served_by().as_deref(), Some("lb2"));

    // The cause is fixed; `tandem enable app` clears the failure, lb1 is back at priority 150
    // and preempts: VIP and app come back to it, and lb2 stops its copy.
    std::fs::remove_file(dirs.refuse_file(0)).unwrap();
    cli(&rack.lbs[0], &["enable", "app", "web"], &lb1);
    rack.wait_master(0, &nodes);
    wait_app_running(&rack, &dirs, 0, Some(pid), &nodes);
    wait_app_not_running(&rack, &dirs, 1, "stopped", &nodes);
    assert_eq!(front_state(&rack.lbs[0]), "MASTER");
}

/// `tandem swap` hands the app over with the role: it stops on the old master and runs on the
/// new one, which serves the VIP.
#[test]
fn swap_moves_the_app_and_the_vip_to_the_peer() {
    let Some(rack) = Rack::new("apps swap") else {
        return;
    };
    let dirs = AppDirs::new();
    let [lb1, lb2] = start_pair(&rack, |i| app_table(&start_argv(&dirs, i), MIRROR, ""));
    let nodes = [&lb1, &lb2];
    let pid = wait_app_running(&rack, &dirs, 0, None, &nodes);

    let said = cli(&rack.lbs[0], &["swap"], &lb1);
    assert!(said.contains("handing 1 instance(s) over"), "{said}");
    rack.wait_master(1, &nodes);
    wait_app_running(&rack, &dirs, 1, None, &nodes);
    wait_app_not_running(&rack, &dirs, 0, "stopped", &nodes);
    assert!(!dirs.is_app_of(0, pid));
    // In that order: the app stopped before lb1 gave the role up (one copy at most runs).
    let log = lb1.log_text();
    let stopped = log.find("application stopped");
    let resigned = log.find("MASTER -> BACKUP");
    assert!(
        stopped.is_some() && resigned.is_some() && stopped < resigned,
        "{log}"
    );

    // lb1 does not take the role back by preemption after a swap.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(rack.vip_only_on(1), "{}", logs_of(&nodes));
    assert_eq!(rack.served_by().as_deref(), Some("lb2"));
    assert!(dirs.running_pid(0).is_none());
}

/// Farm mode: the app runs on both nodes, and a change of role touches neither copy.
#[test]
fn farm_mode_runs_the_app_on_both_nodes_whatever_the_role() {
    let Some(rack) = Rack::new("apps farm") else {
        return;
    };
    let dirs = AppDirs::new();
    let [lb1, lb2] = start_pair(&rack, |i| app_table(&start_argv(&dirs, i), FARM, ""));
    let nodes = [&lb1, &lb2];
    let pids = [0, 1].map(|i| wait_app_running(&rack, &dirs, i, None, &nodes));
    let web = web_status(&rack.lbs[1]);
    assert_eq!(web["run_on"], "all", "{web}");
    assert!(web["instance"].is_null(), "{web}");
    let [app, role, instance] = app_env(pids[1]);
    assert_eq!(
        (app.as_deref(), role.as_deref(), instance.as_deref()),
        (Some("web"), Some("all"), None)
    );

    // The role moves to lb2; each app keeps running, the same process.
    cli(&rack.lbs[0], &["swap"], &lb1);
    rack.wait_master(1, &nodes);
    std::thread::sleep(Duration::from_millis(500));
    for (i, &pid) in pids.iter().enumerate() {
        assert_eq!(dirs.running_pid(i), Some(pid), "{}", logs_of(&nodes));
        let web = web_status(&rack.lbs[i]);
        assert_eq!(web["state"], "running", "{web}");
        assert_eq!(web["pid"], pid, "{web}");
    }
}

/// Cloud mode: no VIP; `/healthz` says which node is primary, and a primary whose app has not
/// yet passed its checks says `starting`, so a target group sends it nothing yet.
#[test]
fn cloud_mode_healthz_says_starting_until_the_primary_app_passes_its_checks() {
    let Some(rack) = Rack::new("apps cloud healthz") else {
        return;
    };
    let dirs = AppDirs::new();
    let config = |i: usize, priority: u8| {
        // A slow start: the app binds 2 s after it is started.
        let mut argv = start_argv(&dirs, i);
        argv.extend(["--delay-ms".to_owned(), "2000".to_owned()]);
        let app = app_table(&argv, MIRROR, "")
            .replace("start_timeout = \"3s\"", "start_timeout = \"10s\"");
        format!(
            r#"[node]
name = "lb{n}"
threads = 1
drain_timeout = "1s"
{TOKEN_LINE}

{cloud}{app}"#,
            n = i + 1,
            cloud = rack.cloud_instance(i, priority)
        )
    };
    // lb1 alone becomes master, and says `starting` while its app is coming up.
    let lb1 = rack.start_config(0, &config(0, 150));
    wait_for("lb1 says starting", &[&lb1], || {
        healthz(&rack.lbs[0]) == Some((503, "starting".to_owned()))
    });
    let lb2 = rack.start_config(1, &config(1, 100));
    let nodes = [&lb1, &lb2];
    wait_for("lb1 primary", &nodes, || {
        healthz(&rack.lbs[0]) == Some((200, "primary".to_owned()))
    });
    wait_app_running(&rack, &dirs, 0, None, &nodes);
    wait_for("lb2 secondary", &nodes, || {
        healthz(&rack.lbs[1]) == Some((503, "secondary".to_owned()))
    });
    assert_eq!(web_state(&rack.lbs[1]), "stopped");
    assert!(dirs.running_pid(1).is_none());
    assert!(!has_addr(&rack.lbs[0], rack.vip) && !has_addr(&rack.lbs[1], rack.vip));
}

/// How long clients on the VIP go unserved, from `kill -9` of lb1's app to the first
/// connection served by `by`'s copy: probed from the client every 5 ms (100 ms connect and
/// read bounds), for at most 30 s.
fn outage_after_kill(rack: &Rack, pid: i32, by: &str) -> Duration {
    let target = SocketAddr::from((rack.vip, common::rack::PORT));
    let (client, by) = (rack.client.clone(), by.to_owned());
    let killed = Instant::now();
    kill9(pid);
    in_netns(&client, move || {
        while killed.elapsed() < Duration::from_secs(30) {
            let served = which_backend_within(target, Duration::from_millis(100));
            if served.is_ok_and(|name| name == by) {
                return killed.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("{by} never served the VIP within 30 s of the kill");
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The benchmark of BENCHMARKS.md's application section: the client-seen outage of an app
/// crash restarted here, and of a crash that exhausts the restarts (`max = 0`) and moves the
/// VIP to the peer, which starts its copy. 100 ms adverts, checks every second (rise 2,
/// fall 3), the default 1 s backoff; five trials of each; prints each trial and the medians.
#[test]
#[ignore = "a benchmark (about a minute): cargo test --release -p tandem-tests --test apps -- --ignored --nocapture"]
fn bench_outage_of_a_local_restart_and_of_a_failover_to_the_peer() {
    let Some(rack) = Rack::new("apps outage bench") else {
        return;
    };
    const TRIALS: usize = 5;
    let dirs = AppDirs::new();
    let table = |i: usize, max: u32| {
        let argv: Vec<String> = start_argv(&dirs, i)
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        format!(
            r#"
[[app]]
name = "web"
start = [{argv}]
{MIRROR}
checks = [{{ kind = "tcp", port = 80, interval = "1s", timeout = "500ms" }}]
restart = {{ max = {max}, within = "2s", backoff = "1s" }}
"#,
            argv = argv.join(", ")
        )
    };
    let [lb1, lb2] = start_pair(&rack, |i| table(i, 3));
    let nodes = [&lb1, &lb2];

    let mut local = Vec::new();
    let mut pid = wait_app_running(&rack, &dirs, 0, None, &nodes);
    for trial in 0..TRIALS {
        // A run of `within` (2 s) starts the next backoff afresh: every trial sees the first.
        std::thread::sleep(Duration::from_millis(2500));
        let outage = outage_after_kill(&rack, pid, "lb1");
        println!("local restart, trial {trial}: {outage:?}");
        local.push(outage);
        pid = wait_app_running(&rack, &dirs, 0, Some(pid), &nodes);
        assert!(rack.vip_only_on(0), "the VIP moved\n{}", logs_of(&nodes));
    }

    // Out of restarts at the first failure: the peer takes the role and starts its copy.
    lb1.reload(&node_config(&rack, 0, 150, &table(0, 0)));
    lb1.wait_log("configuration reloaded", 1);
    let mut failover = Vec::new();
    for trial in 0..TRIALS {
        wait_for("lb1 serves", &nodes, || {
            rack.served_by().as_deref() == Some("lb1")
        });
        let pid = wait_app_running(&rack, &dirs, 0, None, &nodes);
        let outage = outage_after_kill(&rack, pid, "lb2");
        println!("failover to the peer, trial {trial}: {outage:?}");
        failover.push(outage);
        // Back to lb1: enabled, it preempts, and lb2's copy stops.
        let (code, body) = admin_in(&rack.lbs[0], "POST", "/apps/web/enable").unwrap();
        assert_eq!(code, 200, "{body}");
    }
    println!(
        "median client-seen outage: local restart {:?}, failover to the peer {:?} ({TRIALS} trials each)",
        median(local),
        median(failover)
    );
}
