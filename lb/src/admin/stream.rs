//! `GET /events`: the event log as Server-Sent Events, for the console and for scripts
//! (`curl -N http://127.0.0.1:9090/events`).
//!
//! Each event is one SSE message: `id:` its number, `event:` its kind, `data:` its JSON. A
//! client that reconnects with `Last-Event-ID` (browsers do it by themselves) gets the kept
//! events after that one, then the live ones; a new client gets every kept event first.
//!
//! Bounded in clients and in memory: at most [`MAX_STREAMS`] at once (503 beyond); each has a
//! queue of [`CLIENT_QUEUE`] messages between the log and its socket. A client that does not
//! read fast enough to keep its queue from filling (or to take the kept events within
//! [`REPLAY_TIMEOUT`]) is dropped: its connection is closed, and it may reconnect and resume
//! from its last id. Nothing waits on it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{AdminContext, Reply, text};
use crate::events::Event;

/// Event streams open at once, in all.
pub const MAX_STREAMS: usize = 32;
/// Messages waiting for one client's socket; one more and the client is dropped.
pub const CLIENT_QUEUE: usize = 64;
/// How long a new client has to take the kept events it is sent first.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(5);
/// A comment line this often keeps idle tunnels and proxies from closing the stream, and
/// finds clients that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The streams' counts since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct StreamCounts {
    /// Open now.
    pub open: AtomicUsize,
    /// Closed for reading too slowly.
    pub dropped: AtomicU64,
    /// Refused at [`MAX_STREAMS`].
    pub refused: AtomicU64,
}

/// Closes the connection that carries a request: put in each request's extensions by the
/// listener, used here to drop a slow client.
#[derive(Debug, Clone)]
pub struct Closer(pub CancellationToken);

/// One SSE message.
fn message(event: &Event) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    // JSON never holds a raw line break, so one `data:` line carries it whole.
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.id,
        event.kind.name()
    ))
}

/// Answers `GET /events`.
pub(super) fn open(context: &Arc<AdminContext>, req: &Parts) -> Reply {
    let counts = &context.event_streams;
    if counts.open.fetch_add(1, Relaxed) >= MAX_STREAMS {
        counts.open.fetch_sub(1, Relaxed);
        counts.refused.fetch_add(1, Relaxed);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_STREAMS} event streams at once; retry later"),
        );
    }
    let open = Open(context.clone());
    let after = req
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let subscription = context.events.subscribe(after);
    let closer = req.extensions.get::<Closer>().cloned();
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    tokio::spawn(pump(open, subscription, tx, closer));
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        let bytes = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(bytes)), rx))
    }));
    let mut reply = Response::new(super::boxed(body));
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

/// An open stream, counted until it ends.
struct Open(Arc<AdminContext>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.event_streams.open.fetch_sub(1, Relaxed);
    }
}

/// Moves events from the log to one client's queue until the client leaves, or falls behind
/// and is dropped.
async fn pump(
    open: Open,
    subscription: crate::events::Subscription,
    tx: mpsc::Sender<Bytes>,
    closer: Option<Closer>,
) {
    let crate::events::Subscription { replay, mut live } = subscription;
    // A comment first, so the client sees the stream open at once; then what it missed, which
    // may be more than its queue holds: it must take that within REPLAY_TIMEOUT.
    let replayed = tokio::time::timeout(REPLAY_TIMEOUT, async {
        tx.send(Bytes::from_static(b": tandem events\n\n")).await?;
        for event in &replay {
            tx.send(message(event)).await?;
        }
        Ok::<_, mpsc::error::SendError<Bytes>>(())
    })
    .await;
    let mut sent = match replayed {
        Ok(Ok(())) => Ok(()),
        // The client left.
        Ok(Err(_)) => return,
        Err(_) => Err(mpsc::error::TrySendError::Full(Bytes::new())),
    };
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    while sent.is_ok() {
        sent = tokio::select! {
            () = tx.closed() => return,
            _ = keep_alive.tick() => tx.try_send(Bytes::from_static(b": keep-alive\n\n")),
            received = live.recv() => match received {
                Ok(event) => tx.try_send(message(&event)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Err(mpsc::error::TrySendError::Full(Bytes::new()))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
    }
    if let Err(mpsc::error::TrySendError::Full(_)) = sent {
        open.0.event_streams.dropped.fetch_add(1, Relaxed);
        tracing::info!("an event stream client read too slowly; dropped");
        // Its connection, with whatever hyper and the kernel still hold for it.
        if let Some(Closer(token)) = closer {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn a_message_has_id_kind_and_one_line_of_json() {
        let event = Event {
            id: 7,
            unix_ms: 1,
            node: "lb1".into(),
            kind: EventKind::Reload {
                ok: false,
                detail: "tandem.toml:3:1: bad\nsecond line".into(),
            },
        };
        let text = String::from_utf8(message(&event).to_vec()).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "id: 7");
        assert_eq!(lines[1], "event: reload");
        assert!(lines[2].starts_with("data: {"), "{text}");
        assert_eq!(&lines[3..], ["", ""], "{text}");
        let json: serde_json::Value = serde_json::from_str(&lines[2][6..]).unwrap();
        assert_eq!(json["detail"], "tandem.toml:3:1: bad\nsecond line");
    }
}
