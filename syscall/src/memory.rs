//! Keeping the process's memory in RAM.

use std::io;

/// `CAP_IPC_LOCK`, the capability that lifts `RLIMIT_MEMLOCK` (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

/// Locks every page the process has, and every page it will map, into RAM
/// (`mlockall(MCL_CURRENT | MCL_FUTURE)`, as keepalived does): no page of it is swapped out, so
/// a thread that must run on time never waits for one to be read back.
///
/// Refused (`PermissionDenied`, before anything is locked) unless the process may lock without
/// bound, that is with `CAP_IPC_LOCK` (root has it) or an unlimited `RLIMIT_MEMLOCK`: under a
/// finite limit every later allocation past it would fail, and the process with it.
///
/// Locked pages are resident from the start, so the process's resident size becomes the size
/// of all it maps (thread stacks, buffers allocated but not yet used).
pub fn lock_all() -> io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let limit = memlock_limit()?;
    if !may_lock_without_bound(limit, &status) {
        let limit = limit.map_or("unlimited".to_owned(), |n| format!("{n} bytes"));
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "no CAP_IPC_LOCK and RLIMIT_MEMLOCK is {limit}: with all future memory locked, \
                 allocations past that limit would fail"
            ),
        ));
    }
    // SAFETY: mlockall takes flags only and reads or writes no memory of ours.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes; `None` for unlimited.
fn memlock_limit() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid `rlimit` that outlives the call, which only writes it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur))
}

/// Whether locking all memory cannot make later allocations fail: the limit is unlimited, or
/// the effective capabilities (the `CapEff` line of `/proc/self/status`) hold `CAP_IPC_LOCK`.
fn may_lock_without_bound(limit: Option<u64>, proc_status: &str) -> bool {
    if limit.is_none() {
        return true;
    }
    proc_status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|caps| u64::from_str_radix(caps.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locking_everything_needs_an_unlimited_limit_or_cap_ipc_lock() {
        let status =
            |caps: &str| format!("Name:\ttandem\nCapInh:\t0\nCapEff:\t{caps}\nCapBnd:\t0\n");
        assert!(may_lock_without_bound(None, &status("0000000000000000")));
        assert!(
            may_lock_without_bound(Some(8 << 20), &status("000001ffffffffff")),
            "root"
        );
        assert!(
            may_lock_without_bound(Some(8 << 20), &status("0000000000004000")),
            "CAP_IPC_LOCK alone"
        );
        assert!(!may_lock_without_bound(
            Some(8 << 20),
            &status("0000000000003fff")
        ));
        assert!(!may_lock_without_bound(Some(8 << 20), "no capability line"));
    }

    #[test]
    fn the_memlock_limit_is_read() {
        // Whatever it is here, reading it works.
        memlock_limit().unwrap();
    }
}
