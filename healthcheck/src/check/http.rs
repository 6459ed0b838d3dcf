//! HTTP checks: one request on a fresh connection, judged by status and (optionally) body.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{BODY_LIMIT, CheckError, HttpMethod, StatusMatcher};

/// Aborts the spawned connection driver when the probe ends or is cancelled, so a timed-out
/// probe closes its socket instead of leaving it to the backend.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) async fn http(
    addr: SocketAddr,
    method: HttpMethod,
    path: &str,
    host: Option<&str>,
    expect: &StatusMatcher,
    body: Option<&str>,
) -> Result<(), CheckError> {
    if !path.starts_with('/') {
        return Err(CheckError::InvalidSpec(format!(
            "http path {path:?} must start with /"
        )));
    }
    let request = hyper::Request::builder()
        .method(method.as_hyper())
        .uri(path)
        .header(HOST, host.map_or_else(|| addr.to_string(), str::to_owned))
        .header(
            USER_AGENT,
            concat!("tandem-healthcheck/", env!("CARGO_PKG_VERSION")),
        )
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckError::InvalidSpec(format!("http request for {path:?}: {e}")))?;

    let stream = TcpStream::connect(addr)
        .await
        .map_err(CheckError::Connect)?;
    // Small requests: send them now rather than wait for an ACK (Nagle). Not fatal if refused.
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(CheckError::Http)?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        // Its errors also surface through `send_request` or the body, where they are reported.
        let _ = connection.await;
    }));

    let response = sender
        .send_request(request)
        .await
        .map_err(CheckError::Http)?;
    let status = response.status().as_u16();
    if !expect.matches(status) {
        return Err(CheckError::Status {
            got: status,
            expected: expect.to_string(),
        });
    }
    let Some(needle) = body else {
        return Ok(());
    };
    let mut body = response.into_body();
    let mut seen = Vec::new();
    while seen.len() < BODY_LIMIT {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame.map_err(CheckError::Http)?.into_data() else {
            continue; // trailers
        };
        let take = data.len().min(BODY_LIMIT - seen.len());
        seen.extend_from_slice(&data[..take]);
        if contains(&seen, needle.as_bytes()) {
            return Ok(());
        }
    }
    Err(CheckError::Body {
        expected: needle.to_owned(),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
