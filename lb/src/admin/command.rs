//! The admin API's mutations as the main loop sees them: a command in, a typed answer out.
//!
//! The main loop says what happened (a reload taken or rejected, how many instances a swap
//! hands over, a backend drained or not found); it knows nothing of HTTP. What each answer
//! looks like on the wire, its status code and body, is decided in one place,
//! [`Answer::response`], so that wording scripts and tests match on cannot drift apart
//! between commands.

use std::fmt;
use std::net::SocketAddr;

use hyper::StatusCode;
use tokio::sync::oneshot;

use crate::data_plane::UnknownBackend;

/// What the main loop does for the API.
#[derive(Debug)]
pub enum AdminCommand {
    /// Re-read the config file; the reply says what changed or why it was refused.
    Reload(oneshot::Sender<Result<Reloaded, ReloadRejected>>),
    /// Hand the master role of every instance to the peer.
    Swap(oneshot::Sender<Swapped>),
    /// Restart, enable or disable one application.
    App {
        name: String,
        ask: apps::Ask,
        reply: oneshot::Sender<Result<apps::Ask, apps::UnknownApp>>,
    },
    /// Withdraw one announcement (`name`) or all of them (`None`: the node is drained), or
    /// let it (them) follow the pools again.
    Announce {
        name: Option<String>,
        withdraw: bool,
        reply: oneshot::Sender<Result<Announced, crate::anycast::UnknownAnnouncement>>,
    },
    /// Drain (or enable again) one backend of one pool.
    SetDrained {
        pool: String,
        addr: SocketAddr,
        drained: bool,
        reply: oneshot::Sender<Result<BackendSet, UnknownBackend>>,
    },
}

/// A reload took the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// What the new config holds, or what changed.
    pub summary: String,
    /// Parts that could not be applied (a VRRP instance that did not start, an admin address
    /// that could not be bound); the rest of the config is in force.
    pub notes: Vec<String>,
}

/// Shown as the summary, then each note after a `; `.
impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)?;
        for note in &self.notes {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// A reload refused the config file (or could not bind what it asks for); the node keeps
/// serving the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRejected {
    /// Every reason, as the config check prints them (with file and line).
    pub why: String,
}

impl fmt::Display for ReloadRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

/// What a swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swapped {
    /// The node was master of no instance.
    NothingToHandOver,
    /// The node gives up the master role of this many instances.
    HandingOver { instances: usize },
}

/// Announcements held back (or released) by an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    pub withdrawn: bool,
    /// How many announcements that concerned.
    pub count: usize,
}

/// A backend is now drained (or enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSet {
    pub drained: bool,
}

/// Any command's answer, as the API turns it into a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Reload(Result<Reloaded, ReloadRejected>),
    Swap(Swapped),
    SetDrained(Result<BackendSet, UnknownBackend>),
    App(Result<apps::Ask, apps::UnknownApp>),
    Announce(Result<Announced, crate::anycast::UnknownAnnouncement>),
}

impl Answer {
    /// The status code and body text (the API adds the final newline).
    pub(super) fn response(self) -> (StatusCode, String) {
        match self {
            Answer::Reload(Ok(reloaded)) => (StatusCode::OK, format!("reloaded: {reloaded}")),
            // The request was fine; the file was not. 422: the reason is in the body.
            Answer::Reload(Err(rejected)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("rejected: {rejected}"),
            ),
            Answer::Swap(Swapped::NothingToHandOver) => (
                StatusCode::OK,
                "not master of any instance: nothing to hand over".to_owned(),
            ),
            Answer::Swap(Swapped::HandingOver { instances }) => (
                StatusCode::OK,
                format!("handing {instances} instance(s) over to the peer"),
            ),
            Answer::SetDrained(Ok(BackendSet { drained })) => (
                StatusCode::OK,
                if drained { "drained" } else { "enabled" }.to_owned(),
            ),
            Answer::App(Ok(ask)) => (
                StatusCode::OK,
                match ask {
                    apps::Ask::Restart => "restarting",
                    apps::Ask::Enable => "enabled",
                    apps::Ask::Disable => "disabled",
                }
                .to_owned(),
            ),
            Answer::App(Err(unknown)) => (StatusCode::NOT_FOUND, unknown.to_string()),
            Answer::Announce(Ok(Announced { withdrawn, count })) => (
                StatusCode::OK,
                if withdrawn {
                    format!("withdrawn: {count} announcement(s)")
                } else {
                    format!("following the pools again: {count} announcement(s)")
                },
            ),
            Answer::Announce(Err(unknown)) => (StatusCode::NOT_FOUND, unknown.to_string()),
            Answer::SetDrained(Err(UnknownBackend { pool, addr })) => (
                StatusCode::NOT_FOUND,
                format!("pool {pool:?} has no backend {addr}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies scripts and the end-to-end tests match on, word for word.
    #[test]
    fn every_answer_has_its_status_and_wording() {
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let cases = [
            (
                Answer::Reload(Ok(Reloaded {
                    summary: "1 service".into(),
                    notes: vec!["a".into(), "b".into()],
                })),
                200,
                "reloaded: 1 service; a; b",
            ),
            (
                Answer::Reload(Ok(Reloaded {
                    summary: "1 service".into(),
                    notes: vec![],
                })),
                200,
                "reloaded: 1 service",
            ),
            (
                Answer::Reload(Err(ReloadRejected {
                    why: "tandem.toml:2: bad".into(),
                })),
                422,
                "rejected: tandem.toml:2: bad",
            ),
            (
                Answer::Swap(Swapped::NothingToHandOver),
                200,
                "not master of any instance: nothing to hand over",
            ),
            (
                Answer::Swap(Swapped::HandingOver { instances: 2 }),
                200,
                "handing 2 instance(s) over to the peer",
            ),
            (
                Answer::SetDrained(Ok(BackendSet { drained: true })),
                200,
                "drained",
            ),
            (
                Answer::SetDrained(Ok(BackendSet { drained: false })),
                200,
                "enabled",
            ),
            (
                Answer::SetDrained(Err(UnknownBackend {
                    pool: "we\"b".into(),
                    addr,
                })),
                404,
                "pool \"we\\\"b\" has no backend 10.0.0.1:80",
            ),
            (Answer::App(Ok(apps::Ask::Restart)), 200, "restarting"),
            (
                Answer::App(Err(apps::UnknownApp("db".into()))),
                404,
                "no application named \"db\"",
            ),
        ];
        for (answer, status, body) in cases {
            let (s, b) = answer.response();
            assert_eq!((s.as_u16(), b.as_str()), (status, body));
        }
    }
}
