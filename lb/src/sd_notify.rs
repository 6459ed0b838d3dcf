//! systemd's readiness protocol (`sd_notify`): tell the service manager when the node is ready,
//! reloading, or stopping, so `systemctl start` returns once the listeners are bound and
//! `systemctl reload` waits for the new config. A no-op unless systemd set `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

/// Sends one state line (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`).
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

fn send(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    // A leading '@' names a socket in the abstract namespace.
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), target)?;
    }
    Ok(())
}
