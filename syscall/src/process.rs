//! A child program's tie to the daemon.

use std::io;

/// Makes the program `command` starts receive SIGKILL when the thread that starts it ends.
///
/// Why: an application must not outlive the node that supervises it. If the daemon died (even
/// by SIGKILL, which runs no cleanup) and left a mirror application running, the peer would
/// start its own copy beside it: two copies of what must run once. Under the shipped systemd
/// unit the cgroup is killed anyway; this covers every other way of running Tandem.
///
/// The kernel ties the signal to the *thread* that forks, not the process: call this only for
/// programs started from a thread that lives as long as the daemon (applications are started
/// from the main thread's runtime). Only the program itself gets the signal; its own children
/// see it exit.
pub fn kill_when_parent_thread_ends(command: &mut tokio::process::Command) {
    let parent = std::process::id();
    let closure = move || -> io::Result<()> {
        // SAFETY: prctl with these integer arguments reads and writes no memory of ours.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The daemon died between the fork and the prctl: the signal will never come.
        // SAFETY: getppid has no arguments and cannot fail.
        if unsafe { libc::getppid() } as u32 != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls may be made: it calls prctl and getppid, and builds an
    // `io::Error` from an errno, which does not allocate.
    unsafe {
        command.pre_exec(closure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A program started from a thread that then ends is killed with it.
    #[test]
    fn the_program_dies_with_the_thread_that_started_it() {
        let pid = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut command = tokio::process::Command::new("sleep");
                command.arg("30");
                kill_when_parent_thread_ends(&mut command);
                let child = command.spawn().unwrap();
                let pid = child.id().unwrap();
                // Leave it running: dropping the handle neither kills nor reaps it.
                std::mem::forget(child);
                pid
            })
        })
        .join()
        .unwrap();

        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|s| !s.trim_start().starts_with('Z'))
            })
        };
        // At most 5 s.
        for _ in 0..500 {
            if !alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !alive(),
            "the program {pid} outlived the thread that started it"
        );
    }
}
