//! A long-running program in a process group of its own: an application the daemon keeps
//! alive. Unlike [`crate::run`] it has no time limit; it runs until it ends by itself or is
//! stopped, and its output goes to the log line by line (rate-limited), not to a buffer.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::time::Instant;

use crate::{GroupKill, RunError, spawn_in_group};

/// Lines of output logged per stream and second at most; the rest are counted and said so.
const LINES_PER_SECOND: u32 = 20;

/// The longest line logged whole; longer ones are cut (and the cut said).
const LINE_LIMIT: usize = 1024;

/// A running program. Dropping it kills its whole group.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Armed until the leader is reaped: a reaped leader's pid may name someone else.
    group: GroupKill,
    program: String,
}

impl Process {
    /// Starts `argv` (no shell) with stdin closed, `env` added to the daemon's environment,
    /// in a process group of its own; each line it prints is logged under `name`. The program
    /// is killed if the thread calling this ends (the daemon dies) before stopping it: call it
    /// from a thread that lives as long as the daemon.
    pub fn spawn(name: &str, argv: &[String], env: &[(String, String)]) -> Result<Self, RunError> {
        let (mut child, group) = spawn_in_group(argv, env, true)?;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(log_lines(name.to_owned(), "stdout", stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_lines(name.to_owned(), "stderr", stderr));
        }
        Ok(Self {
            child,
            group,
            program: argv[0].clone(),
        })
    }

    /// The leader's pid, while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the program ends by itself. Cancel-safe: dropping the future leaves it
    /// running.
    pub async fn exited(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.group.disarm();
        Ok(status)
    }

    /// Stops it: SIGTERM to its group, then SIGKILL to the group if the leader has not ended
    /// within `grace`. Returns how the leader ended.
    pub async fn stop(mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.group.signal(rustix::process::Signal::TERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                // Reaped: its pid, and so its group's id, may now be someone else's. Helpers
                // in its group had the SIGTERM too.
                self.group.disarm();
                status
            }
            Err(_) => {
                tracing::warn!(program = %self.program, ?grace, "did not stop on SIGTERM; killing its process group");
                self.group.kill();
                self.child.wait().await
            }
        }
    }
}

/// Logs each line of `pipe` under `name`, at most [`LINES_PER_SECOND`] a second.
async fn log_lines(name: String, stream: &'static str, pipe: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(pipe);
    let mut line = Vec::new();
    let mut window = Instant::now();
    let (mut logged, mut skipped) = (0u32, 0u64);
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let now = Instant::now();
        if now.duration_since(window) >= Duration::from_secs(1) {
            if skipped > 0 {
                tracing::warn!(app = %name, stream, skipped, "output lines not logged (over {LINES_PER_SECOND} a second)");
            }
            (window, logged, skipped) = (now, 0, 0);
        }
        if logged >= LINES_PER_SECOND {
            skipped += 1;
            continue;
        }
        logged += 1;
        let text = String::from_utf8_lossy(&line[..line.len().min(LINE_LIMIT)]);
        let cut = if line.len() > LINE_LIMIT {
            " [cut]"
        } else {
            ""
        };
        tracing::info!(app = %name, stream, "{}{cut}", text.trim_end());
    }
    if skipped > 0 {
        tracing::warn!(app = %name, stream, skipped, "output lines not logged (over {LINES_PER_SECOND} a second)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{argv, child_pid, forking_script, gone};

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_program_that_ends_by_itself_is_seen_to_end() {
        let mut process = Process::spawn("t", &argv(&["sh", "-c", "exit 7"]), &[]).unwrap();
        let status = tokio::time::timeout(T, process.exited())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(7));
    }

    #[tokio::test]
    async fn stop_ends_it_with_sigterm_and_its_children_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let mut process =
            Process::spawn("t", &argv(&["sh", "-c", &forking_script(&pid_file)]), &[]).unwrap();
        wait_for_file(&pid_file, &mut process).await;
        let child = child_pid(&pid_file);
        let status = tokio::time::timeout(T, process.stop(T))
            .await
            .unwrap()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15), "SIGTERM: {status:?}");
        assert!(gone(child).await, "its child {child} outlived the stop");
    }

    #[tokio::test]
    async fn a_program_deaf_to_sigterm_is_killed_after_the_grace() {
        let script = "trap '' TERM; echo ready; while :; do sleep 1; done";
        let process = Process::spawn("t", &argv(&["sh", "-c", script]), &[]).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let status = tokio::time::timeout(T, process.stop(Duration::from_millis(300)))
            .await
            .expect("stopped within the bound")
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "SIGKILL: {status:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn the_environment_given_reaches_it_and_endless_output_does_not_block_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!(
            "head -c 2000000 /dev/zero | tr '\\\\0' 'x' | fold -w 100; echo \"$TANDEM_APP\" > {}",
            out.display()
        );
        let env = [("TANDEM_APP".to_owned(), "web".to_owned())];
        let mut process = Process::spawn("t", &argv(&["sh", "-c", &script]), &env).unwrap();
        let status = tokio::time::timeout(T, process.exited())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "web\n");
    }

    async fn wait_for_file(path: &std::path::Path, process: &mut Process) {
        let deadline = Instant::now() + T;
        while !std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n')) {
            assert!(
                Instant::now() < deadline,
                "the program never wrote {path:?}"
            );
            assert!(process.pid().is_some());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
