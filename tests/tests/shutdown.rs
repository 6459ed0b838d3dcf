//! SIGTERM: stop accepting, let open connections finish, exit 0.

mod common;

use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use common::*;

#[test]
fn sigterm_stops_accepting_and_drains_open_connections() {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let mut node = Node::start_listening(&simple_config(listen, &backend_list(&[&a]), ""), listen);
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
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    let config = simple_config(listen, &backend_list(&[&a]), "")
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"300ms\"");
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
