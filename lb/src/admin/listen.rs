//! An admin listener's accept loop and its connections, built so that a flood on the port
//! cannot starve the health check of a load balancer in front.
//!
//! - Accepting never waits for a free place: the kernel's queue is kept empty, so a new
//!   connection is seen at once. Each one is admitted by [`Admission`] (a cap in all and per
//!   source address; at a cap the oldest connection still waiting for a request is closed to
//!   make room, so newcomers get in and the flood pays for itself).
//! - A connection that has sent nothing holds its socket and a small task, no buffer: hyper
//!   (and its 8 KiB read buffer) takes it over when its first bytes arrive.
//! - Its first request head must be complete within [`FIRST_HEAD_TIMEOUT`] of the accept (plus
//!   a random share of [`FIRST_HEAD_SPREAD`], so that a flood opened at once is not closed at
//!   once), and each later one within [`KEEP_ALIVE_TIMEOUT`] of the previous answer (slowloris
//!   and idle keep-alive cost seconds, not minutes).
//! - `/status` and `/metrics`, which walk the whole config, are built off the listener's
//!   thread, one at a time ([`ReportGate`]), so `/healthz` is never queued behind them.
//!
//! The optional health listener (`[node] healthz_listen`) is the same loop on a thread of its
//! own with a smaller budget, serving only the health path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AdminContext;
use super::admission::{Admission, Budget, Refused};
use super::rejection::{RejectedRequests, Rejection};
use super::stream::Closer;
use crate::logging::Throttle;

/// A new connection's first request head must be complete this long after its accept; a
/// connection that sends nothing is closed then, or up to [`FIRST_HEAD_SPREAD`] later.
pub const FIRST_HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Each connection's first-head deadline is later by a random share of this, so a flood opened
/// at once is not closed at once: a wave of thousands of closes would hold the listener's
/// thread (each costs it the TCP teardown) while a health check waits in the accept queue.
pub const FIRST_HEAD_SPREAD: Duration = Duration::from_secs(1);
/// A kept-alive connection's next request head must be complete this long after the previous
/// answer (hyper's header read timeout).
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// A request body (mutations carry none) must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// `/status` and `/metrics` requests waiting for their turn beyond the one being built; more
/// are answered 503 at once.
const MAX_QUEUED_REPORTS: usize = 32;
/// The kernel's send buffer of each admin connection (it doubles it for its bookkeeping).
pub const SEND_BUFFER: usize = 64 * 1024;

/// Which admin listener: the whole API, or the health path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `[node] admin`: every endpoint.
    Admin,
    /// `[node] healthz_listen`: only `healthz_path`, for a load balancer in front.
    Healthz,
}

impl Endpoint {
    /// Its name in logs, thread names and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Admin => "admin",
            Endpoint::Healthz => "healthz",
        }
    }

    /// How many connections it holds. The admin port admits thousands (an idle one costs a
    /// socket and a small task), a source at most a sixteenth of them; the health listener
    /// serves a handful of checkers.
    pub fn budget(self) -> Budget {
        match self {
            Endpoint::Admin => Budget {
                connections: 4096,
                per_source: 256,
            },
            Endpoint::Healthz => Budget {
                connections: 256,
                per_source: 64,
            },
        }
    }
}

/// What the admin listeners share across restarts (a reload that moves an address): their
/// counts and the gate `/status` and `/metrics` pass.
#[derive(Debug, Default)]
pub struct Listeners {
    pub admin: ConnectionCounts,
    pub healthz: ConnectionCounts,
    pub reports: ReportGate,
}

impl Listeners {
    pub fn counts(&self, endpoint: Endpoint) -> &ConnectionCounts {
        match endpoint {
            Endpoint::Admin => &self.admin,
            Endpoint::Healthz => &self.healthz,
        }
    }
}

/// One admin listener's connections and rejected requests since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    pub accepted: AtomicU64,
    /// Closed to make room for a newer one (the oldest still waiting for a request, at a cap).
    pub evicted: AtomicU64,
    /// Closed at once: every connection of its source, or of the listener, was busy.
    pub refused: AtomicU64,
    /// Closed for not sending a whole request head in time.
    pub head_timeouts: AtomicU64,
    /// Shed connections, said in one line at most every 10 s.
    shed_log: Mutex<Throttle>,
    /// Requests answered with a refusal (a bad token, no such endpoint, not HTTP, ...).
    pub rejected: RejectedRequests,
}

impl ConnectionCounts {
    fn shed(&self, endpoint: Endpoint, counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
        let due = self
            .shed_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(Instant::now());
        if let Some(count) = due {
            tracing::warn!(
                listener = endpoint.as_str(),
                shed = count,
                evicted = self.evicted.load(Relaxed),
                refused = self.refused.load(Relaxed),
                head_timeouts = self.head_timeouts.load(Relaxed),
                "{} listener is shedding connections: {count} since its last such line (at most \
                 one per 10 s; evicted, refused and head_timeouts are totals since start)",
                endpoint.as_str()
            );
        }
    }
}

/// `/status` and `/metrics` are built on tokio's blocking threads, one at a time, with at most
/// [`MAX_QUEUED_REPORTS`] waiting: a node with a large config (or a client asking in a loop)
/// never holds the listener's thread, where `/healthz` is answered.
#[derive(Debug)]
pub struct ReportGate {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl Default for ReportGate {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(1)),
            queued: AtomicUsize::new(0),
        }
    }
}

impl ReportGate {
    /// `report` of `context`, or `None` when too many wait already.
    pub(super) async fn run(
        &self,
        context: &Arc<AdminContext>,
        report: fn(&AdminContext) -> String,
    ) -> Option<String> {
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Relaxed);
            }
        }
        let queued = Queued(&self.queued);
        if self.queued.fetch_add(1, Relaxed) >= MAX_QUEUED_REPORTS {
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        drop(queued);
        let context = context.clone();
        // The permit goes with the work: a client that leaves does not let a second report
        // start beside one still running.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            report(&context)
        })
        .await
        .ok()
    }
}

/// The listener's connections, each with the handle that closes it (its task's).
type Table = Arc<Mutex<Admission<Option<AbortHandle>>>>;

fn lock(table: &Table) -> std::sync::MutexGuard<'_, Admission<Option<AbortHandle>>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves `endpoint` on `listener` until `stop` is cancelled. Connections still open then
/// end with the listener's runtime, which drops their tasks.
pub(super) async fn serve(
    listener: TcpListener,
    context: Arc<AdminContext>,
    endpoint: Endpoint,
    stop: CancellationToken,
) {
    let table: Table = Arc::new(Mutex::new(Admission::new(endpoint.budget())));
    let counts = context.listeners.counts(endpoint);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(listener = endpoint.as_str(), error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let accepted_at = Instant::now();
        // A fixed send buffer (no autotuning up to megabytes): what a client leaves unread
        // stays small, and an event stream's client that stops reading is found out soon.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let admitted = lock(&table).admit(peer.ip(), None);
        let id = match admitted {
            Ok((id, evicted)) => {
                if let Some(evicted) = evicted.flatten() {
                    // Its task is dropped at its next turn, and its socket closed with it.
                    evicted.abort();
                    counts.shed(endpoint, &counts.evicted);
                }
                id
            }
            Err(why) => {
                // Closed at once, with a reset: nothing will be read from it.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                counts.shed(endpoint, &counts.refused);
                tracing::debug!(listener = endpoint.as_str(), client = %peer,
                    full = matches!(why, Refused::Full), "admin connection refused");
                continue;
            }
        };
        counts.accepted.fetch_add(1, Relaxed);
        let connection = Connection {
            context: context.clone(),
            endpoint,
            table: table.clone(),
            id,
            peer,
        };
        let task = tokio::spawn(connection.run(stream, accepted_at));
        // Set before the next admission, the only place that evicts. (Not under the lock
        // across the spawn: a task dropped at once, as at shutdown, takes it to leave.)
        if let Some(handle) = lock(&table).handle_mut(id) {
            *handle = Some(task.abort_handle());
        }
    }
}

/// One admitted connection; leaves the table when its task ends or is dropped.
struct Connection {
    context: Arc<AdminContext>,
    endpoint: Endpoint,
    table: Table,
    id: u64,
    peer: SocketAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        lock(&self.table).closed(self.id);
    }
}

impl Connection {
    async fn run(self, stream: TcpStream, accepted_at: Instant) {
        let spread = FIRST_HEAD_SPREAD.mul_f64(fastrand::f64());
        let first_head = accepted_at + FIRST_HEAD_TIMEOUT + spread;
        // Until its first bytes arrive the connection holds no buffer. (A peek, not
        // `readable`, which may wake without data: hyper would take a silent connection over.)
        let mut byte = [0u8; 1];
        let arrived = tokio::select! {
            biased;
            peeked = stream.peek(&mut byte) => peeked.is_ok(),
            () = tokio::time::sleep_until(first_head) => {
                let counts = self.context.listeners.counts(self.endpoint);
                counts.shed(self.endpoint, &counts.head_timeouts);
                false
            }
        };
        if arrived {
            // Boxed: the HTTP machinery is allocated only for connections that speak.
            Box::pin(self.requests(stream, first_head)).await;
        }
    }

    /// Serves requests with hyper until the connection ends (or its task is dropped).
    async fn requests(&self, stream: TcpStream, first_head: Instant) {
        let started = Arc::new(AtomicBool::new(false));
        // Cancelled to close the connection at once (an event stream's slow client).
        let closer = CancellationToken::new();
        let service = {
            let (context, table, started) =
                (self.context.clone(), self.table.clone(), started.clone());
            let (endpoint, id, peer) = (self.endpoint, self.id, self.peer);
            let closer = closer.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let (context, table) = (context.clone(), table.clone());
                req.extensions_mut().insert(Closer(closer.clone()));
                started.store(true, Relaxed);
                lock(&table).busy(id);
                async move {
                    let (method, uri) = (req.method().clone(), req.uri().clone());
                    let reply = super::handle(&context, endpoint, req).await;
                    if let Some(why) = reply.extensions().get::<Rejection>() {
                        let request = Some((method.as_str(), uri.path()));
                        let counts = context.listeners.counts(endpoint);
                        counts.rejected.record(endpoint, *why, peer, request);
                    }
                    lock(&table).waiting(id);
                    Ok::<_, Infallible>(reply)
                }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .max_buf_size(super::MAX_HEAD)
            .timer(TokioTimer::new())
            .header_read_timeout(KEEP_ALIVE_TIMEOUT);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let counts = self.context.listeners.counts(self.endpoint);
        let first_head_due = tokio::time::sleep_until(first_head);
        tokio::pin!(first_head_due);
        let served = async {
            tokio::select! {
                biased;
                ended = connection.as_mut() => Some(ended),
                () = &mut first_head_due => {
                    if !started.load(Relaxed) {
                        counts.shed(self.endpoint, &counts.head_timeouts);
                        return None;
                    }
                    Some(connection.as_mut().await)
                }
            }
        };
        let ended = tokio::select! {
            biased;
            () = closer.cancelled() => return,
            ended = served => match ended {
                Some(ended) => ended,
                None => return,
            },
        };
        // Malformed requests end here, with hyper's own 400 or 431 sent.
        if let Err(e) = ended {
            let rejected = if e.is_parse_too_large() {
                Some(Rejection::TooLarge)
            } else if e.is_parse() {
                Some(Rejection::Malformed)
            } else {
                None
            };
            if let Some(why) = rejected {
                counts.rejected.record(self.endpoint, why, self.peer, None);
            }
            // A kept-alive connection closed after its answers is routine; one that never
            // completed a request is the kind a flood is made of.
            if e.is_timeout() && !started.load(Relaxed) {
                counts.shed(self.endpoint, &counts.head_timeouts);
            }
            tracing::debug!(listener = self.endpoint.as_str(), client = %self.peer,
                error = %e, "admin connection ended");
        }
    }
}
