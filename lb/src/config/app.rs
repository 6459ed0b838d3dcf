//! The `[[app]]` tables: an operator's application that the pair keeps alive (issue 15).
//!
//! Holds the checked type ([`AppConfig`]), the raw form as written and the checks: a unique
//! name, a start program given by absolute path or found on `PATH`, where it runs (`run_on`:
//! the primary of a `[[vrrp]]` instance only, or every node), its health checks (the `health`
//! kinds, against local ports), its restart policy, and what its failure does to the role
//! (FAULT, or a priority `weight`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::health::{HealthConfig, RawHealth};
use super::validate::Validator;
use super::values;
use super::vrrp::RawVrrp;

const DEFAULT_MAX_RESTARTS: u32 = 3;
const DEFAULT_WITHIN: Duration = Duration::from_secs(300);
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One application (`[[app]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub name: String,
    /// The program and its arguments (no shell).
    pub start: Vec<String>,
    /// How to stop it; `None`: SIGTERM to its process group, SIGKILL after `stop_timeout`.
    pub stop: Option<Vec<String>>,
    pub run_on: RunOn,
    /// Its health checks, all of which must pass; none: it is healthy while it runs.
    pub checks: Vec<HealthConfig>,
    pub restart: apps::Policy,
    /// How long a stop may take before the group is killed. Default 10s.
    pub stop_timeout: Duration,
    /// With `run_on = "primary"`: a failed app lowers its instance's priority by this much
    /// (as a tracked pool does) instead of putting it in FAULT.
    pub weight: Option<u8>,
    /// A reload that changes the table restarts a running app at once, rather than at its
    /// next start.
    pub restart_on_change: bool,
}

/// Where an application runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOn {
    /// Only on the node that is master of this `[[vrrp]]` instance (mirror mode): started on
    /// becoming master, stopped otherwise; when it cannot be kept up, the node gives the role up.
    Primary { instance: String },
    /// On every node, whatever its role (farm mode).
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub name: Spanned<String>,
    pub start: Option<Spanned<Vec<Spanned<String>>>>,
    pub stop: Option<Spanned<Vec<Spanned<String>>>>,
    pub run_on: Option<Spanned<String>>,
    pub instance: Option<Spanned<String>>,
    #[serde(default)]
    pub checks: Vec<Spanned<RawHealth>>,
    pub restart: Option<Spanned<RawRestart>>,
    pub start_timeout: Option<Spanned<String>>,
    pub stop_timeout: Option<Spanned<String>>,
    pub reset_after: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
    pub restart_on_change: Option<Spanned<bool>>,
}

/// `restart = { max = 3, within = "5m", backoff = "1s", backoff_max = "30s" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    pub max: Option<Spanned<i64>>,
    pub within: Option<Spanned<String>>,
    pub backoff: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
}

impl Validator<'_> {
    pub(crate) fn apps(
        &mut self,
        raw: &[Spanned<RawApp>],
        vrrp: &[Spanned<RawVrrp>],
    ) -> Vec<AppConfig> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut apps = Vec::with_capacity(raw.len());
        for spanned in raw {
            let r = spanned.get_ref();
            let name = r.name.get_ref();
            self.name("app", &r.name);
            if let Some(&line) = names.get(name.as_str()) {
                let message = format!("duplicate app name {name:?}; first defined at line {line}");
                self.error(r.name.span(), message);
            } else {
                names.insert(name, self.line_of(&r.name.span()));
            }
            if let Some(app) = self.app(r, spanned.span(), vrrp) {
                apps.push(app);
            }
        }
        apps
    }

    fn app(
        &mut self,
        r: &RawApp,
        table: std::ops::Range<usize>,
        vrrp: &[Spanned<RawVrrp>],
    ) -> Option<AppConfig> {
        let start = match &r.start {
            Some(start) => self.program("start", start),
            None => {
                self.error(table.clone(), "app needs `start`: the program to run, e.g. [\"/usr/local/bin/app\", \"--serve\"]".to_owned());
                None
            }
        };
        let stop = r.stop.as_ref().and_then(|stop| self.program("stop", stop));
        let run_on = self.run_on(r, table.clone(), vrrp);
        let checks: Vec<HealthConfig> = r
            .checks
            .iter()
            .filter_map(|check| self.app_check(check))
            .collect();
        let raw_restart = r.restart.as_ref().map(Spanned::get_ref);
        let restart_key = |key: &str| format!("restart.{key}");
        let max_restarts = self.int(
            &restart_key("max"),
            &raw_restart.and_then(|x| x.max.clone()),
            0..=1000,
            DEFAULT_MAX_RESTARTS,
        );
        let within = self.duration(
            &restart_key("within"),
            &raw_restart.and_then(|x| x.within.clone()),
            DEFAULT_WITHIN,
            true,
        );
        let backoff = self.duration(
            &restart_key("backoff"),
            &raw_restart.and_then(|x| x.backoff.clone()),
            DEFAULT_BACKOFF,
            false,
        );
        let backoff_max = self.duration(
            &restart_key("backoff_max"),
            &raw_restart.and_then(|x| x.backoff_max.clone()),
            DEFAULT_BACKOFF_MAX.max(backoff),
            false,
        );
        if backoff_max < backoff {
            let span = raw_restart
                .and_then(|x| x.backoff_max.as_ref())
                .map_or(table.clone(), |s| s.span());
            self.error(
                span,
                "restart.backoff_max is shorter than restart.backoff".to_owned(),
            );
        }
        let start_timeout = self.duration(
            "start_timeout",
            &r.start_timeout,
            DEFAULT_START_TIMEOUT,
            true,
        );
        let stop_timeout =
            self.duration("stop_timeout", &r.stop_timeout, DEFAULT_STOP_TIMEOUT, true);
        let reset_after = r
            .reset_after
            .as_ref()
            .map(|d| self.duration("reset_after", &Some(d.clone()), Duration::ZERO, true));
        if run_on == Some(RunOn::All) && max_restarts == 0 && reset_after.is_none() {
            // Nobody would ever run it again: there is no peer to hand over to.
            let span = raw_restart
                .and_then(|x| x.max.as_ref())
                .map_or(table.clone(), |s| s.span());
            let message = "restart.max = 0 with run_on = \"all\" and no reset_after: the first \
                           failure would stop it for good, with no peer to take over"
                .to_owned();
            self.error(span, message);
        }
        let weight = r.weight.as_ref().map(|w| {
            if !matches!(run_on, Some(RunOn::Primary { .. })) {
                let message = "weight is for run_on = \"primary\": it lowers the priority of \
                               the instance the app is bound to"
                    .to_owned();
                self.error(w.span(), message);
            }
            self.int("weight", &Some(w.clone()), 1..=254, 1)
        });
        Some(AppConfig {
            name: r.name.get_ref().clone(),
            start: start?,
            stop,
            run_on: run_on?,
            checks,
            restart: apps::Policy {
                max_restarts,
                within,
                backoff,
                backoff_max,
                start_timeout,
                reset_after,
            },
            stop_timeout,
            weight,
            restart_on_change: r.restart_on_change.as_ref().is_some_and(|b| *b.get_ref()),
        })
    }

    /// A program and its arguments: not empty, and the program absolute or found on `PATH`
    /// (an absolute path may be installed later, so it is not required to exist yet).
    fn program(&mut self, key: &str, raw: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
        let argv: Vec<String> = raw.get_ref().iter().map(|a| a.get_ref().clone()).collect();
        let Some(program) = raw.get_ref().first() else {
            let message = format!("{key} is empty; give the program and its arguments");
            self.error(raw.span(), message);
            return None;
        };
        let name = program.get_ref();
        let path = Path::new(name);
        if name.is_empty() {
            self.error(program.span(), format!("{key}: the program name is empty"));
            return None;
        }
        for arg in raw.get_ref() {
            if let Err(message) = values::argument(key, arg.get_ref()) {
                self.error(arg.span(), message);
                return None;
            }
        }
        if !path.is_absolute() && !on_path(name) {
            let message =
                format!("{key}: program {name:?} is not an absolute path and is not found on PATH");
            self.error(program.span(), message);
            return None;
        }
        Some(argv)
    }

    fn run_on(
        &mut self,
        r: &RawApp,
        table: std::ops::Range<usize>,
        vrrp: &[Spanned<RawVrrp>],
    ) -> Option<RunOn> {
        let run_on = r
            .run_on
            .as_ref()
            .map_or("primary", |s| s.get_ref().as_str());
        match run_on {
            "all" => {
                if let Some(instance) = &r.instance {
                    let message = "instance is for run_on = \"primary\"; an app that runs on \
                                   every node follows no role"
                        .to_owned();
                    self.error(instance.span(), message);
                }
                Some(RunOn::All)
            }
            "primary" => {
                let Some(instance) = &r.instance else {
                    let message = "run_on = \"primary\" needs `instance`: the [[vrrp]] \
                                   instance whose master runs the app"
                        .to_owned();
                    self.error(table, message);
                    return None;
                };
                if !self.vrrp_defined(instance.get_ref()) {
                    let defined = self.defined_instances(vrrp);
                    let message = format!(
                        "instance {:?} is not defined; {defined}",
                        instance.get_ref()
                    );
                    self.error(instance.span(), message);
                    return None;
                }
                Some(RunOn::Primary {
                    instance: instance.get_ref().clone(),
                })
            }
            other => {
                let span = r.run_on.as_ref().map_or(table, |s| s.span());
                let message = format!("run_on must be \"primary\" or \"all\", not {other:?}");
                self.error(span, message);
                None
            }
        }
    }

    /// One check, as a backend's `health` table, against this node: tcp and http need the
    /// local `port` they probe.
    fn app_check(&mut self, raw: &Spanned<RawHealth>) -> Option<HealthConfig> {
        let r = raw.get_ref();
        let kind = r.kind.as_ref().map(|k| k.get_ref().as_str());
        if matches!(kind, Some("tcp" | "http")) && r.port.is_none() {
            let message = format!(
                "a {} check of an app needs `port`: the local port it probes",
                kind.unwrap_or_default()
            );
            self.error(raw.span(), message);
            return None;
        }
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let check = self.health(r, raw.span(), local)?;
        // The data plane never sees an app, so passive ejection means nothing here.
        Some(HealthConfig {
            eject_after: 0,
            ..check
        })
    }
}

/// Whether `name` is an executable file in one of `PATH`'s directories.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        // A relative path with a directory part: relative to whatever the daemon's working
        // directory happens to be. Refused rather than guessed.
        return false;
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests;
