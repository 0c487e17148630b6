//! `cargo xtask demo SCENARIO` and `cargo xtask e2e`.

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::{
    demo::{self, Report},
    guests,
    stages::{publish, tag},
};

/// `demo NAME`: one scenario against the lab as it is (`lab up` first).
pub fn demo_cmd(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    local_world(&session)?;
    let report = demo::run(&session, name)?;
    finish(&session, &[report])
}

/// `e2e`: a fresh lab (every guest back on its pristine disk, every tag and
/// channel as lab.kdl declares it), `lab up`, then every scenario in order,
/// with a report. Stops at the first failed scenario: the later ones build on it.
pub fn e2e(global: &Global) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    {
        let session = Session::load(global)?;
        local_world(&session)?;
        fresh_lab(&session)?;
    }
    super::lab_cmd::up(global, &super::lab_cmd::UpOptions { guests: true, ..Default::default() })
        .context("e2e: bringing the lab up")?;
    println!("e2e: lab up in {:.1}s", started.elapsed().as_secs_f64());
    let session = Session::load(global)?;
    let mut reports = Vec::new();
    for name in demo::SCENARIOS {
        println!("e2e: scenario {name}");
        let report = demo::run(&session, name)?;
        let failed = !report.ok;
        print!("{}", demo::render(std::slice::from_ref(&report)));
        reports.push(report);
        if failed {
            break;
        }
    }
    println!("e2e: done in {:.1}s", started.elapsed().as_secs_f64());
    finish(&session, &reports)
}

/// The scenarios check guests through the local world's check shell.
fn local_world(session: &Session) -> anyhow::Result<()> {
    crate::world::guests(&session.lab).supports("the demo scenarios")
}

/// Destroys the guests and forgets their disks (the next `lab up` copies
/// the pristine install artifacts again), and drops tag and channel
/// promotions.
fn fresh_lab(session: &Session) -> anyhow::Result<()> {
    for guest in &session.lab.guests {
        guests::destroy(&session.store, &guest.name)?;
        if guests::forget_disk(&session.store, &guest.name)? {
            println!("e2e: {} back to its pristine disk", guest.name);
        }
    }
    for container in &session.lab.containers {
        for declared in &container.tags {
            tag::record_promotion(&session.store, &container.name, &declared.name, None)?;
        }
    }
    for channel in &session.lab.channels {
        publish::record_promotion(&session.store, &channel.name, None)?;
    }
    Ok(())
}

fn finish(session: &Session, reports: &[Report]) -> anyhow::Result<()> {
    let text = demo::render(reports);
    let dir = session.store.run_dir("e2e")?;
    std::fs::write(dir.join("report.txt"), &text).context("writing the e2e report")?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(reports)?).context("writing the e2e report")?;
    println!("report: {}", dir.join("report.txt").display());
    if let Some(failed) = reports.iter().find(|report| !report.ok) {
        let step = failed.steps.iter().find(|step| !step.ok);
        match step {
            Some(step) => bail!("scenario {} failed at `{}`: {}", failed.scenario, step.name, step.seen),
            None => bail!("scenario {} failed", failed.scenario),
        }
    }
    Ok(())
}
