//! Real headless browsers for the console tests: Debian's `chromium` over the Chrome DevTools
//! Protocol and Debian's `firefox-esr` over WebDriver BiDi, both WebSockets of JSON commands
//! spoken with `tungstenite` ([`wire`]). A test writes its scenario once against [`Browser`];
//! each browser is a small [`Driver`] doing the few things a scenario needs: open a page, run
//! JavaScript in it, take a picture of it, and tell the errors the page logged.
//!
//! The browser runs inside a namespace the test built, in a process group of its own with a
//! fresh profile directory; its remote-control port listens on that namespace's loopback only.
//! The group is killed and the directory removed when the handle drops. Every wait is bounded.

mod chromium;
mod firefox;
mod wire;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{PATIENCE, TempDir, skipped};

/// The browser's viewport, wide enough for the pair side by side.
pub const WIDTH: u32 = 1440;
pub const HEIGHT: u32 = 1000;

/// The browsers the console is tested in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chromium,
    Firefox,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox",
        }
    }

    /// The Debian package that brings it.
    fn package(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox-esr",
        }
    }

    /// The first of its program names that runs here.
    fn program(self) -> Option<&'static str> {
        let names: &[&'static str] = match self {
            Kind::Chromium => &["chromium"],
            Kind::Firefox => &["firefox-esr", "firefox"],
        };
        names.iter().copied().find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }
}

/// Whether browser `kind` can run here; says why not (or fails under CI).
pub fn available(kind: Kind, test: &str) -> bool {
    kind.program().is_some()
        || skipped(&format!(
            "{test}: needs Debian's {0} (apt-get install {0})",
            kind.package()
        ))
}

/// What a scenario does with a page, in one browser's protocol.
trait Driver {
    /// Opens `url` in the page, returning once its document is parsed.
    fn navigate(&mut self, url: &str);
    /// The value of JavaScript `script` in the page (its completion value, awaited if a
    /// promise), as JSON; `undefined` is null.
    fn eval(&mut self, script: &str) -> Value;
    /// A PNG of the whole page, [`WIDTH`] pixels wide.
    fn screenshot(&mut self) -> Vec<u8>;
    /// The errors the page reported since the last call: uncaught exceptions, `console.error`
    /// and what the browser itself logs against the page (a policy violation, a bad
    /// stylesheet). Failed requests are left out: a refused action is a 401 by design.
    fn errors(&mut self) -> Vec<String>;
}

/// A headless browser with one page, driven by a test.
pub struct Browser {
    kind: Kind,
    driver: Box<dyn Driver>,
    /// Dropped after the driver: kills the browser and removes its profile.
    _process: Process,
}

impl Browser {
    /// Starts browser `kind` in namespace `ns`, on a blank page.
    pub fn start_in_netns(kind: Kind, ns: &str) -> Self {
        let program = kind.program().expect("the browser is installed");
        let (driver, process): (Box<dyn Driver>, Process) = match kind {
            Kind::Chromium => {
                let (driver, process) = chromium::Chromium::start(ns, program);
                (Box::new(driver), process)
            }
            Kind::Firefox => {
                let (driver, process) = firefox::Firefox::start(ns, program);
                (Box::new(driver), process)
            }
        };
        Self {
            kind,
            driver,
            _process: process,
        }
    }

    /// Opens `url` (see [`Browser::wait_for`] for what it then shows).
    pub fn navigate(&mut self, url: &str) {
        self.driver.navigate(url);
    }

    /// The value of JavaScript `script` in the page.
    pub fn eval(&mut self, script: &str) -> Value {
        self.driver.eval(script)
    }

    /// Polls `expression` until it is `true`; returns how long that took. Fails the test
    /// after `limit`, with what the page reads then.
    pub fn wait_for(&mut self, what: &str, expression: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.eval(expression) == json!(true) {
                return started.elapsed();
            }
            if started.elapsed() > limit {
                let page = self.eval("document.body ? document.body.innerText : ''");
                let errors = self.errors().join("\n");
                panic!(
                    "{}: gave up waiting {limit:?} for {what}; the page reads:\n{page}\n\
                     and logged these errors:\n{errors}",
                    self.kind.name()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Saves a PNG of the whole page to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        std::fs::write(path, self.driver.screenshot()).expect("write the screenshot");
    }

    /// The errors the page reported since the last call (see [`Driver::errors`]).
    pub fn errors(&mut self) -> Vec<String> {
        self.driver.errors()
    }
}

/// A browser process: in a process group of its own, with a fresh profile directory that
/// holds its log too. Dropping it kills the group (the browser's helper processes with it),
/// reaps the browser, then removes the directory.
struct Process {
    child: Child,
    profile: TempDir,
}

impl Process {
    /// Spawns `command` (a browser told to use `profile`), its stderr to `browser.log` in the
    /// profile.
    fn spawn(mut command: Command, profile: TempDir) -> Self {
        let log = std::fs::File::create(profile.path().join("browser.log")).expect("browser log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the browser");
        Self { child, profile }
    }

    fn profile(&self) -> &Path {
        self.profile.path()
    }

    /// What the browser wrote to its log.
    fn log(&self) -> String {
        std::fs::read_to_string(self.profile().join("browser.log")).unwrap_or_default()
    }

    /// Waits for the browser to write file `name` in its profile so that `parse` makes sense
    /// of it (how both browsers tell the port they listen on); fails with the browser's log.
    fn wait_for_file<T>(&mut self, name: &str, parse: impl Fn(&str) -> Option<T>) -> T {
        let path = self.profile().join(name);
        let started = Instant::now();
        loop {
            if let Some(found) = std::fs::read_to_string(&path).ok().and_then(|t| parse(&t)) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the browser exited ({status}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the browser wrote no {name} within {PATIENCE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}
