//! The admin HTTP API: what operators, scripts and a cloud load balancer in front ask a node.
//!
//! Reads (`/healthz`, `/livez`, `/status`, `/metrics`) are answered from state the node already
//! holds; `/status` is a [`contract::Status`], the type clients read it back into. Mutations
//! (`/swap`, drain/enable, `/reload`, application restart/enable/disable) need the bearer token and are carried out by the daemon's
//! main loop, which owns the running state, through [`AdminCommand`]s whose typed answers
//! become responses in one place (`command`). Every request gets an answer with a status
//! code that says what went wrong: malformed or oversized input is a 4xx, never a panic and
//! never a 500.
//!
//! Helpers return a refusal as `Err(Reply)`: a whole response is larger than clippy likes in an
//! `Err`, but boxing it would buy nothing on a path that serves a few requests a second.
#![allow(clippy::result_large_err)]

pub mod admission;
mod client;
mod command;
mod console;
pub mod contract;
pub mod healthz;
mod listen;
pub mod peers;
mod rejection;
mod report;
mod server;
pub mod stream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use healthcheck::monitor::Monitor;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot, watch};
use vrrp::instance::Status;

pub use crate::data_plane::UnknownBackend;
pub use client::{AdminClient, ClientError};
pub use command::{AdminCommand, Announced, BackendSet, ReloadRejected, Reloaded, Swapped};
pub use listen::{
    BODY_TIMEOUT, ConnectionCounts, Endpoint, FIRST_HEAD_SPREAD, FIRST_HEAD_TIMEOUT,
    KEEP_ALIVE_TIMEOUT, Listeners,
};
pub use rejection::{RejectedRequests, Rejection};
pub use server::{AdminBindError, AdminServer};

use command::Answer;

use crate::config::Config;
use crate::health::PoolsHealth;
use crate::registry::Registry;

/// Largest request body accepted (mutations carry none; this is only a bound).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest request head accepted; hyper answers 431 beyond it (its smallest allowed buffer).
pub const MAX_HEAD: usize = 8 * 1024;

/// Each VRRP instance's status channel, by name (replaced on reload).
pub type InstanceStatuses = BTreeMap<String, watch::Receiver<Status>>;

/// Reload outcomes since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// Everything the API reads, shared with the daemon.
pub struct AdminContext {
    pub config: watch::Receiver<Arc<Config>>,
    pub registry: Arc<Registry>,
    pub monitor: Monitor,
    pub pools: watch::Receiver<PoolsHealth>,
    pub instance_statuses: watch::Receiver<InstanceStatuses>,
    /// Each application's status channel, by name (replaced on reload).
    pub apps: watch::Receiver<crate::applications::AppStatuses>,
    /// Each announcement's status channel, by name (replaced on reload).
    pub anycast: watch::Receiver<crate::anycast::AnnouncementStatuses>,
    /// The bearer token for mutations; `None`: mutations are refused (403).
    pub token: watch::Receiver<Option<String>>,
    pub commands: mpsc::Sender<AdminCommand>,
    pub reloads: Arc<ReloadCounts>,
    /// How each data thread moves bytes (one entry per thread), and the start-up evidence
    /// for it.
    pub data_threads: Vec<crate::data_threads::ThreadIo>,
    /// Set when the node starts shutting down: `/healthz` then says so, even on a node without
    /// VRRP, so a load balancer in front stops sending new clients.
    pub stopping: std::sync::atomic::AtomicBool,
    /// The admin listeners' connection counts, and the gate `/status` and `/metrics` pass.
    pub listeners: Listeners,
    /// The node's event log, streamed by `/events`.
    pub events: Arc<crate::events::Events>,
    /// The event streams' counts.
    pub event_streams: stream::StreamCounts,
    /// The peers' status, for the console (`/peers`).
    pub peers: peers::Peers,
}

/// Every answer's body: whole, or a stream (`/events`).
type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;
type Reply = Response<Body>;

fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static,
{
    body.boxed_unsync()
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut body = body.into();
    body.push('\n');
    let mut reply = Response::new(boxed(Full::new(Bytes::from(body))));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

fn typed(body: impl Into<Bytes>, content_type: &'static str) -> Reply {
    let mut reply = Response::new(boxed(Full::new(body.into())));
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// Answers one request on `endpoint` (the health listener knows only the health path); every
/// answer of the admin listener carries the console's safety headers (see [`console`]).
async fn handle(context: &Arc<AdminContext>, endpoint: Endpoint, req: Request<Incoming>) -> Reply {
    let mut reply = route(context, endpoint, req).await;
    if endpoint == Endpoint::Admin {
        console::secure(reply.headers_mut());
    }
    reply
}

async fn route(context: &Arc<AdminContext>, endpoint: Endpoint, req: Request<Incoming>) -> Reply {
    let (req, body) = req.into_parts();
    // Bodies mean nothing here, but an oversized one is refused whatever the path.
    if let Err(reply) = drain_body(body).await {
        return reply;
    }
    let method = req.method.clone();
    let path = req.uri.path().to_owned();
    let healthz = context.config.borrow().node.healthz_path.clone();
    let read = method == Method::GET || method == Method::HEAD;
    if path == healthz {
        if !read {
            return Rejection::Method.reply("use GET or HEAD");
        }
        let verdict = report::healthz(context);
        let status = if verdict.healthy() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return text(status, verdict.body());
    }
    if endpoint == Endpoint::Healthz {
        return Rejection::NotFound.reply(format!("this listener serves only {healthz}"));
    }
    let busy = || Rejection::Busy.reply("too many /status and /metrics requests at once; retry");
    match path.as_str() {
        p if read && console::asset(p).is_some() => console::serve(p),
        "/events" if read => stream::open(context, &req),
        "/peers" if read => {
            let admins = context.config.borrow().node.peer_admin.clone();
            let views = context.peers.views(&admins).await;
            let body = serde_json::to_string(&views).unwrap_or_else(|_| "[]".to_owned());
            typed(body, "application/json")
        }
        "/events" | "/peers" => text(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
        p if p.starts_with("/peers/") => peer_action(context, &req, p).await,
        "/livez" if read => text(StatusCode::OK, "ok"),
        "/status" if read => match context
            .listeners
            .reports
            .run(context, report::status_json)
            .await
        {
            Some(body) => typed(body, "application/json"),
            None => busy(),
        },
        "/metrics" if read => match context
            .listeners
            .reports
            .run(context, report::metrics)
            .await
        {
            Some(body) => typed(
                body,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            None => busy(),
        },
        "/livez" | "/status" | "/metrics" => Rejection::Method.reply("use GET"),
        "/swap" => mutation(context, &req, AdminCommand::Swap, Answer::Swap).await,
        "/reload" => mutation(context, &req, AdminCommand::Reload, Answer::Reload).await,
        p if p.starts_with("/pools/") => match parse_backend_path(p) {
            Some((pool, addr, drained)) => {
                let command = |reply| AdminCommand::SetDrained {
                    pool,
                    addr,
                    drained,
                    reply,
                };
                mutation(context, &req, command, Answer::SetDrained).await
            }
            None => Rejection::NotFound.reply("expected /pools/POOL/backends/ADDR/drain|enable"),
        },
        "/node/drain" | "/node/enable" => {
            let drained = path == "/node/drain";
            let command = |reply| AdminCommand::Announce {
                name: None,
                withdraw: drained,
                reply,
            };
            mutation(context, &req, command, Answer::Announce).await
        }
        p if p.starts_with("/anycast/") => match parse_anycast_path(p) {
            Some((name, withdraw)) => {
                let command = |reply| AdminCommand::Announce {
                    name: Some(name),
                    withdraw,
                    reply,
                };
                mutation(context, &req, command, Answer::Announce).await
            }
            None => Rejection::NotFound.reply("expected /anycast/NAME/withdraw|announce"),
        },
        p if p.starts_with("/apps/") => match parse_app_path(p) {
            Some((name, ask)) => {
                let command = |reply| AdminCommand::App { name, ask, reply };
                mutation(context, &req, command, Answer::App).await
            }
            None => Rejection::NotFound.reply("expected /apps/NAME/restart|enable|disable"),
        },
        _ => Rejection::NotFound.reply("no such endpoint"),
    }
}

/// `POST /peers/{admin}/{action}`: an action of the console on a peer, passed on (see
/// [`peers`]).
async fn peer_action(context: &AdminContext, req: &Parts, path: &str) -> Reply {
    let Some((admin, action)) = path
        .strip_prefix("/peers/")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(admin, action)| {
            let admin = percent_decode(admin)?.parse::<SocketAddr>().ok()?;
            Some((admin, action))
        })
    else {
        return text(StatusCode::NOT_FOUND, "expected /peers/ADDR/ACTION");
    };
    let action = format!("/{action}");
    if !context.config.borrow().node.peer_admin.contains(&admin) {
        return text(
            StatusCode::NOT_FOUND,
            format!("{admin} is not a peer of this node (see [node] peer_admin)"),
        );
    }
    if !peers::is_peer_action(&action) {
        return text(
            StatusCode::NOT_FOUND,
            "only swap, reload and backend drain/enable pass on to a peer",
        );
    }
    if req.method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    if let Err(refused) = guard(context, req) {
        return refused;
    }
    let authorization = req.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match peers::pass_on(admin, &action, authorization).await {
        Ok((code, body)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            text(status, body.trim_end())
        }
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("peer {admin} did not take the action: {e}"),
        ),
    }
}

/// `/anycast/{name}/{withdraw|announce}` → (name, withdraw).
fn parse_anycast_path(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/anycast/")?;
    let (name, action) = rest.split_once('/')?;
    let withdraw = match action {
        "withdraw" => true,
        "announce" => false,
        _ => return None,
    };
    let name = percent_decode(name)?;
    (!name.is_empty()).then_some((name, withdraw))
}

/// `/apps/{name}/{restart|enable|disable}` → (name, ask).
fn parse_app_path(path: &str) -> Option<(String, apps::Ask)> {
    let rest = path.strip_prefix("/apps/")?;
    let (name, action) = rest.split_once('/')?;
    let ask = match action {
        "restart" => apps::Ask::Restart,
        "enable" => apps::Ask::Enable,
        "disable" => apps::Ask::Disable,
        _ => return None,
    };
    let name = percent_decode(name)?;
    (!name.is_empty()).then_some((name, ask))
}

/// A mutation: checks method and token, sends the command, and turns its typed answer into
/// the reply ([`Answer::response`] says which).
async fn mutation<T>(
    context: &AdminContext,
    req: &Parts,
    command: impl FnOnce(oneshot::Sender<T>) -> AdminCommand,
    answer: impl FnOnce(T) -> Answer,
) -> Reply {
    if req.method != Method::POST {
        return Rejection::Method.reply("use POST");
    }
    if let Err(refused) = guard(context, req) {
        return refused;
    }
    let (tx, rx) = oneshot::channel();
    match ask(context, command(tx), rx).await {
        Ok(reply) => {
            let (status, body) = answer(reply).response();
            text(status, body)
        }
        Err(unavailable) => unavailable,
    }
}

/// The token check shared by every mutation.
fn guard(context: &AdminContext, req: &Parts) -> Result<(), Reply> {
    let Some(token) = context.token.borrow().clone() else {
        return Err(
            Rejection::NoToken.reply("mutations are disabled: no admin_token is configured")
        );
    };
    let given = req
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err(Rejection::BadToken.reply("a valid bearer token is required"));
    }
    Ok(())
}

/// Reads and drops a request body, up to [`MAX_BODY`]: 413 beyond (told by its declared length
/// before reading anything when it has one), 400 for one that does not parse (a bad chunk:
/// not a size question), 408 for one that does not come.
async fn drain_body(body: Incoming) -> Result<(), Reply> {
    use hyper::body::Body;
    let too_large = || Rejection::TooLarge.reply("request body too large");
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    // A body trickled in slowly must not hold the connection for ever.
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Rejection::Malformed.reply(format!("malformed request body: {e}"))),
        Err(_) => Err(Rejection::BodyTimeout.reply("request body too slow")),
    }
}

async fn ask<T>(
    context: &AdminContext,
    command: AdminCommand,
    reply: oneshot::Receiver<T>,
) -> Result<T, Reply> {
    let unavailable = || text(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    context
        .commands
        .send(command)
        .await
        .map_err(|_| unavailable())?;
    reply.await.map_err(|_| unavailable())
}

/// `/pools/{pool}/backends/{addr}/{drain|enable}` → (pool, addr, drained).
fn parse_backend_path(path: &str) -> Option<(String, SocketAddr, bool)> {
    let rest = path.strip_prefix("/pools/")?;
    let mut parts = rest.splitn(4, '/');
    let pool = parts.next()?;
    if parts.next()? != "backends" {
        return None;
    }
    let addr = percent_decode(parts.next()?)?.parse().ok()?;
    let drained = match parts.next()? {
        "drain" => true,
        "enable" => false,
        _ => return None,
    };
    (!pool.is_empty()).then(|| (pool.to_owned(), addr, drained))
}

/// `%5B::1%5D:80` → `[::1]:80`: IPv6 brackets and colons may arrive escaped.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Compares without an early exit, so the time taken says nothing of how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_paths_name_the_app_and_the_action() {
        assert_eq!(
            parse_app_path("/apps/web/restart"),
            Some(("web".to_owned(), apps::Ask::Restart))
        );
        assert_eq!(
            parse_app_path("/apps/my%20db/disable"),
            Some(("my db".to_owned(), apps::Ask::Disable))
        );
        for bad in [
            "/apps//enable",
            "/apps/web",
            "/apps/web/stop",
            "/apps/web/enable/x",
            "/apps/%zz/enable",
        ] {
            assert_eq!(parse_app_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn backend_paths_parse_with_plain_and_escaped_addresses() {
        assert_eq!(
            parse_backend_path("/pools/web/backends/10.0.0.1:80/drain"),
            Some(("web".into(), "10.0.0.1:80".parse().unwrap(), true))
        );
        assert_eq!(
            parse_backend_path("/pools/web/backends/%5B::1%5D:80/enable"),
            Some(("web".into(), "[::1]:80".parse().unwrap(), false))
        );
        for bad in [
            "/pools//backends/10.0.0.1:80/drain",
            "/pools/web/backend/10.0.0.1:80/drain",
            "/pools/web/backends/10.0.0.1/drain",
            "/pools/web/backends/10.0.0.1:80/stop",
            "/pools/web/backends/10.0.0.1:80/drain/x",
            "/pools/web/backends/%zz/drain",
            "/pools/web",
        ] {
            assert_eq!(parse_backend_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
