//! The operator console in real browsers, headless Chromium (over the DevTools protocol) and
//! Firefox (over WebDriver BiDi), against a pair of nodes in cloud mode, in namespaces the test
//! builds: the page shows both nodes' roles, a backend going down within two seconds of its
//! check failing, refuses an action without the token, drains a backend with it, swaps the
//! roles, and shows a peer that stops answering as unreachable, and the page logs no error on
//! the way. Screenshots of the page are saved for a person to look at.
//!
//! The scenario is written once ([`scenario`]); each browser runs it in a test of its own.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::browser::{self, Browser, Kind};
use common::netns::in_netns;
use common::rack::Rack;
use common::*;

const TOKEN: &str = ADMIN_TOKEN;

/// Node `i`'s config: cloud mode (the role drives `/healthz`, no VIP), the admin API on its
/// LAN address with the other node as its peer, and a pool of two local backends checked
/// every 100 ms.
fn config(rack: &Rack, i: usize, priority: u8) -> String {
    let (me, peer) = (rack.lb_ip(i), rack.lb_ip(1 - i));
    format!(
        r#"[node]
name = "lb{n}"
threads = 1
drain_timeout = "1s"
admin = "{me}:9090"
admin_token = "{TOKEN}"
peer_admin = ["{peer}:9090"]

[[service]]
name = "web"
listen = "{me}:80"
pool = "web"

[[pool]]
name = "web"
backends = [{{ addr = "127.0.0.1:9000" }}, {{ addr = "127.0.0.1:9001" }}]
health = {{ kind = "tcp", interval = "100ms", timeout = "80ms", rise = 1, fall = 1 }}

{cloud}"#,
        n = i + 1,
        cloud = rack.cloud_instance(i, priority)
    )
}

/// A backend on `addr` inside node `i`'s namespace.
fn backend(rack: &Rack, i: usize, addr: &'static str, name: &str) -> Backend {
    let listener = in_netns(&rack.lbs[i], move || TcpListener::bind(addr).expect("bind"));
    Backend::from_listener(name, listener)
}

/// `METHOD path` on node `i`'s admin API, from the client's namespace.
fn ask(rack: &Rack, i: usize, method: &'static str, path: &str) -> (u16, String) {
    let admin = SocketAddr::from((rack.lb_ip(i), 9090));
    let head = format!("{method} {path} HTTP/1.1\r\nHost: admin");
    in_netns(&rack.client, move || http_raw(admin, &head, b"")).unwrap_or_default()
}

fn backend_drained(rack: &Rack, i: usize, addr: &str) -> bool {
    let (_, body) = ask(rack, i, "GET", "/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    status["pools"][0]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["addr"] == addr && b["drained"] == true)
}

/// JavaScript: the text of `selector` inside node `node`'s panel, or null.
fn text_in(node: &str, selector: &str) -> String {
    format!(
        "((document.querySelector('[data-node=\"{node}\"] {selector}') || {{}}).textContent || null)"
    )
}

/// JavaScript: "ROLE1/ROLE2", the role each panel shows for instance `front`.
fn roles() -> String {
    let role = |n| text_in(n, "[data-role-of=\"front\"]");
    format!("({}) + '/' + ({})", role("lb1"), role("lb2"))
}

/// JavaScript: the health node `node`'s panel shows for backend `addr`.
fn health(node: &str, addr: &str) -> String {
    format!(
        "((document.querySelector('[data-node=\"{node}\"] [data-backend=\"{addr}\"]') || {{ dataset: {{}} }}).dataset.health || null)"
    )
}

/// JavaScript: clicks `button` (a selector) in node `node`'s panel; what the confirmation
/// dialog then says.
fn click(node: &str, button: &str) -> String {
    format!(
        "(() => {{ document.querySelector('[data-node=\"{node}\"] {button}').click(); \
         const d = document.getElementById('confirm'); \
         return d.open ? document.getElementById('confirm-text').textContent : null; }})()"
    )
}

/// JavaScript: types `token` into the token field and unlocks actions.
fn unlock(token: &str) -> String {
    format!(
        "(() => {{ document.getElementById('token').value = '{token}'; \
         document.getElementById('unlock-button').click(); \
         return document.getElementById('mode').textContent; }})()"
    )
}

const CONFIRM: &str = "document.getElementById('confirm-go').click(); true";
const RESULT: &str = "document.getElementById('result').textContent";
const LOCK: &str = "document.getElementById('lock-button').click(); true";

#[test]
fn the_console_shows_the_pair_and_acts_only_with_the_token_in_chromium() {
    scenario(Kind::Chromium);
}

#[test]
fn the_console_shows_the_pair_and_acts_only_with_the_token_in_firefox() {
    scenario(Kind::Firefox);
}

/// The console in browser `kind`, from a pair's start to its peer's death.
fn scenario(kind: Kind) {
    let test = format!("console in {}", kind.name());
    let Some(rack) = Rack::new(&test) else {
        return;
    };
    if !browser::available(kind, &test) {
        return;
    }
    let _backends = [
        backend(&rack, 0, "127.0.0.1:9000", "lb1-a"),
        backend(&rack, 1, "127.0.0.1:9000", "lb2-a"),
        backend(&rack, 1, "127.0.0.1:9001", "lb2-b"),
    ];
    let mut lb1_b = backend(&rack, 0, "127.0.0.1:9001", "lb1-b");
    let lb1 = rack.start_config(0, &config(&rack, 0, 150));
    lb1.wait_log("BACKUP -> MASTER", 1);
    let mut lb2 = rack.start_config(1, &config(&rack, 1, 100));
    let logs = |nodes: &[&Node]| logs_of(nodes);
    wait_until(
        &format!("both admin APIs answer\n{}", logs(&[&lb1, &lb2])),
        || {
            ask(&rack, 0, "GET", "/healthz").1.trim() == "primary"
                && ask(&rack, 1, "GET", "/healthz").1.trim() == "secondary"
        },
    );

    let started = Instant::now();
    let mut page = Browser::start_in_netns(kind, &rack.client);
    page.navigate(&format!("http://{}:9090/", rack.lb_ip(0)));
    let patience = Duration::from_secs(10);
    page.wait_for(
        "both nodes' roles",
        &format!("{} === 'MASTER/BACKUP'", roles()),
        patience,
    );
    page.wait_for(
        "the live event stream",
        "document.getElementById('live').textContent === 'live'",
        patience,
    );
    // Read-only without a token: every action button is disabled.
    assert_eq!(
        page.eval("[...document.querySelectorAll('button[data-action]')].every(b => b.disabled) && document.querySelectorAll('button[data-action]').length > 0"),
        serde_json::json!(true)
    );

    // A backend's check fails: the page says so within two seconds.
    lb1_b.stop();
    let down = page.wait_for(
        "lb1's 127.0.0.1:9001 down",
        &format!("{} === 'down'", health("lb1", "127.0.0.1:9001")),
        patience,
    );
    // The check runs every 100 ms (timeout 80 ms): it fails within 0.2 s of the stop.
    assert!(
        down < Duration::from_millis(2200),
        "shown down {down:?} after the backend stopped"
    );
    page.wait_for(
        "the check's error",
        &format!(
            "({}) !== null",
            text_in("lb1", "[data-backend=\"127.0.0.1:9001\"] .error")
        ),
        patience,
    );

    // A wrong token: the action is asked for, refused, and changes nothing.
    assert_eq!(page.eval(&unlock("not-the-token-0123")), "actions unlocked");
    let drain = "[data-backend=\"127.0.0.1:9000\"] button[data-action=\"drain\"]";
    let said = page.eval(&click("lb1", drain));
    assert_eq!(
        said,
        "lb1 will send no new connections to 127.0.0.1:9000 in pool web; the 0 open one(s) run to their end."
    );
    page.eval(CONFIRM);
    page.wait_for(
        "the refusal",
        &format!("({RESULT}).includes('refused (401)')"),
        patience,
    );
    assert!(!backend_drained(&rack, 0, "127.0.0.1:9000"));
    // Nor does the API take an action with no token at all.
    assert_eq!(
        page.eval("fetch('/swap', { method: 'POST' }).then(r => r.status)"),
        401
    );
    page.eval(LOCK);

    // The right token, typed once: the drain is carried out, as /status says.
    assert_eq!(page.eval(&unlock(TOKEN)), "actions unlocked");
    assert_eq!(
        page.eval("sessionStorage.getItem('tandem-admin-token')"),
        TOKEN
    );
    page.eval(&click("lb1", drain));
    page.eval(CONFIRM);
    page.wait_for(
        "the drain's result",
        &format!("({RESULT}) === 'lb1: drained'"),
        patience,
    );
    assert!(backend_drained(&rack, 0, "127.0.0.1:9000"));
    page.wait_for(
        "lb1's 127.0.0.1:9000 drained",
        &format!("{} === 'drained'", health("lb1", "127.0.0.1:9000")),
        patience,
    );
    // And on the peer, through this node.
    page.eval(&click("lb2", drain));
    page.eval(CONFIRM);
    page.wait_for(
        "the peer's drain",
        &format!("({RESULT}) === 'lb2: drained'"),
        patience,
    );
    assert!(backend_drained(&rack, 1, "127.0.0.1:9000"));
    assert!(!backend_drained(&rack, 1, "127.0.0.1:9001"));

    // A swap: the dialog says what will happen, and the roles change on the page.
    let said = page.eval(&click("lb1", "button[data-action=\"swap\"]"));
    assert_eq!(
        said,
        "lb1 will hand the master role of front (its /healthz turns secondary, lb2's primary) to lb2."
    );
    page.eval(CONFIRM);
    page.wait_for(
        "the roles swapped",
        &format!("{} === 'BACKUP/MASTER'", roles()),
        patience,
    );
    page.wait_for(
        "the role change in the event list",
        "[...document.querySelectorAll('#events li[data-event=\"role\"]')].some(li => li.textContent.includes('MASTER → BACKUP'))",
        patience,
    );
    assert!(
        page.eval(&text_in("lb1", "[data-instance=\"front\"] .why"))
            .as_str()
            .is_some_and(|why| why.contains("an operator handed the master role over")),
        "{}",
        page.eval("document.body.innerText")
    );
    // Three seconds of traffic for the charts (lb1, with no usable backend left, refuses its
    // clients), then the picture.
    let webs = [
        SocketAddr::from((rack.lb_ip(0), 80)),
        SocketAddr::from((rack.lb_ip(1), 80)),
    ];
    in_netns(&rack.client, move || {
        for n in 0..150u32 {
            let _ = which_backend_within(
                webs[usize::from(!n.is_multiple_of(3))],
                Duration::from_millis(500),
            );
            std::thread::sleep(Duration::from_millis(5 + (n % 50) as u64 / 2));
        }
    });
    std::thread::sleep(Duration::from_millis(1200));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("console-{}.png", kind.name()));
    page.screenshot(&shot);
    eprintln!("console screenshot: {}", shot.display());

    // The peer dies: shown unreachable, with since when, never as it last was.
    lb2.signal(rustix::process::Signal::KILL);
    lb2.wait_exit();
    page.wait_for(
        "lb2 unreachable",
        "(document.querySelector('[data-reachable=\"false\"] .down-notice') || {}).textContent?.startsWith('UNREACHABLE since') || false",
        patience,
    );
    assert_eq!(
        page.eval("document.querySelector('[data-node=\"lb2\"]') === null"),
        true,
        "no panel shows lb2's last status"
    );
    let peer: Ipv4Addr = rack.lb_ip(1);
    page.screenshot(&shot.with_file_name(format!("console-{}-peer-down.png", kind.name())));
    let errors = page.errors();
    assert!(
        errors.is_empty(),
        "the page logged errors in {}:\n{}",
        kind.name(),
        errors.join("\n")
    );
    eprintln!(
        "the whole test in {} took {:?} (peer {peer})",
        kind.name(),
        started.elapsed()
    );
    drop(lb1);
}
