//! `cargo xtask demo SCENARIO` and `cargo xtask e2e`.

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::demo::{self, Report};

/// `demo NAME`: one scenario against the lab as it is (`lab up` first).
pub fn demo_cmd(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let report = demo::run(&session.lab, &session.store, name)?;
    finish(&session, &[report])
}

/// `e2e`: `lab up`, then every scenario in order, with a report.
pub fn e2e(global: &Global) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    super::lab_cmd::up(global, &[], &[]).context("e2e: bringing the lab up")?;
    println!("e2e: lab up in {:.1}s", started.elapsed().as_secs_f64());
    let session = Session::load(global)?;
    let mut reports = Vec::new();
    for name in demo::SCENARIOS {
        let report = demo::run(&session.lab, &session.store, name)?;
        let failed = !report.ok;
        reports.push(report);
        if failed {
            break;
        }
    }
    finish(&session, &reports)
}

fn finish(session: &Session, reports: &[Report]) -> anyhow::Result<()> {
    let text = demo::render(reports);
    print!("{text}");
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
