//! A whole node driven inside the test's process through [`lb::node::serve`]: the reload and
//! stop triggers are pulled by the test here instead of by signals, so a test can reload and stop a node
//! without a process or a signal to aim. The end-to-end tests in `tests/` still drive the real
//! binary; these check the main loop itself.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::time::Duration;

use lb::node::{self, Triggers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Far above any healthy figure: only a stuck node takes this long.
const PATIENCE: Duration = Duration::from_secs(10);

/// A port free at the time of asking (the node binds it a moment later).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_text(service: &str, port: u16, backend: SocketAddr) -> String {
    format!(
        "[node]\nthreads = 1\nadmin = \"\"\ndrain_timeout = \"1s\"\n\
         [[service]]\nname = \"{service}\"\nlisten = \"127.0.0.1:{port}\"\npool = \"echo\"\n\
         [[pool]]\nname = \"echo\"\nbackends = [{{ addr = \"{backend}\" }}]\n"
    )
}

/// A backend that echoes every connection until the client closes it.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Sends `message` through the node at `port` and returns the echo, retrying the connect
/// while the listener comes up.
async fn echo_through(port: u16, message: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(message).await?;
    let mut echo = vec![0; message.len()];
    stream.read_exact(&mut echo).await?;
    Ok(echo)
}

async fn until_echoes(port: u16) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match echo_through(port, b"ping").await {
            Ok(echo) if echo == b"ping" => return,
            other if tokio::time::Instant::now() > deadline => {
                panic!("no echo through port {port} within {PATIENCE:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_node_in_process_serves_reloads_on_its_trigger_and_stops() {
    // The runtime a node's one thread runs on (its park hook drives the thread's ring).
    let runtime = lb::data_threads::runtime_for_one_thread().unwrap();
    runtime.block_on(async {
        let backend = echo_backend().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        let (first, second) = (free_port(), free_port());
        write_config(&path, &config_text("first", first, backend));
        let config = lb::config::load(&path).unwrap();
        let triggers = Triggers::new();
        // The node's future stays on this thread (it holds the thread's ring), so the test
        // runs beside it rather than spawning it.
        let drive = async {
            until_echoes(first).await;

            // A reload moves the service to another port: the new one serves, the old one is
            // closed.
            write_config(&path, &config_text("second", second, backend));
            triggers.reload();
            until_echoes(second).await;
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while TcpStream::connect(("127.0.0.1", first)).await.is_ok() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "port {first} still accepts after the reload removed its service"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            triggers.stop("the test");
        };
        let (served, ()) = tokio::time::timeout(PATIENCE * 3, async {
            tokio::join!(node::serve(config, &path, triggers.clone()), drive)
        })
        .await
        .expect("the node did not stop on its trigger");
        served.unwrap();
        assert!(
            TcpStream::connect(("127.0.0.1", second)).await.is_err(),
            "a stopped node still accepts"
        );
    });
}
