//! The pair as the console shows it: each peer's `/status`, fetched by this node from the
//! admin addresses in `[node] peer_admin`, so the browser talks to one origin only; and the
//! console's actions on a peer, passed on to it.
//!
//! Fetched on demand (when a console asks `GET /peers`), at most every [`FRESH`]; several
//! consoles share one fetch. A peer that does not answer within [`FETCH_TIMEOUT`], or answers
//! anything but a status document, is *unreachable*, since the first failed fetch after its
//! last good one: its last status is not shown, so it never looks healthy when it is not.
//!
//! An action on a peer (`POST /peers/ADDR/swap`, `/reload`, `/pools/…/drain|enable`) needs
//! this node's token, and is passed on with the same bearer header: the pair shares its
//! admin token, and the peer checks it again. Only the configured peers are reached, and only
//! on those paths.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::contract;

/// Longest a peer may take to answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest an action passed on to a peer may take (a reload of a big config is the slowest).
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// A fetch younger than this is served again rather than repeated.
const FRESH: Duration = Duration::from_millis(500);
/// Largest answer read from a peer.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// What the console is told about one peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerView {
    /// Its admin address, as configured.
    pub admin: SocketAddr,
    /// It answered the last fetch with a status document.
    pub reachable: bool,
    /// When it stopped answering (milliseconds since the Unix epoch); `null` while it answers.
    pub unreachable_since_unix_ms: Option<u64>,
    /// Why the last fetch failed.
    pub error: Option<String>,
    /// Its `/status`, only while reachable.
    pub status: Option<contract::Status>,
}

impl PeerView {
    fn new(admin: SocketAddr) -> Self {
        Self {
            admin,
            reachable: false,
            unreachable_since_unix_ms: None,
            error: None,
            status: None,
        }
    }

    /// Takes the result of one fetch made at `now_unix_ms`.
    pub fn record(&mut self, now_unix_ms: u64, fetched: Result<contract::Status, String>) {
        match fetched {
            Ok(status) => {
                self.reachable = true;
                self.unreachable_since_unix_ms = None;
                self.error = None;
                self.status = Some(status);
            }
            Err(error) => {
                if self.reachable || self.unreachable_since_unix_ms.is_none() {
                    self.unreachable_since_unix_ms = Some(now_unix_ms);
                }
                self.reachable = false;
                self.error = Some(error);
                self.status = None;
            }
        }
    }
}

/// The peers' views, shared by the consoles.
#[derive(Debug, Default)]
pub struct Peers {
    cache: tokio::sync::Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    fetched: Option<Instant>,
    views: Vec<PeerView>,
}

impl Peers {
    /// Each of `admins`, fetched now unless a fetch is fresh.
    pub async fn views(&self, admins: &[SocketAddr]) -> Vec<PeerView> {
        let mut cache = self.cache.lock().await;
        let same = cache
            .views
            .iter()
            .map(|v| v.admin)
            .eq(admins.iter().copied());
        if !same {
            // A reload changed the list: keep what is known of the peers still in it.
            let old = std::mem::take(&mut cache.views);
            cache.views = admins
                .iter()
                .map(|a| {
                    old.iter()
                        .find(|v| v.admin == *a)
                        .cloned()
                        .unwrap_or_else(|| PeerView::new(*a))
                })
                .collect();
            cache.fetched = None;
        }
        if cache.fetched.is_none_or(|at| at.elapsed() >= FRESH) {
            let fetches = admins.iter().map(|a| fetch_status(*a));
            let results = futures_util::future::join_all(fetches).await;
            let now = unix_ms();
            for (view, result) in cache.views.iter_mut().zip(results) {
                view.record(now, result);
            }
            cache.fetched = Some(Instant::now());
        }
        cache.views.clone()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One peer's `/status`, read into the contract (anything else is a failure).
async fn fetch_status(addr: SocketAddr) -> Result<contract::Status, String> {
    let (code, body) = exchange(addr, Method::GET, "/status", None, FETCH_TIMEOUT).await?;
    if code != 200 {
        return Err(format!("/status answered {code}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|e| format!("not a status document: {e}"))
}

/// The paths of actions a console may pass on to a peer.
pub fn is_peer_action(path: &str) -> bool {
    path == "/swap"
        || path == "/reload"
        || (path.starts_with("/pools/") && (path.ends_with("/drain") || path.ends_with("/enable")))
}

/// Passes an action on to `addr` with the caller's bearer header; the peer's answer.
pub async fn pass_on(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> Result<(u16, String), String> {
    exchange(addr, Method::POST, path, authorization, ACTION_TIMEOUT).await
}

/// One request on a fresh connection, bounded in time and in the size of the answer.
async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let request = async {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string());
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        let result = match response {
            Ok(response) => {
                let code = response.status().as_u16();
                match Limited::new(response.into_body(), MAX_ANSWER)
                    .collect()
                    .await
                {
                    Ok(body) => Ok((code, String::from_utf8_lossy(&body.to_bytes()).into_owned())),
                    Err(e) => Err(format!("reading the answer: {e}")),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        driver.abort();
        result
    };
    tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> contract::Status {
        contract::tests::sample()
    }

    #[test]
    fn a_peer_is_unreachable_since_its_first_failure_and_shows_no_stale_status() {
        let mut view = PeerView::new("10.0.0.2:9090".parse().unwrap());
        view.record(1_000, Err("cannot connect".into()));
        assert_eq!(view.unreachable_since_unix_ms, Some(1_000));
        view.record(2_000, Err("still not".into()));
        assert_eq!(
            view.unreachable_since_unix_ms,
            Some(1_000),
            "since the first"
        );
        assert_eq!(view.error.as_deref(), Some("still not"));
        view.record(3_000, Ok(sample()));
        assert!(view.reachable && view.status.is_some() && view.error.is_none());
        assert_eq!(view.unreachable_since_unix_ms, None);
        view.record(4_000, Err("no answer within 1s".into()));
        assert!(!view.reachable);
        assert_eq!(view.status, None, "never shown as it was");
        assert_eq!(view.unreachable_since_unix_ms, Some(4_000));
    }

    #[test]
    fn only_mutations_of_the_console_pass_on_to_a_peer() {
        for ok in [
            "/swap",
            "/reload",
            "/pools/web/backends/10.0.0.1:80/drain",
            "/pools/web/backends/10.0.0.1:80/enable",
        ] {
            assert!(is_peer_action(ok), "{ok}");
        }
        for refused in [
            "/status",
            "/metrics",
            "/apps/db/restart",
            "/peers",
            "/",
            "/swap/x",
        ] {
            assert!(!is_peer_action(refused), "{refused}");
        }
    }

    #[tokio::test]
    async fn a_peer_that_is_not_there_is_unreachable_with_the_reason() {
        // A port just released on loopback: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let peers = Peers::default();
        let views = peers.views(&[addr]).await;
        assert_eq!(views.len(), 1);
        assert!(!views[0].reachable);
        assert!(views[0].unreachable_since_unix_ms.is_some());
        assert!(
            views[0].error.as_deref().unwrap().contains("connect"),
            "{views:?}"
        );
    }
}
