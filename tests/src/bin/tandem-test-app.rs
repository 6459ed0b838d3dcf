//! A tiny application for the application-HA tests (issue 15): a TCP server that a Tandem
//! node starts, watches, restarts and moves.
//!
//! Each connection first gets the app's name and a newline, then an echo of every byte it
//! sends, as the tests' `common::Backend` does, so `which_backend_within` tells which copy of
//! the app served a client.
//!
//! Flags:
//! - `--listen ADDR`: where to listen (e.g. `0.0.0.0:80`). Required.
//! - `--name NAME`: the line sent to each client. Default `app`.
//! - `--pidfile PATH`: its pid, written once it listens.
//! - `--refuse-if PATH`: exit 1 at once when that file exists (an app that cannot stay up until
//!   the test "fixes the cause" by deleting the file).
//! - `--delay-ms N`: sleep that long before binding (a slow start).
//!
//! It runs until killed; SIGTERM's default action ends it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

struct Args {
    listen: String,
    name: String,
    pidfile: Option<PathBuf>,
    refuse_if: Option<PathBuf>,
    delay: Duration,
}

fn parse() -> Result<Args, String> {
    let mut listen = None;
    let mut name = "app".to_owned();
    let mut pidfile = None;
    let mut refuse_if = None;
    let mut delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--name" => name = value()?,
            "--pidfile" => pidfile = Some(PathBuf::from(value()?)),
            "--refuse-if" => refuse_if = Some(PathBuf::from(value()?)),
            "--delay-ms" => {
                let ms = value()?;
                let ms: u64 = ms.parse().map_err(|e| format!("--delay-ms {ms:?}: {e}"))?;
                delay = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen ADDR is required")?,
        name,
        pidfile,
        refuse_if,
        delay,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("tandem-test-app: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.refuse_if
        && path.exists()
    {
        eprintln!(
            "tandem-test-app {}: refusing to start: {} exists",
            args.name,
            path.display()
        );
        return ExitCode::from(1);
    }
    std::thread::sleep(args.delay);
    let listener = match TcpListener::bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tandem-test-app {}: bind {}: {e}", args.name, args.listen);
            return ExitCode::from(1);
        }
    };
    let pid = std::process::id();
    if let Some(path) = &args.pidfile
        && let Err(e) = std::fs::write(path, format!("{pid}\n"))
    {
        eprintln!("tandem-test-app {}: {}: {e}", args.name, path.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "tandem-test-app {} listening on {} (pid {pid})",
        args.name, args.listen
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let name = args.name.clone();
        std::thread::spawn(move || serve(stream, &name));
    }
    ExitCode::SUCCESS
}

/// The name line, then an echo until the client half-closes (or 30 s of silence).
fn serve(mut stream: TcpStream, name: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
