//! The `tandem` command line: the edge where typed errors become messages and exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use hyper::Method;

use crate::admin::AdminClient;
use crate::admin::contract::{self, VrrpInstance};

use crate::config::{self, Config};
use crate::logging::{self, LogFormat};
use crate::{data_threads, demo, node};

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
    /// Show the node's roles, services and backends (from its admin API).
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the JSON document as the API returns it.
        #[arg(long)]
        json: bool,
    },
    /// Hand the master role to the peer (its backup takes over after its skew time).
    Swap {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop sending new connections to a backend; open ones finish (`drain POOL ADDR`). Or
    /// withdraw every `[[anycast]]` announcement of this node (`drain node`).
    Drain {
        #[command(flatten)]
        admin: AdminArgs,
        /// The pool, or the word `node`.
        #[arg(value_name = "POOL|node")]
        pool: String,
        #[arg(value_name = "ADDR")]
        backend: Option<SocketAddr>,
    },
    /// Send new connections to a drained backend again (`enable POOL ADDR`), let a failed
    /// or disabled application run again (`enable app NAME`), or announce a drained node's
    /// addresses again (`enable node`).
    Enable {
        #[command(flatten)]
        admin: AdminArgs,
        /// The pool, or the word `app` or `node`.
        #[arg(value_name = "POOL|app|node")]
        pool: String,
        /// The backend's address, or the application's name.
        #[arg(value_name = "ADDR|NAME")]
        target: Option<String>,
    },
    /// Stop an application and keep it stopped until `enable app NAME` (`disable app NAME`).
    Disable {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(value_parser = ["app"])]
        what: String,
        name: String,
    },
    /// Stop an application and start it again now (`restart app NAME`).
    Restart {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(value_parser = ["app"])]
        what: String,
        name: String,
    },
    /// Make the node re-read its config file, and say whether it took it.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start a node on loopback in front of small built-in web and app backends.
    Demo {
        /// Port of the demo's web service on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        web_port: u16,
        /// Port of the demo's app service on 127.0.0.1.
        #[arg(long, default_value_t = 8081)]
        app_port: u16,
        /// Port of the demo's admin API on 127.0.0.1.
        #[arg(long, default_value_t = 9090)]
        admin_port: u16,
    },
}

/// How the CLI finds a node's admin API.
#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// The node's config: its `[node] admin` address and token are used.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/tandem/tandem.toml"
    )]
    config: PathBuf,
    /// The admin address, instead of the config's.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// The bearer token, instead of the config's.
    #[arg(long, env = "TANDEM_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AdminArgs {
    /// The client, from the flags or else from the config file.
    fn client(&self) -> Result<AdminClient, String> {
        // The config is needed for the address, and for the token when none is given and the
        // file is there; `--admin` alone (reads need no token) works without it.
        let need_config = self.admin.is_none() || (self.token.is_none() && self.config.exists());
        let config = match need_config {
            false => None,
            true => Some(config::load(&self.config).map_err(|e| {
                format!(
                    "{e}\n(reading {}; or pass --admin and --token)",
                    self.config.display()
                )
            })?),
        };
        let addr = match (self.admin, &config) {
            (Some(a), _) => a,
            (None, Some(c)) => c.node.admin.ok_or_else(|| {
                format!(
                    "{}: the admin API is off (admin = \"\")",
                    self.config.display()
                )
            })?,
            (None, None) => unreachable!("the config is read when --admin is missing"),
        };
        // A node listening on every address is reached on loopback.
        let addr = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let token = match (
            &self.token,
            config.as_ref().and_then(|c| c.node.admin_token.as_ref()),
        ) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(t)) => Some(t.resolve().map_err(|e| e.to_string())?),
            (None, None) => None,
        };
        Ok(AdminClient { addr, token })
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Status { admin, json } => admin_call(&admin, Method::GET, "/status", |body| {
            if json {
                body.to_owned()
            } else {
                status_table(body)
            }
        }),
        Command::Swap { admin } => admin_call(&admin, Method::POST, "/swap", str::to_owned),
        Command::Reload { admin } => admin_call(&admin, Method::POST, "/reload", str::to_owned),
        Command::Drain {
            admin,
            pool,
            backend,
        } => {
            let path = match backend {
                Some(backend) => format!("/pools/{pool}/backends/{backend}/drain"),
                None if pool == "node" => "/node/drain".to_owned(),
                None => {
                    eprintln!("tandem: drain POOL ADDR, or drain node");
                    return ExitCode::FAILURE;
                }
            };
            admin_call(&admin, Method::POST, &path, str::to_owned)
        }
        Command::Enable {
            admin,
            pool,
            target,
        } => {
            let Some(target) = target else {
                if pool == "node" {
                    return admin_call(&admin, Method::POST, "/node/enable", str::to_owned);
                }
                eprintln!("tandem: enable POOL ADDR, enable app NAME, or enable node");
                return ExitCode::FAILURE;
            };
            let path = match target.parse::<SocketAddr>() {
                Ok(backend) => format!("/pools/{pool}/backends/{backend}/enable"),
                Err(_) if pool == "app" => format!("/apps/{}/enable", escape_segment(&target)),
                Err(e) => {
                    eprintln!(
                        "tandem: {target:?} is not a backend address ({e}); to enable an application: tandem enable app NAME"
                    );
                    return ExitCode::FAILURE;
                }
            };
            admin_call(&admin, Method::POST, &path, str::to_owned)
        }
        Command::Disable { admin, name, .. } => admin_call(
            &admin,
            Method::POST,
            &format!("/apps/{}/disable", escape_segment(&name)),
            str::to_owned,
        ),
        Command::Restart { admin, name, .. } => admin_call(
            &admin,
            Method::POST,
            &format!("/apps/{}/restart", escape_segment(&name)),
            str::to_owned,
        ),
        Command::Run { config: path } => {
            logging::init(cli.log_format);
            match config::load_checked(&path) {
                Ok(checked) => {
                    for warning in &checked.warnings {
                        tracing::warn!("{warning}");
                    }
                    run(checked.config, &path)
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("tandem: not started: {} has errors", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            web_port,
            app_port,
            admin_port,
        } => {
            logging::init(cli.log_format);
            let runtime = match build_runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(demo::run(web_port, app_port, admin_port)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// One admin request: prints `show(body)` on a 2xx and exits 0; prints the reason and exits 1
/// otherwise.
fn admin_call(
    args: &AdminArgs,
    method: Method,
    path: &str,
    show: impl Fn(&str) -> String,
) -> ExitCode {
    let client = match args.client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match build_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(client.request(method, path)) {
        Ok((status, body)) if (200..300).contains(&status) => {
            print!("{}", ensure_newline(show(&body)));
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("tandem: {status}: {}", ensure_newline(body));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A name as one path segment: bytes other than letters, digits and `-._~` percent-escaped.
fn escape_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ensure_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// `/status` as a few readable tables; the body as it came when it is not a status document.
fn status_table(body: &str) -> String {
    match serde_json::from_str::<contract::Status>(body) {
        Ok(status) => render_status(&status),
        Err(_) => body.to_owned(),
    }
}

/// The tables of [`status_table`]; `-` stands for a value the node does not know.
fn render_status(status: &contract::Status) -> String {
    let dash = || "-".to_owned();
    let mut out = format!("node {}  healthz {}\n", status.node, status.healthz);
    if !status.vrrp.is_empty() {
        out.push_str("\nVRRP       STATE   PRIO  EFFECTIVE  MASTER\n");
        for i in &status.vrrp {
            let (priority, effective, master) = match i {
                VrrpInstance::Running(r) => (
                    r.priority.to_string(),
                    r.effective_priority.to_string(),
                    r.master.map_or_else(dash, |m| m.to_string()),
                ),
                VrrpInstance::NotRunning(_) => (dash(), dash(), dash()),
            };
            out.push_str(&format!(
                "{:<10} {:<7} {:>4}  {:>9}  {}\n",
                i.name(),
                i.state(),
                priority,
                effective,
                master
            ));
            if let VrrpInstance::Running(running) = i
                && let Some(cause) = &running.host_fault
            {
                out.push_str(&format!("{:<10} why: {cause}\n", ""));
            }
        }
    }
    if !status.anycast.is_empty() {
        out.push_str("\nANYCAST    STATE      VIPS                         WHY\n");
        for a in &status.anycast {
            let vips: Vec<String> = a.vips.iter().map(ToString::to_string).collect();
            out.push_str(&format!(
                "{:<10} {:<10} {:<28} {}\n",
                a.name,
                if a.announced {
                    "announced"
                } else {
                    "withdrawn"
                },
                vips.join(","),
                a.error.as_deref().unwrap_or(&a.why)
            ));
        }
    }
    if !status.apps.is_empty() {
        out.push_str(
            "\nAPP        RUN ON              STATE       PID      RESTARTS  LAST ERROR\n",
        );
        for a in &status.apps {
            let run_on = match &a.instance {
                Some(instance) => format!("primary of {instance}"),
                None => a.run_on.clone(),
            };
            let state = if a.disabled {
                format!("{} (disabled)", a.state)
            } else {
                a.state.clone()
            };
            out.push_str(&format!(
                "{:<10} {:<19} {:<11} {:<8} {:>8}  {}\n",
                a.name,
                run_on,
                state,
                a.pid.map_or_else(dash, |p| p.to_string()),
                a.restarts,
                a.last_error.as_deref().unwrap_or("-")
            ));
        }
    }
    out.push_str("\nSERVICE    LISTEN                 ACTIVE  ACCEPTED  REFUSED\n");
    for x in status.services.iter().filter(|x| x.protocol != "udp") {
        out.push_str(&format!(
            "{:<10} {:<22} {:>6}  {:>8}  {:>7}\n",
            x.name,
            x.listen.to_string(),
            x.active,
            x.accepted,
            x.refused
        ));
    }
    let udp: Vec<_> = status
        .services
        .iter()
        .filter(|x| x.protocol == "udp")
        .collect();
    if !udp.is_empty() {
        out.push_str(
            "\nUDP SERVICE LISTEN                 FLOWS   STARTED  DGRAMS IN  DGRAMS OUT  DROPPED\n",
        );
        for x in udp {
            out.push_str(&format!(
                "{:<11} {:<22} {:>5}  {:>8}  {:>9}  {:>10}  {:>7}\n",
                x.name,
                x.listen.to_string(),
                x.active,
                x.accepted,
                x.datagrams_in,
                x.datagrams_out,
                x.drops.values().sum::<u64>()
            ));
        }
    }
    out.push_str(
        "\nPOOL       BACKEND                ROLE     STATE     ACTIVE  TOTAL  LAST ERROR\n",
    );
    for p in &status.pools {
        for b in &p.backends {
            let state = if b.drained {
                "drained"
            } else if b.ejected {
                "ejected"
            } else if b.up {
                "up"
            } else {
                "down"
            };
            let last_error = b.health.as_ref().and_then(|h| h.last_error.as_deref());
            out.push_str(&format!(
                "{:<10} {:<22} {:<8} {:<9} {:>6}  {:>5}  {}\n",
                p.name,
                b.addr.to_string(),
                b.role,
                state,
                b.active,
                b.total,
                last_error.unwrap_or("-")
            ));
        }
    }
    out
}

fn check(path: &Path) -> ExitCode {
    match config::load_checked(path) {
        Ok(checked) => {
            for warning in &checked.warnings {
                eprintln!("{warning}");
            }
            let warned = match checked.warnings.len() {
                0 => String::new(),
                1 => " (1 warning)".to_owned(),
                n => format!(" ({n} warnings)"),
            };
            let summary = checked.config.summary();
            println!("{}: OK: {summary}{warned}", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            let n = errors.total();
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
    let runtime = match build_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    raise_fd_limit();
    match runtime.block_on(node::run(config, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("not started: {e}");
            eprintln!("tandem: not started: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The main thread's runtime: the whole node with `threads = 1`, its control plane with more
/// (the data threads then run runtimes of their own, see [`crate::data_threads`]).
pub fn build_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    data_threads::runtime_for_one_thread().map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's table, from the same typed document the server sends.
    #[test]
    fn the_status_table_renders_from_the_typed_document() {
        let mut status = contract::tests::sample();
        let mut dns = status.services[0].clone();
        dns.name = "dns".into();
        dns.protocol = "udp".into();
        dns.listen = "10.0.0.53:53".parse().unwrap();
        dns.datagrams_in = 1200;
        dns.datagrams_out = 1190;
        dns.drops = [("no_backend".to_owned(), 4), ("max_flows".to_owned(), 6)].into();
        status.services.push(dns);
        let table = render_status(&status);
        let expected = "\
node lb1  healthz secondary

VRRP       STATE   PRIO  EFFECTIVE  MASTER
v4         BACKUP   100         90  10.0.0.2
v6         INIT       -          -  -

ANYCAST    STATE      VIPS                         WHY
front      withdrawn  192.0.2.10                   pool web has 0 usable backend(s), fewer than min_healthy 1

APP        RUN ON              STATE       PID      RESTARTS  LAST ERROR
db         primary of v4       restarting  -               2  the program ended (exit status: 1)

SERVICE    LISTEN                 ACTIVE  ACCEPTED  REFUSED
svc        0.0.0.0:8080                1         5        0

UDP SERVICE LISTEN                 FLOWS   STARTED  DGRAMS IN  DGRAMS OUT  DROPPED
dns         10.0.0.53:53               1         5       1200        1190       10

POOL       BACKEND                ROLE     STATE     ACTIVE  TOTAL  LAST ERROR
web        10.0.0.1:80            primary  up             1      7  connection refused
web        [::1]:80               primary  up             1      7  -
";
        assert_eq!(table, expected);
        let body = serde_json::to_string_pretty(&status).unwrap();
        assert_eq!(status_table(&body), expected);
    }

    /// An instance the host holds in FAULT says why under its row.
    #[test]
    fn the_status_table_says_why_the_host_holds_an_instance_in_fault() {
        let mut status = contract::tests::sample();
        let VrrpInstance::Running(instance) = &mut status.vrrp[0] else {
            panic!("the sample's first instance runs");
        };
        instance.state = "FAULT".into();
        instance.host_fault =
            Some("changing addresses on eth0: denied (needs CAP_NET_ADMIN)".into());
        let table = render_status(&status);
        assert!(
            table.contains(
                "v4         FAULT    100         90  10.0.0.2\n           \
                 why: changing addresses on eth0: denied (needs CAP_NET_ADMIN)\n\
                 v6         INIT"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_body_that_is_not_a_status_document_is_shown_as_it_came() {
        assert_eq!(status_table("{\"node\": 1}"), "{\"node\": 1}");
        assert_eq!(status_table("not json"), "not json");
    }
}
