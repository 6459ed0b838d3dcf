//! A real keepalived (from the distribution), run inside a test's network namespace.

use std::path::PathBuf;
use std::process::{Child, Command};

use super::temp_dir;

/// Whether keepalived is installed; prints why not, or panics under CI.
pub fn available(test: &str) -> bool {
    Command::new("keepalived").arg("--version").output().is_ok()
        || super::skipped(&format!("{test}: keepalived is not installed"))
}

/// One keepalived process (VRRP only), stopped with SIGTERM when dropped.
pub struct Keepalived {
    child: Child,
    dir: PathBuf,
}

/// A keepalived config: one instance `front`, vrid 51 on eth0, holding `vip/24`.
pub fn config(name: &str, version: u8, priority: u8, advert_int: &str, vip: &str) -> String {
    format!(
        "global_defs {{\n    router_id {name}\n    vrrp_version {version}\n}}\n\
         vrrp_instance front {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
         priority {priority}\n    advert_int {advert_int}\n    virtual_ipaddress {{\n        \
         {vip}/24 dev eth0\n    }}\n}}\n"
    )
}

impl Keepalived {
    /// Starts keepalived in namespace `ns` with `config`, in the foreground, logging to a file.
    pub fn start_in_netns(ns: &str, config: &str) -> Self {
        let dir = temp_dir();
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(dir.join("keepalived.log")).unwrap();
        let child = super::netns::exec(ns, "keepalived")
            // Foreground, log to the console (our file), VRRP only; pid files of its own so it
            // never meets another keepalived's.
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(dir.join("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(dir.join("vrrp.pid"))
            .arg("--checkers_pid")
            .arg(dir.join("checkers.pid"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start keepalived");
        Self { child, dir }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("keepalived.log")).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for it to exit; keepalived resigns with priority 0.
    pub fn stop(&mut self) {
        super::stop_child(&mut self.child);
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
