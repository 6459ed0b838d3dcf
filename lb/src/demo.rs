//! `tandem demo`: a node on loopback in front of small built-in backends, so a newcomer sees
//! Tandem balance real traffic with no setup and no root.
//!
//! Two web backends and two app backends run inside the same process, each a tiny HTTP/1.1
//! server on an ephemeral 127.0.0.1 port that says who it is. The node's config is written to
//! a temporary file and served exactly as `tandem run` would serve it, so SIGHUP works too.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{config, node};

/// Largest request head a demo backend reads before giving up on a client.
const MAX_HEAD: usize = 8 * 1024;

pub async fn run(web_port: u16, app_port: u16, admin_port: u16) -> anyhow::Result<()> {
    let web = [spawn_backend("web-1").await?, spawn_backend("web-2").await?];
    let app = [spawn_backend("app-1").await?, spawn_backend("app-2").await?];
    let text = config_text(web_port, app_port, admin_port, web, app);
    let path = config_path();
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let config = config::load(&path).map_err(|e| anyhow::anyhow!("demo config: {e}"))?;

    println!("Tandem demo: a node on loopback in front of built-in backends.");
    println!("  web tier (round robin): {} and {}", web[0], web[1]);
    println!(
        "  app tier (maglev source hashing): {} and {}",
        app[0], app[1]
    );
    println!("Try:");
    println!("  curl http://127.0.0.1:{web_port}/   # again and again: web-1, web-2, web-1 ...");
    println!("  curl http://127.0.0.1:{app_port}/   # always the same app backend for you");
    println!(
        "  curl http://127.0.0.1:{admin_port}/status   # the node's view: services, backends, counters"
    );
    println!("  open http://127.0.0.1:{admin_port}/ in a browser   # the same, live: the console");
    println!(
        "Config: {} (edit it and `kill -HUP {}` to reload)",
        path.display(),
        std::process::id()
    );
    println!("Ctrl-C drains and stops.");
    let result = node::run(config, &path).await;
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| {
        anyhow::anyhow!("{e} (choose other ports with --web-port / --app-port / --admin-port)")
    })
}

fn config_path() -> PathBuf {
    std::env::temp_dir().join(format!("tandem-demo-{}.toml", std::process::id()))
}

fn config_text(
    web_port: u16,
    app_port: u16,
    admin_port: u16,
    web: [SocketAddr; 2],
    app: [SocketAddr; 2],
) -> String {
    format!(
        r#"# Written by `tandem demo`.
[node]
name = "demo"
threads = 1
drain_timeout = "2s"
admin = "127.0.0.1:{admin_port}"

[[service]]
name = "web"
listen = "127.0.0.1:{web_port}"
pool = "web"
balance = "round_robin"

[[service]]
name = "app"
listen = "127.0.0.1:{app_port}"
pool = "app"
balance = "maglev"

[[pool]]
name = "web"
backends = [{{ addr = "{}" }}, {{ addr = "{}" }}]

[[pool]]
name = "app"
backends = [{{ addr = "{}" }}, {{ addr = "{}" }}]
"#,
        web[0], web[1], app[0], app[1]
    )
}

/// Starts one demo backend and returns its address.
async fn spawn_backend(name: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a demo backend on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, name, addr));
            }
        }
    });
    Ok(addr)
}

/// Answers every request on one connection (HTTP/1.1 keep-alive unless the client asks for
/// `Connection: close`) with the backend's name.
async fn answer(mut stream: TcpStream, name: &str, addr: SocketAddr) {
    let body = format!("hello from {name} ({addr})\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&chunk[..n]);
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let close = String::from_utf8_lossy(&head[..end])
                .to_ascii_lowercase()
                .contains("connection: close");
            head.drain(..end + 4);
            if stream.write_all(response.as_bytes()).await.is_err() || close {
                return;
            }
        }
        if head.len() > MAX_HEAD {
            return;
        }
    }
}
