//! The `tandem` command line: the edge where typed errors become messages and exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::logging::{self, LogFormat};
use crate::{daemon, demo};

#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    version,
    about = "Layer-4 load balancer with VRRP failover"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "TANDEM_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node from a config file (SIGHUP reloads it, SIGTERM drains and exits).
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config file: print every error with its line, or a one-line summary.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Start a node on loopback in front of small built-in web and app backends.
    Demo {
        /// Port of the demo's web service on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        web_port: u16,
        /// Port of the demo's app service on 127.0.0.1.
        #[arg(long, default_value_t = 8081)]
        app_port: u16,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config: path } => {
            logging::init(cli.log_format);
            match config::load(&path) {
                Ok(config) => run(config, &path),
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("tandem: not started: {} has errors", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { web_port, app_port } => {
            logging::init(cli.log_format);
            let runtime = match build_runtime(1) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(demo::run(web_port, app_port)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            println!("{}: OK: {}", path.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            let n = errors.0.len();
            eprintln!(
                "{}: {n} error{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, path: &Path) -> ExitCode {
    let runtime = match build_runtime(config.node.threads) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    raise_fd_limit();
    match runtime.block_on(daemon::run(config, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("not started: {e}");
            eprintln!("tandem: not started: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One thread: a current-thread runtime, everything on the main thread with no cross-thread
/// hand-offs (the fastest placement when the node has a single core to itself). More: a
/// work-stealing runtime with that many workers.
pub fn build_runtime(threads: usize) -> Result<tokio::runtime::Runtime, ExitCode> {
    let built = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    built.map_err(|e| {
        eprintln!("tandem: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Lifts the soft open-files limit to the hard one: each proxied connection holds two
/// descriptors, and the usual soft default of 1024 would cap a node at ~500 connections.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-files limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::debug!(open_files = ?now.current, "open-files limit");
}
