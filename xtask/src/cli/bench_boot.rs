//! `cargo xtask bench boot`: how long the lab's guests take from qemu's start
//! to their health verdict, per accelerator, with both (all) guests booting
//! at once as they do in the lab.
//!
//! Each run destroys every guest and starts all their launchers together
//! with the accelerator forced (`guest run-launcher --accel`); a run's figure
//! per guest is its next boot record's seconds to a verdict. A boot that
//! qemu stopped for an accelerator fault is counted as a fault (the launcher
//! then boots it under TCG, which this accelerator's figures leave out).
//! KVM is measured only where the boot-sector probe says it runs. The guests
//! that were running are started again afterwards, with the lab's own
//! accelerator. JSON in `bench/results/boot.json`.

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use serde_json::json;

use super::{Global, Session, project_root};
use crate::{
    graph::{StageId, StageKind},
    guests::{self, netns},
    tools::qemu::{self, Accel},
};

/// The goal issue 14 sets: boot to a health verdict under TCG.
const GOAL_TCG_S: f64 = 30.0;
/// How long one run may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, clap::Args)]
pub struct BootBenchArgs {
    /// Boots of every guest per accelerator.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Accelerators to measure (KVM only where it runs).
    #[arg(long, value_delimiter = ',', default_value = "tcg,kvm")]
    pub accel: Vec<String>,
    /// Where boot.json goes (default bench/results/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(global: &Global, args: &BootBenchArgs) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    crate::world::guests(&session.lab).supports("bench boot")?;
    let names: Vec<String> = session.lab.guests.iter().map(|guest| guest.name.clone()).collect();
    for name in &names {
        if session.store.last_manifest(&StageId::new(StageKind::Install, name.as_str())).is_none() {
            bail!("guest {name} is not installed: run `cargo xtask lab up` first");
        }
    }
    let was_running: Vec<String> = names.iter().filter(|name| guests::runs(&session.store, name)).cloned().collect();
    netns::up(&session.store, &netns::segment(&session.lab))?;
    let current = session.current()?;
    for name in &names {
        guests::prepare(&session.lab, &session.store, &current, name, false)?;
    }

    let mut results = serde_json::Map::new();
    for word in &args.accel {
        let accel = match word.as_str() {
            "tcg" => Accel::Tcg,
            "kvm" => Accel::Kvm,
            other => bail!("--accel {other}: expected tcg or kvm"),
        };
        if accel == Accel::Kvm && qemu::probe_accel(&session.store.run_dir("probe")?)? != Accel::Kvm {
            println!("kvm: skipped (the boot-sector probe does not run under KVM here)");
            results.insert(word.clone(), json!({ "skipped": "the boot-sector probe does not run under KVM here" }));
            continue;
        }
        let mut seconds = Vec::new();
        let mut faults = Vec::new();
        for run in 1..=args.runs {
            let boots = boot_all(&session, &names, accel)
                .with_context(|| format!("bench boot: run {run} under {}", accel.as_str()))?;
            for (name, boot) in boots {
                match boot.host_fault {
                    Some(fault) => {
                        println!("{} run {run}: {name} stopped by a host fault: {fault}", accel.as_str());
                        faults.push(json!({ "guest": name, "run": run, "fault": fault }));
                    }
                    None => {
                        println!("{} run {run}: {name} verdict after {:.1}s", accel.as_str(), boot.seconds);
                        seconds.push(boot.seconds);
                    }
                }
            }
        }
        let median = if seconds.is_empty() { f64::NAN } else { super::bench_meta::median(&seconds) };
        let max = seconds.iter().copied().fold(f64::NAN, f64::max);
        match seconds.is_empty() {
            true => {
                println!("{}: no boot reached a verdict ({} stopped by a host fault)", accel.as_str(), faults.len())
            }
            false => println!("{}: median {median:.1}s to a verdict over {} boots", accel.as_str(), seconds.len()),
        }
        results.insert(
            word.clone(),
            json!({
                "boots_s": seconds.iter().map(|s| (s * 10.0).round() / 10.0).collect::<Vec<_>>(),
                "median_s": median,
                "max_s": (max * 10.0).round() / 10.0,
                "host_faults": faults,
            }),
        );
    }
    for name in &names {
        guests::destroy(&session.store, name)?;
    }
    for name in &was_running {
        guests::start(&session.store, name, &guests::launcher_args(&session.lab, &session.store, name))?;
        println!("guest {name}: started again");
    }

    let tcg_median = results.get("tcg").and_then(|it| it.get("median_s")).and_then(|it| it.as_f64());
    let report = json!({
        "date": super::bench_meta::utc_date(SystemTime::now()),
        "machine": super::bench_meta::machine(),
        "lab": session.lab.name,
        "guests": names,
        "runs": args.runs,
        "what": "seconds from qemu's start to the guest's health verdict, all guests booting at once",
        "accel": results,
        "goal": { "tcg_median_at_most_s": GOAL_TCG_S, "met": tcg_median.is_some_and(|it| it <= GOAL_TCG_S) },
    });
    let out_dir = args.out.clone().unwrap_or_else(|| project_root().join("bench/results"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("boot.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}

/// Destroys every guest, starts them all under `accel`, and returns each
/// one's first new boot record with a verdict or a host fault.
fn boot_all(session: &Session, names: &[String], accel: Accel) -> anyhow::Result<Vec<(String, guests::BootRecord)>> {
    let mut seen = Vec::new();
    for name in names {
        guests::destroy(&session.store, name)?;
        seen.push(guests::boots(&guests::guest_dir(&session.store, name)?).len());
    }
    for name in names {
        let mut launcher = guests::launcher_args(&session.lab, &session.store, name);
        launcher.extend(["--accel".to_string(), accel.as_str().to_string()]);
        guests::start(&session.store, name, &launcher)?;
    }
    let started = Instant::now();
    let mut done: Vec<Option<guests::BootRecord>> = vec![None; names.len()];
    while done.iter().any(Option::is_none) {
        if started.elapsed() > RUN_LIMIT {
            let waiting: Vec<&str> =
                names.iter().zip(&done).filter(|(_, it)| it.is_none()).map(|(name, _)| name.as_str()).collect();
            bail!("no verdict within {RUN_LIMIT:?} from {}", waiting.join(", "));
        }
        for (idx, name) in names.iter().enumerate() {
            if done[idx].is_some() {
                continue;
            }
            let boots = guests::boots(&guests::guest_dir(&session.store, name)?);
            done[idx] = boots.into_iter().skip(seen[idx]).find(|boot| boot.verdict_seen || boot.host_fault.is_some());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(names.iter().cloned().zip(done.into_iter().flatten()).collect())
}
