//! A node's set of instances, as keepalived runs its `vrrp_instance`s: started together,
//! reloaded by difference, stopped in order, with notify scripts and sync groups.
//!
//! A keepalived-like daemon is this plus a thin binary. Tandem's own additions (pool tracking
//! that lowers a priority, a gateway ping that puts an instance in FAULT) stay in the daemon,
//! which feeds them in as [`Inputs`]: watch channels the set follows from the moment each
//! instance starts.
//!
//! - **Reload by difference**: an instance whose election and link settings are unchanged
//!   keeps running, so its role and VIPs stay put; only its notify scripts are refreshed.
//!   Changed instances restart; removed ones resign.
//! - **Sync groups**: members fail together. A member is put in FAULT while another member
//!   is faulty of its own making (its link, or its external fault source), combined on every
//!   change of any member's status or external source, not by polling.
//! - **Stop**: each instance resigns (priority-0 advert, VIPs removed), its queued notify
//!   scripts finish (bounded), then its `stop` script runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::instance::{Command, Instance, InstanceConfig, StartError, Status};
use crate::notify::{self, Notify};

/// One instance as the set runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The election and its link. A reload that leaves it equal keeps the instance running.
    pub config: InstanceConfig,
    pub notify: Notify,
    /// Instances of one sync group share their faults.
    pub sync_group: Option<String>,
}

impl InstanceSpec {
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// What the embedder feeds one instance from outside the election.
#[derive(Debug, Default)]
pub struct Inputs {
    /// `true` while a source outside the election says the node must not serve (a gateway it
    /// cannot reach, say): the instance goes to FAULT, and so does its sync group.
    pub fault: Option<watch::Receiver<bool>>,
    /// The priority delta in force (tracking, as keepalived's `track_script` weights); none:
    /// zero.
    pub priority_delta: Option<watch::Receiver<i32>>,
}

/// [`Inputs`] by instance name; instances not named have none.
pub type InstanceInputs = BTreeMap<String, Inputs>;

/// An instance that could not start.
#[derive(Debug, thiserror::Error)]
#[error("vrrp {name}: {source}")]
pub struct InstanceError {
    pub name: String,
    #[source]
    pub source: StartError,
}

/// The running instances, by name.
pub struct Instances {
    running: BTreeMap<String, Running>,
    /// Turns external and sync-group faults into [`Command::ExternalFault`]; replaced whenever
    /// the instances or their fault sources change.
    faults: Option<JoinHandle<()>>,
}

struct Running {
    spec: InstanceSpec,
    instance: Instance,
    /// Passes the priority delta input on to the instance; replaced on every reload.
    priority: Option<JoinHandle<()>>,
    /// Runs the notify scripts, one transition after another. Kept across reloads that leave
    /// `notify` unchanged, and allowed to finish at stop: aborting it would kill a script
    /// halfway (say, a `master` script setting up routes).
    notify: JoinHandle<()>,
}

impl Instances {
    /// Starts every instance of `specs`; the first that cannot start stops the others.
    pub async fn start(
        specs: &[InstanceSpec],
        mut inputs: InstanceInputs,
    ) -> Result<Self, InstanceError> {
        let mut instances = Self {
            running: BTreeMap::new(),
            faults: None,
        };
        let mut faults = BTreeMap::new();
        for spec in specs {
            let Inputs {
                fault,
                priority_delta,
            } = inputs.remove(spec.name()).unwrap_or_default();
            match start_one(spec, priority_delta, fault.as_ref()).await {
                Ok(running) => {
                    instances.running.insert(spec.name().to_owned(), running);
                }
                Err(e) => {
                    instances.shutdown().await;
                    return Err(e);
                }
            }
            faults.extend(fault.map(|f| (spec.name().to_owned(), f)));
        }
        instances.watch_faults(faults);
        Ok(instances)
    }

    /// Applies a reloaded set (see the module doc). Returns the instances that failed to
    /// start; the others run.
    pub async fn apply(
        &mut self,
        specs: &[InstanceSpec],
        mut inputs: InstanceInputs,
    ) -> Vec<InstanceError> {
        let mut errors = Vec::new();
        let mut faults = BTreeMap::new();
        let mut old = std::mem::take(&mut self.running);
        for spec in specs {
            let Inputs {
                fault,
                priority_delta,
            } = inputs.remove(spec.name()).unwrap_or_default();
            match old.remove(spec.name()) {
                Some(mut running) if running.spec.config == spec.config => {
                    if let Some(task) = running.priority.take() {
                        task.abort();
                    }
                    running.priority = follow_priority(&running.instance, priority_delta);
                    // What the host refused may be fixed now: try again without waiting.
                    running.instance.command(Command::RetryHost);
                    if running.spec.notify != spec.notify {
                        // New scripts: the role is unchanged, so the new task hears only
                        // changes from now on.
                        running.notify.abort();
                        running.notify = notify::spawn(
                            spec.name().to_owned(),
                            spec.notify.clone(),
                            running.instance.transitions(),
                        );
                    }
                    running.spec = spec.clone();
                    self.running.insert(spec.name().to_owned(), running);
                }
                previous => {
                    if let Some(previous) = previous {
                        tracing::info!(instance = %spec.name(), "vrrp settings changed: restarting the instance");
                        stop(previous).await;
                    }
                    match start_one(spec, priority_delta, fault.as_ref()).await {
                        Ok(running) => {
                            self.running.insert(spec.name().to_owned(), running);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            faults.extend(fault.map(|f| (spec.name().to_owned(), f)));
        }
        for (_, removed) in old {
            stop(removed).await;
        }
        self.watch_faults(faults);
        errors
    }

    /// Every instance resigns (priority-0 advert, VIPs removed) and its `stop` script runs.
    pub async fn shutdown(&mut self) {
        if let Some(task) = self.faults.take() {
            task.abort();
        }
        for (_, running) in std::mem::take(&mut self.running) {
            stop(running).await;
        }
    }

    /// Each instance's status channel, by name.
    pub fn statuses(&self) -> BTreeMap<String, watch::Receiver<Status>> {
        self.running
            .iter()
            .map(|(name, r)| (name.clone(), r.instance.status()))
            .collect()
    }

    /// Asks every master to hand its role to a peer (an operator's swap).
    pub fn relinquish(&self) {
        for running in self.running.values() {
            running.instance.command(Command::Relinquish);
        }
    }

    /// (Re)starts the task that combines fault sources, for the instances now running.
    fn watch_faults(&mut self, mut external: BTreeMap<String, watch::Receiver<bool>>) {
        if let Some(task) = self.faults.take() {
            task.abort();
        }
        let members: Vec<Member> = self
            .running
            .values()
            .map(|r| Member {
                name: r.spec.name().to_owned(),
                group: r.spec.sync_group.clone(),
                external: external.remove(r.spec.name()),
                status: r.instance.status(),
                external_open: true,
                status_open: true,
                commands: r.instance.commands(),
                link_seen: false,
                sent: None,
            })
            .collect();
        if members
            .iter()
            .all(|m| m.external.is_none() && m.group.is_none())
        {
            // Nothing to combine: no task at all. Clear a fault a reload may have left behind
            // (its source is gone).
            for member in &members {
                let _ = member.commands.send(Command::ExternalFault(false));
            }
            return;
        }
        self.faults = Some(tokio::spawn(combine_faults(members)));
    }
}

/// Starts one instance, following its inputs at once: a tracked or faulty instance must not
/// run unpenalised while the rest of a start or reload goes on. (Its sync group's faults
/// reach it when the set's combiner restarts, at the end of the start or reload.)
async fn start_one(
    spec: &InstanceSpec,
    priority_delta: Option<watch::Receiver<i32>>,
    fault: Option<&watch::Receiver<bool>>,
) -> Result<Running, InstanceError> {
    let instance = Instance::start(spec.config.clone())
        .await
        .map_err(|source| InstanceError {
            name: spec.name().to_owned(),
            source,
        })?;
    if let Some(fault) = fault {
        instance.command(Command::ExternalFault(*fault.borrow()));
    }
    let priority = follow_priority(&instance, priority_delta);
    // The first subscriber hears every transition since the start (INIT -> BACKUP too).
    let notify = notify::spawn(
        spec.name().to_owned(),
        spec.notify.clone(),
        instance.transitions(),
    );
    Ok(Running {
        spec: spec.clone(),
        instance,
        priority,
        notify,
    })
}

/// Sends `instance` every value of `delta` from now on, or, without one, a zero delta once
/// (lifting a penalty a reload may have left in force).
fn follow_priority(
    instance: &Instance,
    delta: Option<watch::Receiver<i32>>,
) -> Option<JoinHandle<()>> {
    let Some(mut delta) = delta else {
        instance.command(Command::PriorityDelta(0));
        return None;
    };
    let commands = instance.commands();
    Some(tokio::spawn(async move {
        loop {
            let now = *delta.borrow_and_update();
            if commands.send(Command::PriorityDelta(now)).is_err() {
                return;
            }
            if delta.changed().await.is_err() {
                return;
            }
        }
    }))
}

async fn stop(running: Running) {
    let Running {
        spec,
        instance,
        priority,
        mut notify,
    } = running;
    if let Some(task) = priority {
        task.abort();
    }
    instance.shutdown().await;
    // The instance is gone, so its transitions channel is closed: the notify task runs what is
    // still queued (bounded by each script's timeout) and ends.
    let patience = spec.notify.timeout.saturating_mul(2);
    if tokio::time::timeout(patience, &mut notify).await.is_err() {
        notify.abort();
    }
    if let Some(argv) = &spec.notify.stop {
        notify::run(spec.name(), "stop", argv, spec.notify.timeout).await;
    }
}

/// One instance as the fault combiner sees it.
struct Member {
    name: String,
    group: Option<String>,
    external: Option<watch::Receiver<bool>>,
    status: watch::Receiver<Status>,
    /// Whether each channel can still change (its sender lives); a closed one keeps its last
    /// value.
    external_open: bool,
    status_open: bool,
    commands: mpsc::UnboundedSender<Command>,
    /// Its link fault as the last combination saw it.
    link_seen: bool,
    /// The external-fault flag last sent.
    sent: Option<bool>,
}

impl Member {
    fn external_fault(&self) -> bool {
        self.external.as_ref().is_some_and(|e| *e.borrow())
    }

    fn link_fault(&self) -> bool {
        self.status.borrow().link_fault
    }
}

/// Sends each member its external fault: its own external source says so, or another member
/// of its sync group is faulty of its own making (link or external source). Runs once at
/// start, then after every change of any member's status or external source.
async fn combine_faults(mut members: Vec<Member>) {
    loop {
        for member in members.iter_mut() {
            member.link_seen = member.link_fault();
        }
        let external: Vec<bool> = members.iter().map(Member::external_fault).collect();
        let own: Vec<bool> = members
            .iter()
            .zip(&external)
            .map(|(m, &ext)| ext || m.link_seen)
            .collect();
        for i in 0..members.len() {
            let external_down = external[i];
            let group_down = members[i].group.as_ref().is_some_and(|g| {
                members.iter().zip(&own).any(|(m, &down)| {
                    down && m.name != members[i].name && m.group.as_ref() == Some(g)
                })
            });
            let fault = external_down || group_down;
            let member = &mut members[i];
            if member.sent != Some(fault) {
                if member.sent.is_some() || fault {
                    tracing::warn!(instance = %member.name, fault, external_down, group_down,
                        "external fault changed");
                }
                member.sent = Some(fault);
                let _ = member.commands.send(Command::ExternalFault(fault));
            }
        }
        if !next_change(&mut members).await {
            return;
        }
    }
}

/// Waits for any member's link fault or external source to change. False when none can any
/// more.
async fn next_change(members: &mut [Member]) -> bool {
    type Change<'a> = Pin<Box<dyn Future<Output = (usize, bool, bool)> + Send + 'a>>;
    let mut changes: Vec<Change<'_>> = Vec::new();
    for (i, member) in members.iter_mut().enumerate() {
        if member.status_open {
            // Only its link fault counts here; the status also changes with every advert.
            let seen = member.link_seen;
            let status = &mut member.status;
            changes.push(Box::pin(async move {
                let open = status.wait_for(|s| s.link_fault != seen).await.is_ok();
                (i, false, open)
            }));
        }
        if let Some(external) = member.external.as_mut().filter(|_| member.external_open) {
            changes.push(Box::pin(async move {
                (i, true, external.changed().await.is_ok())
            }));
        }
    }
    if changes.is_empty() {
        return false;
    }
    let ((i, is_external, open), _, _) = futures_util::future::select_all(changes).await;
    if !open {
        // Its sender is gone: the last value stands, and no change will come from it.
        if is_external {
            members[i].external_open = false;
        } else {
            members[i].status_open = false;
        }
    }
    true
}
