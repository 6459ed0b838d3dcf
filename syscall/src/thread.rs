//! The calling thread's scheduling.

use std::io;

/// Puts the calling thread under `SCHED_RR` at `priority` (1 to 99): it then runs before any
/// normal thread that wants its CPU. Needs CAP_SYS_NICE (root has it) or an `RLIMIT_RTPRIO`
/// that allows `priority`; fails with `PermissionDenied` otherwise.
pub fn set_realtime_priority(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, which only reads it;
    // pid 0 names the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of the calling thread, from /proc (field 41 of `stat`).
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = stat.rsplit(')').next().unwrap();
        // Fields after the name start at field 3 (state); policy is field 41.
        after_name
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_thread_asking_for_realtime_gets_it_or_a_permission_error() {
        std::thread::spawn(|| match set_realtime_priority(1) {
            Ok(()) => assert_eq!(policy(), libc::SCHED_RR as u32),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                assert_eq!(policy(), libc::SCHED_OTHER as u32);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_out_of_range_priority_is_refused() {
        std::thread::spawn(|| {
            let e = set_realtime_priority(100).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        })
        .join()
        .unwrap();
    }
}
