//! Process checks: a pid file whose pid is alive, or a process found by name in /proc.

use std::io;
use std::path::Path;

use super::{CheckError, ProcessTarget};

pub(super) async fn process(target: &ProcessTarget) -> Result<(), CheckError> {
    let target = target.clone();
    // Walking /proc is many small blocking reads; keep them off the async workers.
    tokio::task::spawn_blocking(move || match &target {
        ProcessTarget::Name(name) => find_by_name(name),
        ProcessTarget::PidFile(path) => check_pid_file(path),
    })
    .await
    .map_err(|e| CheckError::Io(io::Error::other(e)))?
}

fn check_pid_file(path: &Path) -> Result<(), CheckError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CheckError::NoProcess(format!("cannot read pid file {}: {e}", path.display()))
    })?;
    let pid = text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| {
            CheckError::NoProcess(format!("pid file {} holds no pid", path.display()))
        })?;
    match proc_state(pid) {
        Some(state) if is_live(state) => Ok(()),
        Some(_) => Err(CheckError::NoProcess(format!(
            "pid {pid} from {} is a zombie",
            path.display()
        ))),
        None => Err(CheckError::NoProcess(format!(
            "pid {pid} from {} is not running",
            path.display()
        ))),
    }
}

fn find_by_name(name: &str) -> Result<(), CheckError> {
    if name.is_empty() || name.contains('/') {
        return Err(CheckError::InvalidSpec(format!("process name {name:?}")));
    }
    let entries = std::fs::read_dir("/proc").map_err(CheckError::Io)?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit mid-walk: every unreadable file simply means "not this one".
        if has_name(pid, name) && proc_state(pid).is_some_and(is_live) {
            return Ok(());
        }
    }
    Err(CheckError::NoProcess(format!(
        "none named {name:?} is running"
    )))
}

fn has_name(pid: u32, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
    if comm.is_ok_and(|c| c.trim_end_matches('\n') == name) {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
        base == name.as_bytes()
    })
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, ...), or `None` if there is no such
/// process. The name field may hold spaces and parentheses, so parse after the last `)`.
pub(super) fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Zombies (`Z`) and dead tasks (`X`, `x`) have exited: their pid is still listed, but nothing
/// runs.
pub(super) fn is_live(state: char) -> bool {
    !matches!(state, 'Z' | 'X' | 'x')
}
