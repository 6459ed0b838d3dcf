//! The CLI's side of the admin API: one request on a fresh connection.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest the CLI waits for the node (a reload of a big config is the slowest answer).
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin API at {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("admin API at {0} did not answer within {TIMEOUT:?}")]
    Timeout(SocketAddr),
    #[error("invalid request: {0}")]
    Request(String),
}

/// Where the node's admin API is, and the token for mutations.
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl AdminClient {
    /// Sends `method path`; returns the status code and the body as text.
    pub async fn request(&self, method: Method, path: &str) -> Result<(u16, String), ClientError> {
        tokio::time::timeout(TIMEOUT, self.exchange(method, path))
            .await
            .map_err(|_| ClientError::Timeout(self.addr))?
    }

    async fn exchange(&self, method: Method, path: &str) -> Result<(u16, String), ClientError> {
        let addr = self.addr;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string());
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        let http = |source| ClientError::Http { addr, source };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http)?
            .to_bytes();
        driver.abort();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
