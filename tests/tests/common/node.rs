//! A real `tandem` process under test: its config file, its log, signals, and a stop by PID
//! when its handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// A running `tandem` process with its config file and log.
pub struct Node {
    child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

pub fn tandem_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tandem-node")
}

/// A new directory under the system's temporary one, unique to this process and call.
pub fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tandem-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A directory of the test's own (see `temp_dir`), deleted with what is in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn create() -> Self {
        Self(temp_dir())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Node {
    /// Writes `config` to a file and starts `tandem run` on it.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, None)
    }

    /// Like [`Node::start`], with the open-files limit (soft and hard) set to `nofile`.
    pub fn start_with_fd_limit(config: &str, nofile: u32) -> Self {
        Self::start_with(config, Some(nofile))
    }

    fn start_with(config: &str, nofile: Option<u32>) -> Self {
        let command = match nofile {
            None => Command::new(tandem_bin()),
            Some(n) => {
                // util-linux prlimit execs the node in place: the child PID is the node's.
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(tandem_bin());
                c
            }
        };
        Self::run(command, config)
    }

    /// Starts `tandem run` inside network namespace `ns` (see [`netns::exec`]: the child PID
    /// is the node's).
    pub fn start_in_netns(ns: &str, config: &str) -> Self {
        Self::run(netns::exec(ns, tandem_bin()), config)
    }

    /// Like [`Node::start_in_netns`], with the capabilities `caps` (e.g. `net_admin`) taken away
    /// from the node although it runs as root: util-linux `setpriv` drops them from the bounding
    /// and inheritable sets and execs the node in place (the child PID is the node's). `None`,
    /// after saying why (see [`skipped`]), where `setpriv` is not installed.
    pub fn start_in_netns_without_caps(ns: &str, caps: &[&str], config: &str) -> Option<Self> {
        if Command::new("setpriv").arg("--version").output().is_err() {
            skipped("util-linux `setpriv` is not installed: cannot drop capabilities");
            return None;
        }
        let dropped = caps
            .iter()
            .map(|c| format!("-{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut command = netns::exec(ns, "setpriv");
        command
            .args(["--bounding-set", &dropped, "--inh-caps", &dropped])
            .arg(tandem_bin());
        Some(Self::run(command, config))
    }

    /// Like [`Node::start`], with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        let mut command = Command::new(tandem_bin());
        command.envs(env.iter().copied());
        Self::run(command, config)
    }

    /// `command` (the node's program, perhaps behind a wrapper that execs it in place) with
    /// `run -c FILE`, `config` written to FILE.
    fn run(mut command: Command, config: &str) -> Self {
        let dir = temp_dir();
        let path = dir.join("tandem.toml");
        std::fs::write(&path, config).unwrap();
        command.args(["run", "-c"]).arg(&path);
        Self::spawn(command, dir, path)
    }

    /// Starts `tandem` with these arguments (e.g. `demo`), logging to a file.
    pub fn start_args(args: &[&str]) -> Self {
        let dir = temp_dir();
        let mut command = Command::new(tandem_bin());
        command.args(args);
        let none = dir.join("none.toml");
        Self::spawn(command, dir, none)
    }

    /// Runs `command` with its log (stderr) and stdout in files of `dir`.
    fn spawn(mut command: Command, dir: PathBuf, path: PathBuf) -> Self {
        let log = dir.join("tandem.log");
        let child = command
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(dir.join("stdout.txt")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tandem");
        Self {
            child,
            dir,
            config: path,
            log,
        }
    }

    /// Starts a node and waits until `listen` accepts connections.
    pub fn start_listening(config: &str, listen: SocketAddr) -> Self {
        let node = Self::start(config);
        node.wait_listening(listen);
        node
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// CPU time (user + system, in clock ticks) the node has used so far.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// The node's data threads (named `tandem-data-N`) and how often each has run so far
    /// (context switches, voluntary and not: an idle data thread sleeps and does not run).
    pub fn data_thread_runs(&self) -> Vec<(String, u64)> {
        let mut threads = Vec::new();
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).unwrap();
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("tandem-data-") {
                continue;
            }
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            // Sleeps and preemptions both: a thread busy with its clients on a loaded machine
            // may be preempted more than it sleeps; one with no client does neither.
            let switches = |key: &str| -> u64 {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            let runs =
                switches("voluntary_ctxt_switches:") + switches("nonvoluntary_ctxt_switches:");
            threads.push((comm.trim().to_owned(), runs));
        }
        threads.sort();
        threads
    }

    pub fn wait_listening(&self, addr: SocketAddr) {
        wait_until(
            &format!("node listening on {addr}\n{}", self.log_text()),
            || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        );
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, sig).expect("signal tandem");
    }

    /// Replaces the config file and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        std::fs::write(&self.config, config).unwrap();
        self.signal(rustix::process::Signal::HUP);
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.txt")).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `needle` `count` times or more.
    pub fn wait_log(&self, needle: &str, count: usize) {
        wait_until(&format!("{count}× {needle:?} in the log"), || {
            self.log_text().matches(needle).count() >= count
        });
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "tandem did not exit in time; log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The logs of `nodes`, one after another, for a failure message.
pub fn logs_of(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.log_text())
        .collect::<Vec<_>>()
        .join("\n----\n")
}
