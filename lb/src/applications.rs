//! The node's part in application HA: what the `apps` crate runs is decided here, from the
//! `[[app]]` tables and the election.
//!
//! - Each table becomes an [`AppSpec`]: `{app}`, `{node}`, `{instance}` and `{role}` filled in
//!   its argv, `TANDEM_*` variables in its environment, its checks as `healthcheck` runs them.
//! - Each application's role input: a mirror application (`run_on = "primary"`) runs while
//!   this node is MASTER of its instance and no swap holds it back; a farm application
//!   (`run_on = "all"`) always.
//! - Each mirror application's failure goes to the election as an [`AppFailure`] (see
//!   `failover`): its instance gives the role up, so the peer starts its copy.

use std::collections::BTreeMap;

use apps::{AppSpec, AppStatus, Apps, Check};
use healthcheck::status::Thresholds;
use tokio::sync::watch;
use vrrp::instance::Status;

use crate::config::{AppConfig, RunOn};
use crate::failover::AppFailure;
use crate::health::check_spec;
use crate::tasks::Tasks;

/// Each application's status channel, by name (replaced on reload).
pub type AppStatuses = BTreeMap<String, watch::Receiver<AppStatus>>;

/// The `apps` crate's view of each table of `configs`, on node `node`.
pub fn specs(node: &str, configs: &[AppConfig]) -> Vec<AppSpec> {
    configs.iter().map(|c| spec(node, c)).collect()
}

fn spec(node: &str, c: &AppConfig) -> AppSpec {
    let (role, instance) = match &c.run_on {
        RunOn::Primary { instance } => ("primary", instance.as_str()),
        RunOn::All => ("all", ""),
    };
    let fill = |argv: &[String]| -> Vec<String> {
        argv.iter()
            .map(|arg| {
                arg.replace("{app}", &c.name)
                    .replace("{node}", node)
                    .replace("{instance}", instance)
                    .replace("{role}", role)
            })
            .collect()
    };
    let mut env = vec![
        ("TANDEM_APP".to_owned(), c.name.clone()),
        ("TANDEM_NODE".to_owned(), node.to_owned()),
        ("TANDEM_ROLE".to_owned(), role.to_owned()),
    ];
    if !instance.is_empty() {
        env.push(("TANDEM_INSTANCE".to_owned(), instance.to_owned()));
    }
    AppSpec {
        name: c.name.clone(),
        start: fill(&c.start),
        stop: c.stop.as_deref().map(fill),
        env,
        checks: c
            .checks
            .iter()
            .map(|h| Check {
                spec: check_spec(h),
                interval: h.interval,
                timeout: h.timeout,
                thresholds: Thresholds {
                    rise: h.rise,
                    fall: h.fall,
                },
            })
            .collect(),
        policy: c.restart.clone(),
        stop_timeout: c.stop_timeout,
        restart_on_change: c.restart_on_change,
    }
}

/// The instance a table binds its application to, if it runs on the primary only.
pub fn instance_of(config: &AppConfig) -> Option<&str> {
    match &config.run_on {
        RunOn::Primary { instance } => Some(instance),
        RunOn::All => None,
    }
}

/// What the election sees of each mirror application of `configs` running in `apps`.
pub fn failures(configs: &[AppConfig], apps: &Apps) -> Vec<AppFailure> {
    let failed = apps.failures();
    configs
        .iter()
        .filter_map(|c| {
            Some(AppFailure {
                app: c.name.clone(),
                instance: instance_of(c)?.to_owned(),
                weight: c.weight,
                failed: failed.get(&c.name)?.clone(),
            })
        })
        .collect()
}

/// Each application's role input, with the tasks that keep them current: see the module
/// doc. `hold` is `true` while a swap stops the mirror applications before handing over.
pub fn roles(
    configs: &[AppConfig],
    instances: &BTreeMap<String, watch::Receiver<Status>>,
    hold: &watch::Receiver<bool>,
) -> (Tasks, BTreeMap<String, watch::Receiver<bool>>) {
    let mut tasks = Tasks::new();
    let mut roles = BTreeMap::new();
    for config in configs {
        let role = match instance_of(config) {
            None => watch::channel(true).1,
            Some(instance) => match instances.get(instance) {
                // Not running (it failed to start on a reload): not master.
                None => watch::channel(false).1,
                Some(status) => {
                    let (task, role) = follow_master(status.clone(), hold.clone());
                    tasks.push(task);
                    role
                }
            },
        };
        roles.insert(config.name.clone(), role);
    }
    (tasks, roles)
}

/// `true` while `status` says MASTER and `hold` is not set; `false` for good once the
/// instance is gone (stopped, or replaced by a reload that feeds its successor anew).
fn follow_master(
    mut status: watch::Receiver<Status>,
    mut hold: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
    let master = |status: &watch::Receiver<Status>, hold: &watch::Receiver<bool>| {
        status.borrow().state == vrrp::State::Master && !*hold.borrow()
    };
    let (tx, rx) = watch::channel(master(&status, &hold));
    let task = tokio::spawn(async move {
        loop {
            let alive = tokio::select! {
                changed = status.changed() => changed.is_ok(),
                changed = hold.changed() => changed.is_ok(),
            };
            let now = alive && master(&status, &hold);
            tx.send_if_modified(|last| std::mem::replace(last, now) != now);
            if !alive {
                return;
            }
        }
    });
    (task, rx)
}
