//! TCP checks: a connect, optionally a send and an expected reply prefix.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CheckError, QUOTE_LIMIT};

pub(super) async fn tcp(
    addr: SocketAddr,
    send: Option<&[u8]>,
    expect: Option<&[u8]>,
) -> Result<(), CheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(CheckError::Connect)?;
    if let Some(bytes) = send {
        stream.write_all(bytes).await.map_err(CheckError::Io)?;
    }
    let Some(expect) = expect else {
        return Ok(());
    };
    let mut got = vec![0; expect.len()];
    let mut filled = 0;
    while filled < expect.len() {
        let n = stream
            .read(&mut got[filled..])
            .await
            .map_err(CheckError::Io)?;
        if n == 0 {
            break;
        }
        filled += n;
        // Stop at the first wrong byte: no need to wait for the rest of a wrong reply.
        if got[..filled] != expect[..filled] {
            break;
        }
    }
    got.truncate(filled);
    if got == expect {
        Ok(())
    } else {
        Err(CheckError::Expect {
            expected: quote(expect),
            got: quote(&got),
        })
    }
}

/// Printable excerpt of raw bytes for an error message.
pub(super) fn quote(bytes: &[u8]) -> String {
    let mut s = bytes[..bytes.len().min(QUOTE_LIMIT)]
        .escape_ascii()
        .to_string();
    if bytes.len() > QUOTE_LIMIT {
        s.push_str("...");
    }
    s
}
