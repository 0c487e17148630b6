//! Scenarios upgrade-rollback and upgrade: the atomic OS upgrade on the
//! primary guest, through `guest upgrade`'s own functions
//! (`guests::upgrade`), so `e2e` covers that command.
//!
//! upgrade-rollback: the newer image (v2, which adds the upgrade's extra
//! package, strace) is promoted to the channel the guests follow (`image
//! promote v2`, the original demo's "serve version-2"); the guest stages it
//! from the lab's file server and reboots into it through its apply
//! service; the greenboot check fails (the recorded original commit differs
//! from the booted one), so the new deployment gets three boot attempts,
//! then the previous one boots and is made permanent. Asserts the boot
//! count, the failed check's name and output, v1's commit, no strace, and
//! reports the file server's requests and bytes for the upgrade against the
//! install's.
//!
//! upgrade: allows the upgrade (removes the recorded original commit),
//! stages and reboots again (the channel stays on v2: the lab is left on
//! the upgrade; e2e puts the channel back on lab.kdl's image first);
//! asserts one boot, v2's commit, strace present, and that the second
//! staging fetched only a handful of small files (the objects are already
//! in the guest's repo).

use std::time::Duration;

use anyhow::{Context, bail};

use super::Demo;
use crate::{
    cli::image_promote::promote_in,
    guests::upgrade::{ATTEMPTS, BOOT_TIMEOUT, Report, Target, Verdict, deployments_in_status, describe, render},
    progress::Progress,
    store::LockWait,
};

/// Where the greenboot check keeps the commit the guest was installed with.
const ORIGINAL_COMMIT_FILE: &str = "/etc/greenboot/orig.txt";

/// The images and guest the upgrade is about.
struct Upgrade {
    guest: String,
    /// The channel the guest installed from and follows.
    channel: String,
    from: String,
    to: String,
    from_commit: String,
    to_commit: String,
    /// The package only the newer image has.
    package: String,
}

pub fn rollback_steps(demo: &mut Demo) -> anyhow::Result<()> {
    let up = the_upgrade(demo)?;
    let guest = up.guest.clone();
    runs_original(demo, &up)?;
    demo.step(
        "greenboot recorded the original commit",
        &format!("{ORIGINAL_COMMIT_FILE} holds {}", up.from),
        |demo| {
            let recorded = demo.guest_ok(&guest, &format!("cat {ORIGINAL_COMMIT_FILE}"), Duration::from_secs(30))?;
            match recorded == up.from_commit {
                true => Ok(recorded),
                false => bail!("it holds `{recorded}`"),
            }
        },
    )?;

    promote(demo, &up)?;
    let report = guest_upgrade(
        demo,
        &up,
        &format!(
            "rolled back: {ATTEMPTS} red boots of {}, then a healthy fallback boot of {}; the failed check named, \
             its output quoting the original commit",
            up.to, up.from
        ),
        |report| {
            let (tries, rest) = report.boots.split_at(ATTEMPTS.min(report.boots.len()));
            let tried_new = tries.len() == ATTEMPTS
                && tries
                    .iter()
                    .all(|boot| boot.deployment.starts_with(&up.to_commit) && !boot.healthy && !boot.fallback);
            // A fallback boot that hung (no verdict) is retried, as a
            // watchdog reset would; it is reported, not hidden.
            let fell_back = rest.iter().all(|boot| boot.fallback && boot.deployment.starts_with(&up.from_commit))
                && rest.iter().rev().skip(1).all(|boot| !boot.verdict_seen);
            let named = report
                .failed_checks
                .iter()
                .any(|check| check.name.contains("01_check_upgrade.sh") && check.output.contains(&up.from_commit));
            report.verdict == Verdict::RolledBack && tried_new && fell_back && named
        },
    )?;
    demo.measure("upgrade_requests", report.requests as f64);
    demo.measure("upgrade_bytes", report.bytes as f64);
    demo.measure("rollback_stage_s", report.phases.stage_s);
    demo.measure("rollback_total_s", report.phases.total_s);
    let install = demo.install_pull(&guest)?;
    demo.measure("install_requests", install.requests as f64);
    demo.measure("install_bytes", install.bytes_sent as f64);
    demo.step(
        "the upgrade fetched far less than the install",
        // Both are a handful of requests now (the install pulls a
        // from-scratch delta), so only the bytes tell them apart.
        "under a tenth of the install's bytes (a static delta)",
        |_| {
            let seen = format!(
                "upgrade {} requests, {:.3} MB; install {} requests, {:.3} MB",
                report.requests,
                report.bytes as f64 / 1e6,
                install.requests,
                install.bytes_sent as f64 / 1e6
            );
            match report.requests > 0 && report.bytes * 10 < install.bytes_sent {
                true => Ok(seen),
                false => bail!("{seen}"),
            }
        },
    )?;
    demo.step(&format!("{guest} is up again"), "the system is running", |demo| demo.wait_up(&guest, BOOT_TIMEOUT))?;
    runs_commit(demo, &guest, &up.from, &up.from_commit)?;
    demo.step("the rollback is permanent", &format!("no deployment of {} left", up.to), |demo| {
        let status = demo.guest_ok(&guest, "ostree admin status", Duration::from_secs(60))?;
        match status.contains(&up.to_commit) {
            false => Ok(format!("{} deployment(s), none of {}", deployments_in_status(&status).len(), up.to)),
            true => bail!("`ostree admin status` still lists {}:\n{status}", up.to_commit),
        }
    })?;
    has_package(demo, &up, false)?;
    Ok(())
}

pub fn upgrade_steps(demo: &mut Demo) -> anyhow::Result<()> {
    let up = the_upgrade(demo)?;
    let guest = up.guest.clone();
    runs_original(demo, &up)?;
    demo.step("allow the upgrade", &format!("{ORIGINAL_COMMIT_FILE} removed"), |demo| {
        demo.guest_ok(&guest, &format!("rm -f {ORIGINAL_COMMIT_FILE} && echo removed"), Duration::from_secs(30))
    })?;
    promote(demo, &up)?;
    let boots_before = demo.boots(&guest)?.len();
    let report = guest_upgrade(demo, &up, &format!("healthy on {}: one boot with a verdict", up.to), |report| {
        // Boots that hung before any verdict were retried (and reported).
        let one = report.boots.iter().filter(|boot| boot.verdict_seen).count() == 1;
        report.verdict == Verdict::Healthy && one && report.failed_checks.is_empty()
    })?;
    demo.measure("second_stage_requests", report.requests as f64);
    demo.measure("second_stage_bytes", report.bytes as f64);
    demo.measure("upgrade_stage_s", report.phases.stage_s);
    demo.measure("upgrade_total_s", report.phases.total_s);
    demo.step("the second staging fetched only a handful of small files", "at most 20 requests, under 100 KB", |_| {
        let seen = format!("{} requests, {} bytes", report.requests, report.bytes);
        match report.requests <= 20 && report.bytes < 100_000 {
            true => Ok(seen),
            false => bail!("{seen}"),
        }
    })?;
    demo.step(&format!("{guest} is up again"), "the system is running", |demo| demo.wait_up(&guest, BOOT_TIMEOUT))?;
    demo.step("no further boot", "the guest stays on the healthy boot", |demo| {
        let boots = demo.boots(&guest)?;
        let after = boots[boots_before..].iter().skip_while(|boot| !boot.healthy).count();
        match after {
            1 => Ok("still on it".into()),
            _ => bail!("{}", boots[boots_before..].iter().map(describe).collect::<Vec<_>>().join("; ")),
        }
    })?;
    runs_commit(demo, &guest, &up.to, &up.to_commit)?;
    has_package(demo, &up, true)?;
    Ok(())
}

/// Step: `guest upgrade` of the primary (stage, reboot, greenboot's
/// verdict), its report checked by `good`; returns the report.
fn guest_upgrade(
    demo: &mut Demo,
    up: &Upgrade,
    expected: &str,
    good: impl FnOnce(&Report) -> bool,
) -> anyhow::Result<Report> {
    let mut got = None;
    demo.step(&format!("guest upgrade {}", up.guest), expected, |demo| {
        let target = Target { channel: up.channel.clone(), image: up.to.clone(), commit: up.to_commit.clone() };
        let report = demo.ops().upgrade(&up.guest, &target, &|line| demo.progress.note(line))?;
        let seen = render(&report);
        let ok = good(&report);
        got = Some(report);
        match ok {
            true => Ok(seen),
            false => bail!("{seen}"),
        }
    })?;
    got.context("the upgrade step returned no report")
}

/// The primary guest, the image it was installed with and the image made
/// from that one.
fn the_upgrade(demo: &Demo) -> anyhow::Result<Upgrade> {
    let lab = demo.lab();
    let channel = lab.install_channel().context("the kickstart installs from no channel")?;
    let from = channel.image.clone();
    let to = lab
        .images
        .iter()
        .find(|image| image.parent.as_deref() == Some(from.as_str()))
        .with_context(|| format!("the lab has no image with parent=\"{from}\" to upgrade to"))?;
    let package = to
        .extra_packages
        .first()
        .cloned()
        .with_context(|| format!("image `{}` adds no package, so the upgrade cannot be seen", to.name))?;
    Ok(Upgrade {
        guest: demo.primary()?,
        channel: channel.name.clone(),
        from_commit: demo.image_commit(&from)?,
        to_commit: demo.image_commit(&to.name)?,
        from,
        to: to.name.clone(),
        package,
    })
}

/// Step: the channel the guest follows points at the newer image
/// (`cargo xtask image promote v2`); already there, it is a cached publish.
fn promote(demo: &mut Demo, up: &Upgrade) -> anyhow::Result<()> {
    demo.step(
        &format!("promote {} to channel {}", up.to, up.channel),
        &format!("the channel's ref in the served repo is {}", up.to_commit),
        |demo| {
            let session = demo.session;
            let lock = session.store.lock(LockWait::Wait)?;
            let published = promote_in(session, &lock, &Progress::new(true), &up.to, Some(&up.channel))?;
            match published.commit == up.to_commit {
                true => Ok(format!("{} at {}", published.ostree_ref, published.commit)),
                false => bail!("{} at {}", published.ostree_ref, published.commit),
            }
        },
    )?;
    Ok(())
}

/// Steps: the guest is up and runs the original image.
fn runs_original(demo: &mut Demo, up: &Upgrade) -> anyhow::Result<()> {
    let guest = up.guest.clone();
    demo.step_up(&guest)?;
    runs_commit(demo, &guest, &up.from, &up.from_commit)
}

fn runs_commit(demo: &mut Demo, guest: &str, image: &str, commit: &str) -> anyhow::Result<()> {
    demo.step(&format!("{guest} runs {image}"), &format!("the booted deployment is {commit}"), |demo| {
        let booted = demo.booted_deployment(guest)?;
        match booted.starts_with(commit) {
            true => Ok(booted),
            false => bail!("booted {booted}"),
        }
    })?;
    Ok(())
}

/// Step: the upgrade's package is (or is not) on the guest.
fn has_package(demo: &mut Demo, up: &Upgrade, present: bool) -> anyhow::Result<()> {
    let (name, expected) = match present {
        true => (format!("{} is present", up.package), format!("`command -v {}` finds it", up.package)),
        false => (format!("{} is absent", up.package), format!("`command -v {}` finds nothing", up.package)),
    };
    demo.step(&name, &expected, |demo| {
        let out = demo.guest_sh(&up.guest, &format!("command -v {}", up.package), Duration::from_secs(30))?;
        match (out.status == 0, present) {
            (true, true) => Ok(out.text.trim().to_string()),
            (false, false) => Ok("not found".into()),
            (true, false) => bail!("found at {}", out.text.trim()),
            (false, true) => bail!("not found"),
        }
    })?;
    Ok(())
}
