//! SIGTERM: stop accepting, let open connections finish, exit 0.

mod common;

use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use common::*;

#[test]
fn sigterm_stops_accepting_and_drains_open_connections() {
    sigterm_stops_accepting_and_drains_open_connections_on(1);
}

#[test]
fn sigterm_drains_connections_open_on_two_data_threads() {
    sigterm_stops_accepting_and_drains_open_connections_on(2);
}

fn sigterm_stops_accepting_and_drains_open_connections_on(threads: usize) {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = with_threads(&simple_config(listen, &backend_list(&[&a]), ""), threads);
    let mut node = Node::start_listening(&config, listen);
    let mut open = Client::connect(listen).unwrap();
    assert_eq!(open.backend_name().unwrap(), "a");

    node.signal(rustix::process::Signal::TERM);
    wait_until("the listener to close", || {
        TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_err()
    });
    // The open connection is still relayed while the node drains.
    assert_eq!(open.round_trip(b"finishing").unwrap(), b"finishing");
    assert_eq!(open.round_trip(b"up").unwrap(), b"up");
    drop(open);
    let status = node.wait_exit();
    assert!(status.success(), "exit status {status}");
    assert!(node.log_text().contains("all connections finished"));
}

#[test]
fn drain_gives_up_at_the_deadline_and_still_exits_zero() {
    drain_gives_up_at_the_deadline_and_still_exits_zero_on(1);
}

/// The connections left are dropped with their data thread's runtime: still as resets.
#[test]
fn drain_deadline_resets_what_is_left_on_two_data_threads() {
    drain_gives_up_at_the_deadline_and_still_exits_zero_on(2);
}

fn drain_gives_up_at_the_deadline_and_still_exits_zero_on(threads: usize) {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &backend_list(&[&a]), "")
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"300ms\"");
    let config = with_threads(&config, threads);
    let mut node = Node::start_listening(&config, listen);
    let mut stuck = Client::connect(listen).unwrap();
    assert_eq!(stuck.backend_name().unwrap(), "a");
    node.signal(rustix::process::Signal::TERM);
    let status = node.wait_exit();
    assert!(status.success(), "exit status {status}");
    assert!(node.log_text().contains("drain deadline reached"));
    // The connection the node gave up on is reset, not left hanging and not closed cleanly
    // (a clean close could pass for a complete response).
    let end = stuck.read_to_end();
    assert!(
        end.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let dir = TempDir::create();
    let socket_path = dir.path().join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let systemd = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    systemd.set_read_timeout(Some(PATIENCE)).unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let config = simple_config(listen, &backend_list(&[&a]), "");
    let mut node = Node::start_with_env(&config, &[("NOTIFY_SOCKET", socket_path.as_os_str())]);
    assert_eq!(next(), "READY=1");
    // Ready means serving: the listener is bound before the notification.
    assert_eq!(which_backend(listen).unwrap(), "a");
    node.reload(&config);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    node.signal(rustix::process::Signal::TERM);
    assert_eq!(next(), "STOPPING=1");
    assert!(node.wait_exit().success());
}
