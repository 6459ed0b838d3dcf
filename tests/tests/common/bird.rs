//! A real BIRD 2 (Debian's `bird2`), run inside a test's network namespace.

use std::path::PathBuf;
use std::process::{Child, Command};

use super::temp_dir;

/// Whether BIRD is installed; prints why not, or panics under CI.
pub fn available(test: &str) -> bool {
    Command::new("bird").arg("--version").output().is_ok()
        || super::skipped(&format!("{test}: bird (Debian bird2) is not installed"))
}

/// One BIRD process in the foreground, stopped by PID when dropped.
pub struct Bird {
    child: Child,
    dir: PathBuf,
}

impl Bird {
    /// Starts BIRD in namespace `ns` with `config`, its control socket and log in a directory
    /// of its own.
    pub fn start_in_netns(ns: &str, config: &str) -> Self {
        let dir = temp_dir();
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(dir.join("bird.log")).unwrap();
        let child = super::netns::exec(ns, "bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bird");
        Self { child, dir }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }

    /// `birdc show ...` and the like, through this BIRD's control socket.
    pub fn birdc(&self, args: &[&str]) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.dir.join("bird.ctl"))
            .args(args)
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM, then waits (bounded) for it to exit; SIGKILL after that.
    pub fn stop(&mut self) {
        super::stop_child(&mut self.child);
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
