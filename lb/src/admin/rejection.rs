//! Requests the admin API turned away, and why: each is counted by reason (for `/metrics`) and
//! the lot logged through a [`Throttle`], so thousands of bad requests leave a trace without
//! flooding the log.
//!
//! A rejection is marked where the answer is made ([`Rejection::reply`] puts the reason in the
//! response's extensions, which never go on the wire) and recorded in one place, the listener,
//! which knows the client. Answers to well-formed, authorised requests (a backend not in the
//! pool, a config the reload refused) are not rejections.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hyper::StatusCode;
use tokio::time::Instant;

use super::Endpoint;
use crate::logging::Throttle;

/// Why a request was turned away; its `as_str` labels `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A mutation without the right bearer token (401).
    BadToken,
    /// A mutation on a node without `admin_token` (403).
    NoToken,
    /// No such endpoint (404).
    NotFound,
    /// An endpoint asked with the wrong method (405).
    Method,
    /// Not HTTP, or a body that does not parse (a bad chunk) (400).
    Malformed,
    /// A head over 8 KiB (431) or a body over 64 KiB (413).
    TooLarge,
    /// A body that did not arrive in time (408).
    BodyTimeout,
    /// Too many `/status` and `/metrics` requests waiting already (503).
    Busy,
}

impl Rejection {
    pub const ALL: [Rejection; 8] = [
        Rejection::BadToken,
        Rejection::NoToken,
        Rejection::NotFound,
        Rejection::Method,
        Rejection::Malformed,
        Rejection::TooLarge,
        Rejection::BodyTimeout,
        Rejection::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BadToken => "bad_token",
            Rejection::NoToken => "no_token",
            Rejection::NotFound => "not_found",
            Rejection::Method => "method",
            Rejection::Malformed => "malformed",
            Rejection::TooLarge => "too_large",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::Busy => "busy",
        }
    }

    /// The status it is answered with; a head too large is hyper's 431, answered before a
    /// request exists.
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::BadToken => StatusCode::UNAUTHORIZED,
            Rejection::NoToken => StatusCode::FORBIDDEN,
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::Method => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::Malformed => StatusCode::BAD_REQUEST,
            Rejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer, marked with this reason for the listener to record.
    pub(super) fn reply(self, body: impl Into<String>) -> super::Reply {
        let mut reply = super::text(self.status(), body);
        reply.extensions_mut().insert(self);
        reply
    }
}

/// How much of a request's path a log line shows.
const PATH_SHOWN: usize = 64;

/// One listener's rejected requests since start.
#[derive(Debug, Default)]
pub struct RejectedRequests {
    counts: [AtomicU64; Rejection::ALL.len()],
    log: Mutex<Throttle>,
}

impl RejectedRequests {
    /// Requests turned away for `why` since start.
    pub fn count(&self, why: Rejection) -> u64 {
        self.counts[why as usize].load(Relaxed)
    }

    /// Counts one, and logs (throttled) how many came since the last line, with this one as
    /// the example: `request` is its method and path, when it got that far.
    pub(super) fn record(
        &self,
        endpoint: Endpoint,
        why: Rejection,
        client: SocketAddr,
        request: Option<(&str, &str)>,
    ) {
        self.counts[why as usize].fetch_add(1, Relaxed);
        let due = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(Instant::now());
        let Some(count) = due else {
            return;
        };
        let listener = endpoint.as_str();
        let example = match request {
            Some((method, path)) => {
                let shown: String = path.chars().take(PATH_SHOWN).collect();
                let more = if shown.len() < path.len() { "..." } else { "" };
                format!("{method} {shown:?}{more}")
            }
            None => "a request that did not parse".to_owned(),
        };
        tracing::warn!(
            listener,
            rejected = count,
            reason = why.as_str(),
            %client,
            "{listener} listener rejected {count} request(s) since its last such line (at most \
             one per 10 s; by reason in tandem_admin_requests_rejected_total); the latest: \
             {} ({}) for {example} from {client}",
            why.as_str(),
            why.status().as_u16(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_count_label_and_status() {
        let rejected = RejectedRequests::default();
        let client = "127.0.0.1:5000".parse().unwrap();
        for (i, why) in Rejection::ALL.into_iter().enumerate() {
            assert_eq!(why as usize, i, "ALL is in declaration order");
            for _ in 0..=i {
                rejected.record(Endpoint::Admin, why, client, Some(("GET", "/x")));
            }
            assert!(why.status().is_client_error() || why == Rejection::Busy);
        }
        for (i, why) in Rejection::ALL.into_iter().enumerate() {
            assert_eq!(rejected.count(why), i as u64 + 1, "{}", why.as_str());
        }
        let labels: std::collections::HashSet<_> =
            Rejection::ALL.iter().map(|w| w.as_str()).collect();
        assert_eq!(labels.len(), Rejection::ALL.len());
    }

    #[test]
    fn a_rejection_reply_carries_its_reason_and_status() {
        let reply = Rejection::BadToken.reply("a valid bearer token is required");
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.extensions().get::<Rejection>(),
            Some(&Rejection::BadToken)
        );
    }
}
