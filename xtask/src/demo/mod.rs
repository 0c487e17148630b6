//! The demo's scenarios, run and asserted against a lab that is up (local
//! world): each is a list of steps, each step saying what was expected,
//! what was seen and how long it took. `cargo xtask demo NAME` runs one,
//! `cargo xtask e2e` brings the lab up and runs them all in order, writing
//! the report as text and JSON under the store's `run/e2e/`.
//!
//! Checks inside a guest go through its check shell (`guests::shell`);
//! requests to the VIP are made from inside the lab's network namespace.

pub mod scale_from_zero;

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::{
    guests::{netns, shell},
    lab::Lab,
    store::Store,
};

/// The scenarios, in the order `e2e` runs them.
pub const SCENARIOS: &[&str] = &["scale-from-zero"];

/// One checked step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub expected: String,
    pub seen: String,
    pub ok: bool,
    pub seconds: f64,
}

/// A scenario's steps, in order; it stops at the first failed step.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub ok: bool,
    pub seconds: f64,
    pub steps: Vec<Step>,
}

/// What a scenario works with.
pub struct Demo<'a> {
    pub lab: &'a Lab,
    pub store: &'a Store,
    steps: Vec<Step>,
    started: Instant,
}

impl<'a> Demo<'a> {
    pub fn new(lab: &'a Lab, store: &'a Store) -> Demo<'a> {
        Demo { lab, store, steps: Vec::new(), started: Instant::now() }
    }

    /// Runs a step: `check` returns what was seen, or fails saying why.
    pub fn step(
        &mut self,
        name: &str,
        expected: &str,
        check: impl FnOnce(&Demo) -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        let started = Instant::now();
        let result = check(self);
        let seconds = started.elapsed().as_secs_f64();
        let (ok, seen) = match &result {
            Ok(seen) => (true, seen.clone()),
            Err(err) => (false, format!("{err:#}")),
        };
        self.steps.push(Step { name: name.into(), expected: expected.into(), seen, ok, seconds });
        result.with_context(|| format!("step `{name}` (expected: {expected})"))
    }

    pub fn report(self, scenario: &str) -> Report {
        Report {
            scenario: scenario.into(),
            ok: self.steps.iter().all(|step| step.ok),
            seconds: self.started.elapsed().as_secs_f64(),
            steps: self.steps,
        }
    }

    /// Runs `command` as root in `guest`.
    pub fn guest_sh(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<shell::Output> {
        shell::run(self.store, guest, command, timeout)
    }

    /// Runs `command` as the lab user (its podman, its systemd manager).
    pub fn user_sh(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<shell::Output> {
        let user = &self.lab.kickstart.user;
        let line = format!(
            "runuser -u {user} -- env XDG_RUNTIME_DIR=/run/user/$(id -u {user}) \
             DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$(id -u {user})/bus sh -c '{}'",
            command.replace('\'', "'\\''")
        );
        self.guest_sh(guest, &line, timeout)
    }

    /// GET `http://VIP:PORT/` from inside the lab's network namespace.
    pub fn get_vip(&self, port: u16, timeout: Duration) -> anyhow::Result<String> {
        let vip = netns::segment(self.lab).vip.addr;
        let url = format!("http://{vip}:{port}/");
        netns::in_lab_if_up(self.lab, || {
            let agent = ureq::AgentBuilder::new().timeout(timeout).build();
            let response = agent.get(&url).call().with_context(|| format!("GET {url}"))?;
            response.into_string().with_context(|| format!("reading {url}"))
        })?
    }
}

/// Polls `probe` until it returns `Some`, or fails after `timeout` with the
/// last thing seen.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() >= deadline {
            anyhow::bail!("not within {timeout:?}; last seen: {last}");
        }
        std::thread::sleep(every);
    }
}

/// Runs the scenario `name`.
pub fn run(lab: &Lab, store: &Store, name: &str) -> anyhow::Result<Report> {
    match name {
        "scale-from-zero" => Ok(scale_from_zero::run(lab, store)),
        other => anyhow::bail!("no scenario `{other}`; scenarios are: {}", SCENARIOS.join(", ")),
    }
}

/// The report as text: a line per step.
pub fn render(reports: &[Report]) -> String {
    let mut text = String::new();
    for report in reports {
        let verdict = if report.ok { "PASSED" } else { "FAILED" };
        text.push_str(&format!("scenario {} {verdict} in {:.1}s\n", report.scenario, report.seconds));
        for step in &report.steps {
            let mark = if step.ok { "ok  " } else { "FAIL" };
            text.push_str(&format!("  {mark} {:<40} {:>7.1}s\n", step.name, step.seconds));
            text.push_str(&format!("       expected: {}\n", step.expected));
            let seen: String = step.seen.lines().take(6).collect::<Vec<_>>().join("\n                 ");
            text.push_str(&format!("       seen:     {seen}\n"));
        }
    }
    text
}
