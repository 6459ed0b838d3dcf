//! Running out of file descriptors: the node neither spins nor dies, and recovers.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;

#[test]
fn out_of_descriptors_the_node_backs_off_and_recovers() {
    let a = Backend::start("a");
    let listen = free_addr(IpAddr::V4(loopback_ip()));
    // 32 descriptors: a dozen for the runtime and listener, then two per proxied connection.
    let node = Node::start_with_fd_limit(&simple_config(listen, &backend_list(&[&a]), ""), 32);
    node.wait_listening(listen);

    // Fill the node's descriptor table with held connections until one is not served.
    let mut held = Vec::new();
    // A client the node cannot serve is either left waiting in the accept queue (read times
    // out) or accepted and reset at once because no descriptor is left to reach the backend;
    // the reset can arrive before connect() even returns. Either ends the filling.
    for _ in 0..40 {
        let served = Client::connect(listen).and_then(|mut c| {
            c.stream
                .set_read_timeout(Some(Duration::from_millis(1500)))?;
            c.backend_name().map(|_| c)
        });
        match served {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    assert!(
        held.len() >= 3,
        "only {} connections before exhaustion",
        held.len()
    );
    assert!(held.len() < 40, "the descriptor limit was never reached");

    // More clients arrive while the node is out of descriptors.
    let waiting: Vec<Client> = (0..5)
        .filter_map(|_| Client::connect(listen).ok())
        .collect();

    // Not spinning: over one second the node uses a small fraction of a CPU. A busy loop on
    // accept() failing with EMFILE would use all of it (~100 ticks at the usual 100 Hz).
    let before = node.cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = node.cpu_ticks() - before;
    assert!(
        used < 30,
        "node used {used} ticks in 1 s while out of descriptors"
    );

    let log = node.log_text();
    eprintln!(
        "{} connections held, {used} ticks in 1 s; log:\n{log}",
        held.len()
    );
    assert!(
        log.contains("lack of resources") || log.contains("out of local resources"),
        "the log says why clients are not served:\n{log}"
    );

    // Once connections close, service resumes by itself.
    drop(waiting);
    drop(held);
    wait_until("service to resume after descriptors freed", || {
        Client::connect(listen)
            .and_then(|mut c| c.backend_name())
            .is_ok_and(|name| name == "a")
    });
}

/// Out of descriptors, the health checker's own probes fail too (EMFILE): that is this host's
/// fault, not the backends'. They keep their state, so the moment descriptors are back the
/// next client is served, with no wait for `rise` probes.
#[test]
fn out_of_descriptors_health_checks_do_not_blame_the_backends() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let ip = IpAddr::V4(loopback_ip());
    let (listen, admin) = (free_addr(ip), free_addr(ip));
    // One failed probe would take a backend down, and one good one bring it back: any probe
    // counted against a backend shows as a transition.
    let health = r#"
health = { kind = "tcp", interval = "50ms", timeout = "40ms", rise = 1, fall = 1 }"#;
    let config = format!(
        "{}{health}\n",
        simple_config(listen, &backend_list(&[&a, &b]), "")
    )
    .replace("admin = \"\"", &format!("admin = \"{admin}\""));
    let node = Node::start_with_fd_limit(&config, 48);
    node.wait_listening(listen);
    node.wait_listening(admin);

    let mut held = Vec::new();
    for _ in 0..60 {
        let served = Client::connect(listen).and_then(|mut c| {
            c.stream
                .set_read_timeout(Some(Duration::from_millis(1500)))?;
            c.backend_name().map(|_| c)
        });
        match served {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    assert!(held.len() < 60, "the descriptor limit was never reached");
    // Ten probe intervals with no descriptor to probe with.
    std::thread::sleep(Duration::from_millis(500));
    drop(held);

    wait_until("the admin API answers again", || {
        http_raw(admin, "GET /metrics HTTP/1.1\r\nHost: a", b"").is_some()
    });
    let (_, metrics) = common::admin(admin, "GET", "/metrics", false);
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim_start_matches("{}")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(
        counter("tandem_health_host_faults_total") > 0,
        "the probes never ran out of descriptors: the test proves nothing\n{}",
        node.log_text()
    );
    assert_eq!(
        counter("tandem_health_transitions_total"),
        0,
        "a backend was marked down for this host's fault\n{}",
        node.log_text()
    );
    assert!(
        node.log_text().contains("not counted against the backend"),
        "{}",
        node.log_text()
    );
}
