//! A node's applications, by name: started together, reloaded by difference, stopped in
//! the order the daemon asks (the primary's applications when it resigns, the rest after the
//! drain).
//!
//! Reload by difference: an application whose spec is unchanged keeps running untouched; a
//! changed one takes its new spec at its next start (at once with `restart_on_change`); a
//! removed one is stopped; a new one starts when its role says so.

use std::collections::BTreeMap;

use tokio::sync::watch;

use crate::app::{App, AppSpec, AppStatus, Ask};

/// No application has this name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no application named {0:?}")]
pub struct UnknownApp(pub String);

/// The running applications.
#[derive(Default)]
pub struct Apps {
    running: BTreeMap<String, App>,
}

impl Apps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the set run `specs` (see the module doc). Removed applications are stopped
    /// before this returns.
    pub async fn apply(&mut self, specs: Vec<AppSpec>) {
        let mut old = std::mem::take(&mut self.running);
        for spec in specs {
            let name = spec.name.clone();
            let app = match old.remove(&name) {
                Some(mut app) => {
                    app.respec(spec);
                    app
                }
                None => App::start(spec),
            };
            self.running.insert(name, app);
        }
        stop_all(old.into_values().collect()).await;
    }

    /// Each application runs while its role input is `true`; applications not named keep the
    /// input they had (none: they do not run).
    pub fn follow(&mut self, mut roles: BTreeMap<String, watch::Receiver<bool>>) {
        for (name, app) in &mut self.running {
            if let Some(role) = roles.remove(name) {
                app.follow(role);
            }
        }
    }

    pub fn statuses(&self) -> BTreeMap<String, watch::Receiver<AppStatus>> {
        self.running
            .iter()
            .map(|(name, app)| (name.clone(), app.status()))
            .collect()
    }

    /// Each application's failure flag (see [`App::failed`]).
    pub fn failures(&self) -> BTreeMap<String, watch::Receiver<bool>> {
        self.running
            .iter()
            .map(|(name, app)| (name.clone(), app.failed()))
            .collect()
    }

    pub fn ask(&self, name: &str, ask: Ask) -> Result<(), UnknownApp> {
        let app = self
            .running
            .get(name)
            .ok_or_else(|| UnknownApp(name.to_owned()))?;
        app.ask(ask);
        Ok(())
    }

    /// Stops the applications `which` selects, all at once, and returns when they have.
    pub async fn stop(&mut self, which: impl Fn(&str) -> bool) {
        let names: Vec<String> = self
            .running
            .keys()
            .filter(|name| which(name))
            .cloned()
            .collect();
        let apps = names
            .iter()
            .filter_map(|name| self.running.remove(name))
            .collect();
        stop_all(apps).await;
    }
}

async fn stop_all(apps: Vec<App>) {
    futures_util::future::join_all(apps.into_iter().map(App::stop)).await;
}
