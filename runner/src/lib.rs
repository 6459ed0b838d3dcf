//! Runs an operator's program (argv, no shell) in a process group of its own, bounded by a
//! timeout, and leaves nothing behind.
//!
//! Command health checks, VRRP notify scripts and (soon) applications all run programs
//! Tandem did not write. Such a program may hang, fork helpers that outlive it, or print
//! without end; the daemon must survive all three. So each run gets its own process group
//! (one kill reaches everything it started), its output is read to the end but only the
//! first [`OUTPUT_LIMIT`] bytes kept (a full pipe never blocks it), and at the timeout, or
//! when the caller stops waiting, the whole group is killed.
//!
//! [`run`] is for programs that must finish (checks, scripts); [`Process`] for one that runs
//! until stopped (an application), its output logged line by line.
#![forbid(unsafe_code)]

mod process;

pub use process::Process;

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most of a program's stdout (and of its stderr) kept; the rest is read and dropped.
pub const OUTPUT_LIMIT: usize = 4096;

/// How long, after killing a timed-out program, we wait for it to be reaped before leaving
/// the rest to tokio's orphan reaper. SIGKILL cannot be ignored, so this is only a safety bound.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// A program that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// The first [`OUTPUT_LIMIT`] bytes of its stdout.
    pub stdout: Vec<u8>,
    /// The first [`OUTPUT_LIMIT`] bytes of its stderr.
    pub stderr: Vec<u8>,
}

/// Why a program did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the command is empty")]
    Empty,
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("i/o error: {0}")]
    Wait(#[source] io::Error),
    /// It was killed, with its process group, at the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Runs `argv` with stdin closed until it exits or `timeout` passes; at the timeout, or if
/// this future is dropped first, its whole process group is killed.
pub async fn run(argv: &[String], timeout: Duration) -> Result<Finished, RunError> {
    run_with_env(argv, &[], timeout).await
}

/// [`run`], with `env` added to the daemon's environment (an application's stop command
/// gets the `TANDEM_*` variables its start had).
pub async fn run_with_env(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Finished, RunError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut child, mut group) = spawn_in_group(argv, env, false)?;
    let program = &argv[0];
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let run = async { tokio::join!(child.wait(), capture(stdout), capture(stderr)) };
    match tokio::time::timeout_at(deadline, run).await {
        Ok((status, stdout, stderr)) => {
            // The leader has been reaped, so its pid (and the group id) may be reused: never
            // signal it again.
            group.disarm();
            Ok(Finished {
                status: status.map_err(RunError::Wait)?,
                stdout,
                stderr,
            })
        }
        Err(_) => {
            group.kill();
            if tokio::time::timeout(REAP_GRACE, child.wait())
                .await
                .is_err()
            {
                tracing::warn!(program = %program, "killed program not reaped in time");
            }
            Err(RunError::Timeout(timeout))
        }
    }
}

/// Starts `argv` (no shell) with stdin closed, stdout and stderr piped and `env` added, as the
/// leader of a process group of its own (pgid = its pid), so one kill reaches everything it
/// starts. Should even the caller's reap be cancelled, tokio still kills and reaps the leader.
///
/// `tied`: the program is also killed if the daemon dies without stopping it (see
/// [`syscall::process::kill_when_parent_thread_ends`]); for long-running programs started
/// from the main thread.
pub(crate) fn spawn_in_group(
    argv: &[String],
    env: &[(String, String)],
    tied: bool,
) -> Result<(tokio::process::Child, GroupKill), RunError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RunError::Empty);
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if tied {
        syscall::process::kill_when_parent_thread_ends(&mut command);
    }
    let child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let group = GroupKill::of(&child);
    Ok((child, group))
}

/// Kills the program's whole process group (SIGKILL) when dropped unless disarmed: on timeout,
/// and also when the run is cancelled midway (a health check's task aborted on reload, say),
/// so no path leaves a program or its children running.
#[derive(Debug)]
pub(crate) struct GroupKill(Option<rustix::process::Pid>);

impl GroupKill {
    /// The group `child` leads (spawned with `process_group(0)`).
    pub(crate) fn of(child: &tokio::process::Child) -> Self {
        Self(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        )
    }

    /// Sends `signal` to the whole group, while it is still armed.
    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        if let Some(group) = self.0 {
            // ESRCH (group already gone) is the outcome we want; nothing else can be done.
            let _ = rustix::process::kill_process_group(group, signal);
        }
    }

    /// SIGKILL to the whole group, once; then disarmed.
    pub(crate) fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        self.0 = None;
    }

    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to its end, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn capture(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let take = n.min(OUTPUT_LIMIT - kept.len());
                kept.extend_from_slice(&buf[..take]);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    pub(crate) fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn alive(pid: i32) -> bool {
        // A zombie has been killed already; only its parent's reap is missing.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.starts_with(" Z"))
        })
    }

    /// Waits (boundedly) for `pid` to be gone, for a group kill that takes a moment to land.
    pub(crate) async fn gone(pid: i32) -> bool {
        for _ in 0..200 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// A shell that starts a long `sleep` in the background, writes its pid to `pid_file` and
    /// waits for it: a program whose child would outlive it unless its group is killed.
    pub(crate) fn forking_script(pid_file: &std::path::Path) -> String {
        format!("sleep 60 & echo $! > {}; wait", pid_file.display())
    }

    pub(crate) fn child_pid(pid_file: &std::path::Path) -> i32 {
        std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn a_program_that_exits_reports_its_status_and_output() {
        let done = run(&argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]), T)
            .await
            .unwrap();
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr, b"err\n");
    }

    #[tokio::test]
    async fn endless_output_is_read_to_the_end_but_only_the_limit_kept() {
        let done = run(&argv(&["sh", "-c", "head -c 1000000 /dev/zero"]), T)
            .await
            .unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout.len(), OUTPUT_LIMIT);
    }

    #[tokio::test]
    async fn an_empty_command_or_a_missing_program_is_an_error_before_anything_runs() {
        assert!(matches!(run(&[], T).await, Err(RunError::Empty)));
        let err = run(&argv(&["/nonexistent/tandem-runner"]), T)
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn at_the_timeout_the_program_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = forking_script(&pid_file);
        let err = run(&argv(&["sh", "-c", &script]), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::Timeout(_)), "{err:?}");
        let child = child_pid(&pid_file);
        assert!(
            gone(child).await,
            "the program's child {child} outlived the timeout"
        );
    }

    #[tokio::test]
    async fn a_run_dropped_midway_kills_the_program_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = forking_script(&pid_file);
        let command = argv(&["sh", "-c", &script]);
        let running = run(&command, Duration::from_secs(60));
        // Stop waiting once the child is known, as a task aborted on reload would.
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::pin!(running);
            loop {
                tokio::select! {
                    _ = &mut running => panic!("the program ended by itself"),
                    () = tokio::time::sleep(Duration::from_millis(20)) => {
                        if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
                            return;
                        }
                    }
                }
            }
        })
        .await;
        outcome.expect("the program never started its child");
        let child = child_pid(&pid_file);
        assert!(
            gone(child).await,
            "the program's child {child} outlived the dropped run"
        );
    }
}
