//! The demo's scenarios, run and asserted against a lab that is up (local
//! world): each is a list of steps, each step saying what was expected,
//! what was seen and how long it took. `cargo xtask demo NAME` runs one,
//! `cargo xtask e2e` brings the lab up and runs them all in order, writing
//! the report as text and JSON under the store's `run/e2e/`.
//!
//! Checks inside a guest go through its check shell (`guests::shell`);
//! requests to the VIP are made from inside the lab's network namespace.

pub mod auto_update;
pub mod failover;
pub mod restart_on_failure;
pub mod scale_from_zero;
pub mod upgrade;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::{
    cli::Session,
    graph::{StageId, StageKind},
    guests::{self, netns, shell, upgrade::GuestOps},
    lab::{Lab, VrrpState},
    progress::Progress,
    services::file_server,
    store::Store,
};

pub use crate::guests::wait_for;

/// The scenarios, in the order `e2e` runs them.
pub const SCENARIOS: &[&str] =
    &["scale-from-zero", "failover", "restart-on-failure", "auto-update", "upgrade-rollback", "upgrade"];

/// The app's port on the VIP.
pub const APP_PORT: u16 = 8080;
/// What the v1 page has (v2's too: v2 is v1 plus a cow).
pub const TITLE: &str = "<title>RHEL for Edge</title>";
/// What only the v2 page has.
pub const V2_ONLY: &str = "auto-update";

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
/// `metrics` holds what it measured (seconds, requests, bytes), by name.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub ok: bool,
    pub seconds: f64,
    pub steps: Vec<Step>,
    pub metrics: BTreeMap<String, f64>,
}

/// What a scenario works with: the loaded lab (its graph, for promotions),
/// the steps so far and what was measured.
pub struct Demo<'a> {
    pub session: &'a Session,
    progress: Progress,
    steps: Vec<Step>,
    metrics: BTreeMap<String, f64>,
    started: Instant,
}

/// Which page the VIP served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    V1,
    V2,
}

impl Page {
    /// Classifies a body; anything else is an error showing its start.
    pub fn of(body: &str) -> anyhow::Result<Page> {
        match (body.contains(TITLE), body.contains(V2_ONLY)) {
            (true, false) => Ok(Page::V1),
            (true, true) => Ok(Page::V2),
            _ => bail!("not the app's page: {}", body.chars().take(200).collect::<String>()),
        }
    }
}

impl<'a> Demo<'a> {
    pub fn new(session: &'a Session) -> Demo<'a> {
        Demo {
            session,
            progress: Progress::new(false),
            steps: Vec::new(),
            metrics: BTreeMap::new(),
            started: Instant::now(),
        }
    }

    pub fn lab(&self) -> &'a Lab {
        &self.session.lab
    }

    pub fn store(&self) -> &'a Store {
        &self.session.store
    }

    /// Runs a step: `check` returns what was seen, or fails saying why.
    pub fn step(
        &mut self,
        name: &str,
        expected: &str,
        check: impl FnOnce(&Demo) -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        let started = self.progress.start(name);
        let result = check(self);
        let seconds = started.elapsed().as_secs_f64();
        let (ok, seen) = match &result {
            Ok(seen) => (true, seen.clone()),
            Err(err) => (false, format!("{err:#}")),
        };
        let first_line = seen.lines().next().unwrap_or_default();
        self.progress.finish(&format!("{} in {seconds:.1}s: {first_line}", if ok { "ok" } else { "FAILED" }));
        self.steps.push(Step { name: name.into(), expected: expected.into(), seen, ok, seconds });
        result.with_context(|| format!("step `{name}` (expected: {expected})"))
    }

    /// Records a measurement for the report.
    pub fn measure(&mut self, name: &str, value: f64) {
        self.metrics.insert(name.into(), value);
    }

    pub fn report(self, scenario: &str) -> Report {
        Report {
            scenario: scenario.into(),
            ok: !self.steps.is_empty() && self.steps.iter().all(|step| step.ok),
            seconds: self.started.elapsed().as_secs_f64(),
            steps: self.steps,
            metrics: self.metrics,
        }
    }

    /// Runs `command` as root in `guest`, through the world's channel
    /// (`guests::channel`: the check shell, or ssh with the lab's key).
    pub fn guest_sh(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<shell::Output> {
        crate::guests::channel::for_lab(self.lab(), self.store())?.run(guest, command, timeout)
    }

    /// Runs `command` as root in `guest` and fails unless it exits 0.
    pub fn guest_ok(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<String> {
        self.ops().ok(guest, command, timeout)
    }

    /// Runs `command` as the lab user (its podman, its systemd manager).
    pub fn user_sh(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<shell::Output> {
        let user = &self.lab().kickstart.user;
        let line = format!(
            "runuser -u {user} -- env XDG_RUNTIME_DIR=/run/user/$(id -u {user}) \
             DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$(id -u {user})/bus sh -c '{}'",
            command.replace('\'', "'\\''")
        );
        self.guest_sh(guest, &line, timeout)
    }

    /// The names of the lab user's running containers on `guest`.
    pub fn containers(&self, guest: &str) -> anyhow::Result<Vec<String>> {
        let out = self.user_sh(guest, "podman ps --format '{{.Names}}'", Duration::from_secs(120))?;
        match out.status {
            0 => Ok(out.text.split_whitespace().map(String::from).collect()),
            status => bail!("podman ps on {guest} failed ({status}): {}", out.text.trim()),
        }
    }

    /// GET `http://VIP:PORT/` from inside the lab's network namespace. The
    /// connect timeout is short (a SYN to a guest that just died is lost);
    /// the answer may take long (a container starting under TCG).
    pub fn get_vip(&self, port: u16, timeout: Duration) -> anyhow::Result<String> {
        self.get_vip_within(port, Duration::from_secs(2), timeout)
    }

    /// A GET on the VIP whose connection must be made within `connect`
    /// (the rest of the answer within `timeout`).
    fn get_vip_within(&self, port: u16, connect: Duration, timeout: Duration) -> anyhow::Result<String> {
        let vip = netns::segment(self.lab()).vip.addr;
        let url = format!("http://{vip}:{port}/");
        netns::in_lab_if_up(self.lab(), || {
            let agent = ureq::AgentBuilder::new().timeout_connect(connect.min(timeout)).timeout(timeout).build();
            let response = agent.get(&url).call().with_context(|| format!("GET {url}"))?;
            response.into_string().with_context(|| format!("reading {url}"))
        })?
    }

    /// The page the VIP serves now.
    pub fn page(&self) -> anyhow::Result<Page> {
        Page::of(&self.get_vip(APP_PORT, Duration::from_secs(120))?)
    }

    /// Polls the VIP until it serves `want`; returns the seconds it took.
    /// Each try gives up connecting after 0.5 s and the next follows 0.25 s
    /// later: the lab segment answers a SYN in milliseconds (systemd holds
    /// the app's socket even while no container runs), so a moved or
    /// returned VIP is seen within about 0.75 s, not after TCP's SYN
    /// retransmission backoff (1, 3, 7 s) or a long connect timeout.
    pub fn wait_page(&self, want: Page, timeout: Duration) -> anyhow::Result<f64> {
        let started = Instant::now();
        wait_for(timeout, Duration::from_millis(250), || {
            match Page::of(&self.get_vip_within(APP_PORT, Duration::from_millis(500), Duration::from_secs(120))?)? {
                page if page == want => Ok(Some(started.elapsed().as_secs_f64())),
                page => bail!("the VIP serves {page:?}"),
            }
        })
    }

    /// Polls until a TCP connection to the VIP's app port is accepted; the
    /// instant it was. systemd holds the app's socket on whichever guest
    /// holds the VIP, so after a failover this is VRRP's takeover (and the
    /// host learning the VIP's new MAC) on the host's clock, before any
    /// container starts. The connection counts as the first request: it
    /// starts the backup's container.
    pub fn wait_vip_accepts(&self, timeout: Duration) -> anyhow::Result<Instant> {
        let vip = std::net::SocketAddr::from((netns::segment(self.lab()).vip.addr, APP_PORT));
        wait_for(timeout, Duration::from_millis(50), || {
            netns::in_lab_if_up(self.lab(), || {
                std::net::TcpStream::connect_timeout(&vip, Duration::from_millis(250))
                    .map(|_| Some(Instant::now()))
                    .with_context(|| format!("connecting to {vip}"))
            })?
        })
    }

    /// The guests, by name, in lab order.
    pub fn guests(&self) -> Vec<String> {
        self.lab().guests.iter().map(|guest| guest.name.clone()).collect()
    }

    /// The guest declared VRRP MASTER (the primary).
    pub fn primary(&self) -> anyhow::Result<String> {
        self.guest_in_state(VrrpState::Master)
    }

    /// The first guest declared BACKUP.
    pub fn backup(&self) -> anyhow::Result<String> {
        self.guest_in_state(VrrpState::Backup)
    }

    fn guest_in_state(&self, state: VrrpState) -> anyhow::Result<String> {
        let found = self.lab().guests.iter().find(|guest| guest.vrrp_state == state);
        let name = match state {
            VrrpState::Master => "MASTER",
            VrrpState::Backup => "BACKUP",
        };
        found
            .map(|guest| guest.name.clone())
            .with_context(|| format!("the lab declares no guest with vrrp-state=\"{name}\""))
    }

    /// Step: `guest` is up (its check shell answers, systemd finished
    /// booting, within 15 minutes: a TCG boot under load).
    pub fn step_up(&mut self, guest: &str) -> anyhow::Result<String> {
        self.step(&format!("{guest} is up"), "its check shell answers and the system is running", |demo| {
            demo.wait_up(guest, Duration::from_secs(900))
        })
    }

    /// Step: `guest` runs the app's container (`httpd`) for the lab user.
    pub fn step_runs_app(&mut self, name: &str, guest: &str) -> anyhow::Result<String> {
        self.step(name, "httpd in the lab user's `podman ps`", |demo| match demo.containers(guest)? {
            names if names.iter().any(|name| name == "httpd") => Ok(names.join(", ")),
            names => bail!("podman ps: `{}`", names.join(", ")),
        })
    }

    /// Step: exactly one guest holds the VIP; returns it.
    pub fn serving_guest(&mut self) -> anyhow::Result<String> {
        self.step("one guest serves the VIP", "the VIP on exactly one guest", |demo| {
            match demo.vip_holders()?.as_slice() {
                [only] => Ok(only.clone()),
                holders => bail!("holders: {holders:?}"),
            }
        })
    }

    /// The running guests that hold the VIP now (a guest that is down holds
    /// nothing).
    pub fn vip_holders(&self) -> anyhow::Result<Vec<String>> {
        let vip = netns::segment(self.lab()).vip.addr;
        let mut holders = Vec::new();
        for guest in self.guests() {
            if !self.is_running(&guest) {
                continue;
            }
            let out = self.guest_sh(&guest, "ip -o -4 addr show", Duration::from_secs(30))?;
            if out.text.contains(&format!("inet {vip}/")) {
                holders.push(guest);
            }
        }
        Ok(holders)
    }

    /// Waits until exactly `guest` holds the VIP.
    pub fn wait_vip_on(&self, guest: &str, timeout: Duration) -> anyhow::Result<String> {
        wait_for(timeout, Duration::from_secs(1), || {
            let holders = self.vip_holders()?;
            match holders.as_slice() {
                [only] if only == guest => Ok(Some(format!("{guest} holds it"))),
                _ => bail!("holders: {}", if holders.is_empty() { "none".into() } else { holders.join(", ") }),
            }
        })
    }

    /// Whether the guest's launcher (and so the guest) runs.
    pub fn is_running(&self, guest: &str) -> bool {
        guests::runs(self.store(), guest)
    }

    /// Waits until the guest's check shell answers and systemd finished
    /// booting; returns systemd's state.
    pub fn wait_up(&self, guest: &str, timeout: Duration) -> anyhow::Result<String> {
        wait_for(timeout, Duration::from_secs(3), || {
            let out = self.guest_sh(guest, "systemctl is-system-running --wait", Duration::from_secs(120))?;
            Ok(Some(out.text.trim().to_string()))
        })
    }

    /// The guests' reach (shell, boots, file server counts), shared with
    /// `guest upgrade`.
    pub fn ops(&self) -> GuestOps<'a> {
        GuestOps { lab: self.lab(), store: self.store() }
    }

    /// The booted deployment (`<commit>.<serial>`) from `ostree admin status`.
    pub fn booted_deployment(&self, guest: &str) -> anyhow::Result<String> {
        self.ops().booted_deployment(guest)
    }

    /// The commit of `image` in the served repo.
    pub fn image_commit(&self, image: &str) -> anyhow::Result<String> {
        let repo = self.session.current()?.manifest(self.store(), &StageId::new(StageKind::Repo, "served"))?;
        repo.extra
            .pointer(&format!("/images/{image}/commit"))
            .and_then(|it| it.as_str())
            .map(String::from)
            .with_context(|| format!("the served repo has no image `{image}`"))
    }

    /// What `guest`'s install pulled from the lab file server (the record
    /// of the install artifact its disk came from: after a channel
    /// promotion the current install is another one, or none yet).
    pub fn install_pull(&self, guest: &str) -> anyhow::Result<file_server::ClientTotals> {
        let recorded = guests::load_state(&guests::guest_dir(self.store(), guest)?)
            .and_then(|state| state.install_key)
            .and_then(|key| self.store().artifact_manifest(&crate::key::Key(key)));
        let manifest = match recorded {
            Some(manifest) => manifest,
            None => self.session.current()?.manifest(self.store(), &StageId::new(StageKind::Install, guest))?,
        };
        let number = |name: &str| manifest.extra.pointer(&format!("/file_server/{name}")).and_then(|it| it.as_u64());
        match (number("requests"), number("bytes")) {
            (Some(requests), Some(bytes_sent)) => Ok(file_server::ClientTotals { requests, bytes_sent }),
            _ => bail!("{guest}'s install artifact does not record its file server counts"),
        }
    }

    /// The boots the guest's launcher recorded, oldest first.
    pub fn boots(&self, guest: &str) -> anyhow::Result<Vec<guests::BootRecord>> {
        self.ops().boots(guest)
    }

    /// Kills the guest as `virsh destroy` does.
    pub fn destroy(&self, guest: &str) -> anyhow::Result<()> {
        guests::destroy(self.store(), guest)?;
        Ok(())
    }

    /// Starts the guest again on its own disk, as `guest start` does.
    pub fn start(&self, guest: &str) -> anyhow::Result<()> {
        netns::up(self.store(), &netns::segment(self.lab()))?;
        guests::prepare(self.lab(), self.store(), &self.session.current()?, guest, false)?;
        guests::start(self.store(), guest, &guests::launcher_args(self.lab(), self.store(), guest))?;
        Ok(())
    }
}

/// Runs the scenario `name`.
pub fn run(session: &Session, name: &str) -> anyhow::Result<Report> {
    let mut demo = Demo::new(session);
    // A scenario stops at its first failed step, which the report shows.
    let _ = match name {
        "scale-from-zero" => scale_from_zero::steps(&mut demo),
        "failover" => failover::steps(&mut demo),
        "restart-on-failure" => restart_on_failure::steps(&mut demo),
        "auto-update" => auto_update::steps(&mut demo),
        "upgrade-rollback" => upgrade::rollback_steps(&mut demo),
        "upgrade" => upgrade::upgrade_steps(&mut demo),
        other => bail!("no scenario `{other}`; scenarios are: {}", SCENARIOS.join(", ")),
    };
    Ok(demo.report(name))
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
        for (name, value) in &report.metrics {
            text.push_str(&format!("  measured {name} = {value:.1}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_told_apart() {
        assert_eq!(Page::of(&format!("<html>{TITLE} figlet</html>")).unwrap(), Page::V1);
        assert_eq!(Page::of(&format!("{TITLE} Podman {V2_ONLY} is awesome")).unwrap(), Page::V2);
        assert!(Page::of("<html>404</html>").unwrap_err().to_string().contains("not the app's page"));
    }
}
