//! `cargo xtask guest upgrade`: a local guest moves to its channel's commit
//! the way a device does, and edgelab reports how it went.
//!
//! 1. **Stage**: the guest runs the service its update timer runs
//!    (`edgelab-update-stage.service`, rpm-ostreed-automatic's local
//!    stand-in: `ostree admin upgrade --stage` from the lab's file server),
//!    not a side door; the file server's counts for the guest's address
//!    before and after are what it fetched.
//! 2. **Apply**: the service its apply timer runs
//!    (`edgelab-apply-update.service`), which reboots when something is
//!    staged. The timer may get there first; either way one reboot follows.
//! 3. **Verdict**: the launcher (the guest's bootloader) records each boot's
//!    greenboot verdict. The upgrade ends at the first healthy boot: on the
//!    new commit (healthy), or on the previous deployment after three red
//!    boots (rolled back). The red boots' failed checks come with the
//!    output the guest printed on its console (`guest/local/bin/edgelab-greenboot`).
//!
//! The demo's upgrade scenarios run the same functions, so `e2e` covers
//! this command.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;

use super::{BootRecord, boot::FailedCheck, netns};
use crate::{
    lab::Lab,
    services::{self, file_server},
    store::Store,
};

/// The unit that stages an update (rpm-ostreed-automatic's local stand-in).
pub const STAGE_UNIT: &str = "edgelab-update-stage.service";
/// The unit that reboots into a staged update (the apply timer's).
pub const APPLY_UNIT: &str = "edgelab-apply-update.service";
/// Boots a failing deployment gets (greenboot's boot counter).
pub const ATTEMPTS: usize = super::boot::BOOT_ATTEMPTS as usize;
/// What one boot may take under TCG, verdict included, with margin.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// What staging may take (a pull object by object under TCG, at worst).
const STAGE_TIMEOUT: Duration = Duration::from_secs(900);

/// What a guest is asked to move to: its channel's commit as published.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub channel: String,
    pub image: String,
    pub commit: String,
}

/// How an upgrade ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The guest already booted the channel's commit: nothing was staged.
    AlreadyCurrent,
    /// A healthy boot of the new commit.
    Healthy,
    /// Three red boots of the new commit, then a healthy boot of the
    /// previous one, made permanent.
    RolledBack,
}

/// Seconds each phase took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    /// Pulling and deploying the new commit (the stage service).
    pub stage_s: f64,
    /// From the reboot to the first boot's verdict.
    pub first_boot_s: f64,
    /// From the reboot to the final verdict (the rollback's boots included).
    pub verdict_s: f64,
    pub total_s: f64,
}

/// One guest's upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub guest: String,
    pub channel: String,
    pub image: String,
    /// The commit booted before.
    pub from_commit: String,
    /// The channel's commit.
    pub to_commit: String,
    pub verdict: Verdict,
    /// The commit booted after.
    pub booted_commit: String,
    /// What the guest fetched from the lab file server while staging.
    pub requests: u64,
    pub bytes: u64,
    pub phases: Phases,
    /// The boots after the reboot, up to the healthy one (host faults, no
    /// attempts of a deployment, left out).
    pub boots: Vec<BootRecord>,
    /// The required checks that failed in those boots, each once (the
    /// first boot's output).
    pub failed_checks: Vec<FailedCheck>,
}

/// What staging did.
pub struct Staged {
    pub pulled: file_server::ClientTotals,
    pub seconds: f64,
    /// The apply timer rebooted the guest the moment staging ended.
    pub rebooted: bool,
}

/// The guests' reach: the world's shell channel and the store's run state.
pub struct GuestOps<'a> {
    pub lab: &'a Lab,
    pub store: &'a Store,
}

impl GuestOps<'_> {
    /// Runs `command` as root in `guest` and fails unless it exits 0.
    pub fn ok(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<String> {
        let out = super::channel::for_lab(self.lab, self.store)?.run(guest, command, timeout)?;
        match out.status {
            0 => Ok(out.text.trim().to_string()),
            status => bail!("`{command}` on {guest} exited {status}: {}", out.text.trim()),
        }
    }

    /// The booted deployment (`<commit>.<serial>`) from `ostree admin status`.
    pub fn booted_deployment(&self, guest: &str) -> anyhow::Result<String> {
        let status = self.ok(guest, "ostree admin status", Duration::from_secs(60))?;
        booted_in_status(&status).with_context(|| format!("no booted deployment in `ostree admin status`:\n{status}"))
    }

    /// The boots the guest's launcher recorded, oldest first.
    pub fn boots(&self, guest: &str) -> anyhow::Result<Vec<BootRecord>> {
        Ok(super::boots(&super::guest_dir(self.store, guest)?))
    }

    /// The lab file server's totals for `guest` (its address on the segment).
    pub fn served_to(&self, guest: &str) -> anyhow::Result<file_server::ClientTotals> {
        let segment = netns::segment(self.lab);
        let port = segment.port(guest).with_context(|| format!("{guest} has no place on the lab segment"))?;
        let endpoint = services::connect_address(file_server::listen_address(self.lab));
        let counters = netns::in_lab_if_up(self.lab, || file_server::counters(endpoint))??;
        Ok(counters.client(IpAddr::V4(port.address.addr)))
    }

    /// The guest stages `commit` through its stage service; what the file
    /// server sent it meanwhile.
    pub fn stage(&self, guest: &str, commit: &str) -> anyhow::Result<Staged> {
        let started = Instant::now();
        let before = self.served_to(guest)?;
        let boots_before = self.boots(guest)?.len();
        let line = format!("systemctl start {STAGE_UNIT} && ostree admin status");
        let rebooted = match self.ok(guest, &line, STAGE_TIMEOUT) {
            Ok(status) => {
                let staged = status.lines().any(|line| line.contains(commit) && line.contains("(staged)"));
                if !staged {
                    bail!("{STAGE_UNIT} left nothing of {commit} staged:\n{status}");
                }
                false
            }
            // The apply timer may reboot the guest the moment staging
            // ends, closing the shell before the status came back; the
            // boot that follows then tells what was staged.
            Err(err) => {
                let boots = self
                    .wait_boot(guest, boots_before, BOOT_TIMEOUT, |_| true)
                    .with_context(|| format!("{err:#}; and no boot followed"))?;
                if !boots[0].deployment.starts_with(commit) {
                    bail!("{err:#}; the next boot was {}", describe(&boots[0]));
                }
                true
            }
        };
        let pulled = self.served_to(guest)?.since(&before);
        Ok(Staged { pulled, seconds: started.elapsed().as_secs_f64(), rebooted })
    }

    /// The guest reboots into what is staged, through the apply service
    /// its timer runs (it reboots only when something is staged).
    pub fn apply(&self, guest: &str) -> anyhow::Result<()> {
        self.ok(guest, &format!("systemctl start --no-block {APPLY_UNIT} && echo started"), Duration::from_secs(60))
            .map(drop)
    }

    /// Waits until the guest's launcher recorded, after its first `skip`
    /// boots, one that is `done`; returns the boots after `skip` up to that
    /// one. Boots stopped by a host fault (KVM's, not the guest's) are no
    /// attempts of a deployment and are left out.
    pub fn wait_boot(
        &self,
        guest: &str,
        skip: usize,
        timeout: Duration,
        done: impl Fn(&BootRecord) -> bool,
    ) -> anyhow::Result<Vec<BootRecord>> {
        super::wait_for(timeout, Duration::from_secs(1), || {
            let boots = self.boots(guest)?;
            let new: Vec<BootRecord> = boots
                .get(skip..)
                .unwrap_or_default()
                .iter()
                .filter(|boot| boot.host_fault.is_none())
                .cloned()
                .collect();
            match new.iter().position(&done) {
                Some(at) => Ok(Some(new[..=at].to_vec())),
                None => {
                    bail!("{} boot(s) so far: {}", new.len(), new.iter().map(describe).collect::<Vec<_>>().join("; "))
                }
            }
        })
    }

    /// The whole upgrade of one guest; `say` gets a line per phase.
    pub fn upgrade(&self, guest: &str, target: &Target, say: &dyn Fn(&str)) -> anyhow::Result<Report> {
        let started = Instant::now();
        let from = self.booted_deployment(guest)?;
        let from_commit = commit_of(&from).to_string();
        let mut report = Report {
            guest: guest.to_string(),
            channel: target.channel.clone(),
            image: target.image.clone(),
            from_commit: from_commit.clone(),
            to_commit: target.commit.clone(),
            verdict: Verdict::AlreadyCurrent,
            booted_commit: from_commit.clone(),
            requests: 0,
            bytes: 0,
            phases: Phases::default(),
            boots: Vec::new(),
            failed_checks: Vec::new(),
        };
        if from_commit == target.commit {
            say(&format!("already on {} ({}): nothing to stage", target.image, short(&target.commit)));
            report.phases.total_s = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        say(&format!("staging {} ({}) through {STAGE_UNIT}", target.image, short(&target.commit)));
        let boots_before = self.boots(guest)?.len();
        let staged = self.stage(guest, &target.commit)?;
        report.requests = staged.pulled.requests;
        report.bytes = staged.pulled.bytes_sent;
        report.phases.stage_s = staged.seconds;
        say(&format!(
            "staged in {:.1}s: {} requests, {:.2} MB from the lab file server",
            staged.seconds,
            staged.pulled.requests,
            staged.pulled.bytes_sent as f64 / 1e6
        ));
        let rebooting = Instant::now();
        if !staged.rebooted {
            say(&format!("rebooting through {APPLY_UNIT}"));
            self.apply(guest)?;
        }
        let first = self.wait_boot(guest, boots_before, BOOT_TIMEOUT, |boot| boot.verdict_seen)?;
        report.phases.first_boot_s = rebooting.elapsed().as_secs_f64();
        say(&format!("first boot: {}", describe(first.last().expect("wait_boot returns a boot"))));
        let boots = match first.last().is_some_and(|boot| boot.healthy) {
            true => first,
            false => {
                say(&format!("red: waiting for the boot counter ({ATTEMPTS} attempts) and the fallback"));
                self.wait_boot(guest, boots_before, BOOT_TIMEOUT * (ATTEMPTS as u32 + 2), |boot| boot.healthy)?
            }
        };
        report.phases.verdict_s = rebooting.elapsed().as_secs_f64();
        let last = boots.last().expect("wait_boot returns a boot");
        report.verdict = match (last.deployment.starts_with(&target.commit), last.fallback) {
            (true, false) => Verdict::Healthy,
            (false, true) if last.deployment.starts_with(&from_commit) => Verdict::RolledBack,
            _ => bail!(
                "{guest} ended healthy on neither {} nor, as a fallback, {}: {}",
                short(&target.commit),
                short(&from_commit),
                boots.iter().map(describe).collect::<Vec<_>>().join("; ")
            ),
        };
        report.booted_commit = commit_of(&last.deployment).to_string();
        for check in boots.iter().filter(|boot| !boot.healthy).flat_map(|boot| &boot.failed_checks) {
            if !report.failed_checks.iter().any(|seen| seen.name == check.name) {
                report.failed_checks.push(check.clone());
            }
        }
        report.boots = boots;
        report.phases.total_s = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// The report as text, a few lines per guest.
pub fn render(report: &Report) -> String {
    let guest = &report.guest;
    let mut text = match report.verdict {
        Verdict::AlreadyCurrent => {
            format!("{guest}: already on {} ({}), channel {}\n", report.image, short(&report.to_commit), report.channel)
        }
        Verdict::Healthy => format!(
            "{guest}: healthy on {} ({}), channel {}; was {}\n",
            report.image,
            short(&report.to_commit),
            report.channel,
            short(&report.from_commit)
        ),
        Verdict::RolledBack => format!(
            "{guest}: ROLLED BACK to {} after {} red boots of {} ({}), channel {}\n",
            short(&report.from_commit),
            report.boots.iter().filter(|boot| !boot.healthy).count(),
            report.image,
            short(&report.to_commit),
            report.channel
        ),
    };
    if report.verdict == Verdict::AlreadyCurrent {
        return text;
    }
    for check in &report.failed_checks {
        text.push_str(&format!("  failed check: {}\n", check.name));
        for line in check.output.lines() {
            text.push_str(&format!("    | {line}\n"));
        }
    }
    text.push_str(&format!(
        "  fetched {} requests, {:.2} MB from the lab file server\n",
        report.requests,
        report.bytes as f64 / 1e6
    ));
    let phases = &report.phases;
    text.push_str(&format!(
        "  stage {:.1}s, reboot to the first verdict {:.1}s, to the last {:.1}s; {:.1}s in all\n",
        phases.stage_s, phases.first_boot_s, phases.verdict_s, phases.total_s
    ));
    text.push_str(&format!("  boots: {}\n", report.boots.iter().map(describe).collect::<Vec<_>>().join("; ")));
    text
}

/// A boot in a few words: deployment, fallback, verdict, seconds.
pub fn describe(boot: &BootRecord) -> String {
    let verdict = match (boot.verdict_seen, boot.healthy) {
        (_, true) => "healthy",
        (true, false) => "red",
        (false, false) => "no verdict (hung or cut short)",
    };
    let fallback = if boot.fallback { " (fallback)" } else { "" };
    format!("{}{fallback} {verdict} after {:.0}s", short(&boot.deployment), boot.seconds)
}

/// A commit's first 12 hex digits, as the reports show it.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The commit of a deployment (`<commit>.<serial>`).
pub fn commit_of(deployment: &str) -> &str {
    deployment.split_once('.').map_or(deployment, |(commit, _)| commit)
}

/// The deployments (`<commit>.<serial>`) in `ostree admin status` output,
/// each with whether it is the booted one (`* ` line).
pub fn deployments_in_status(status: &str) -> Vec<(String, bool)> {
    status
        .lines()
        .filter_map(|line| {
            let booted = line.starts_with("* ");
            let deployment = line.get(2..)?.split_whitespace().nth(1)?;
            let (commit, serial) = deployment.split_once('.')?;
            let is_deployment = commit.len() == 64
                && commit.bytes().all(|byte| byte.is_ascii_hexdigit())
                && serial.bytes().all(|byte| byte.is_ascii_digit());
            is_deployment.then(|| (deployment.to_string(), booted))
        })
        .collect()
}

/// The booted deployment in `ostree admin status` output.
pub fn booted_in_status(status: &str) -> Option<String> {
    deployments_in_status(status).into_iter().find_map(|(deployment, booted)| booted.then_some(deployment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::qemu::Accel;

    const STATUS: &str = "\
* debian 2b7e0c6f8f1c4b1e9d4a2f0e5c3b7a9d8e6f4c2a1b0d9e8f7a6b5c4d3e2f1a0b.1
    origin refspec: edge:rhel/8/x86_64/edge
  debian 9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0.0 (rollback)
    origin refspec: edge:rhel/8/x86_64/edge
";

    #[test]
    fn status_lists_deployments_and_the_booted_one() {
        let deployments = deployments_in_status(STATUS);
        assert_eq!(deployments.len(), 2);
        assert!(!deployments[1].1);
        assert_eq!(
            booted_in_status(STATUS).as_deref(),
            Some("2b7e0c6f8f1c4b1e9d4a2f0e5c3b7a9d8e6f4c2a1b0d9e8f7a6b5c4d3e2f1a0b.1")
        );
        assert_eq!(booted_in_status("  debian abc.0\n"), None);
        assert_eq!(commit_of("abc.1"), "abc");
    }

    fn boot(deployment: &str, healthy: bool, fallback: bool, failed: &[(&str, &str)]) -> BootRecord {
        BootRecord {
            started_unix: 0,
            entry: "ostree-1.conf".into(),
            deployment: deployment.into(),
            fallback,
            healthy,
            verdict_seen: true,
            seconds: 27.4,
            accel: Accel::Tcg,
            reason: "default".into(),
            host_fault: None,
            failed_checks: failed
                .iter()
                .map(|(name, output)| FailedCheck { name: (*name).into(), output: (*output).into() })
                .collect(),
        }
    }

    #[test]
    fn a_rollback_names_the_failed_check_and_quotes_it() {
        let red =
            boot("bbbbbbbbbbbbbbbb.1", false, false, &[("required.d/01_check_upgrade.sh (exit 1)", "1c1\n< a\n")]);
        let report = Report {
            guest: "edge-device-1".into(),
            channel: "edge".into(),
            image: "v2".into(),
            from_commit: "aaaaaaaaaaaaaaaa".into(),
            to_commit: "bbbbbbbbbbbbbbbb".into(),
            verdict: Verdict::RolledBack,
            booted_commit: "aaaaaaaaaaaaaaaa".into(),
            requests: 4,
            bytes: 1_500_000,
            phases: Phases { stage_s: 9.5, first_boot_s: 30.0, verdict_s: 120.0, total_s: 130.2 },
            boots: vec![red.clone(), red.clone(), red.clone(), boot("aaaaaaaaaaaaaaaa.0", true, true, &[])],
            failed_checks: red.failed_checks.clone(),
        };
        expect_test::expect![[r#"
            edge-device-1: ROLLED BACK to aaaaaaaaaaaa after 3 red boots of v2 (bbbbbbbbbbbb), channel edge
              failed check: required.d/01_check_upgrade.sh (exit 1)
                | 1c1
                | < a
              fetched 4 requests, 1.50 MB from the lab file server
              stage 9.5s, reboot to the first verdict 30.0s, to the last 120.0s; 130.2s in all
              boots: bbbbbbbbbbbb red after 27s; bbbbbbbbbbbb red after 27s; bbbbbbbbbbbb red after 27s; aaaaaaaaaaaa (fallback) healthy after 27s
        "#]]
        .assert_eq(&render(&report));
    }
}
