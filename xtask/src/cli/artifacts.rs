//! `cargo xtask artifacts ls|gc|verify`.

use std::collections::BTreeSet;

use super::{Global, Session, lab_cmd::compute_plan};
use crate::key::Key;

pub fn ls(global: &Global) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let manifests = session.store.list();
    let width = manifests.iter().map(|m| m.stage.len()).max().unwrap_or(5).max(5);
    println!("{:width$}  {:12}  {:>10}  {:>8}  output", "stage", "key", "created", "took");
    for manifest in &manifests {
        println!(
            "{:width$}  {:12}  {:>10}  {:>8}  {}",
            manifest.stage,
            manifest.key.short(),
            manifest.created_unix,
            format!("{:.1?}", manifest.duration()),
            crate::key::short_digest(&manifest.output_digest)
        );
    }
    println!("{} artifacts in {}", manifests.len(), session.store.root().display());
    Ok(())
}

pub fn gc(global: &Global) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let plan = compute_plan(&session)?;
    let reachable: BTreeSet<Key> = plan.entries.iter().filter_map(|entry| entry.key.clone()).collect();
    let lock = session.store.lock(global.lock_wait())?;
    let report = session.store.gc(&lock, &reachable, session.lab.store.keep_generations as usize);
    for removed in &report.removed {
        println!("removed {removed}");
    }
    println!(
        "kept {}, removed {} (and {} quarantined), freed {:.1} MiB",
        report.kept,
        report.removed.len(),
        report.n_quarantine_removed,
        report.bytes_freed as f64 / 1048576.0
    );
    Ok(())
}

pub fn verify(global: &Global) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let lock = session.store.lock(global.lock_wait())?;
    let report = session.store.verify(&lock);
    for entry in &report.corrupt {
        let stage = entry.stage.as_deref().unwrap_or("unknown stage");
        println!("corrupt: {stage} {}: {}", &entry.key[..12], entry.problem);
        if let Some(to) = &entry.quarantined_to {
            println!("  moved to {} (the next `lab up` rebuilds it)", to.display());
        }
    }
    println!("checked {}, corrupt {}", report.checked, report.corrupt.len());
    if !report.corrupt.is_empty() {
        anyhow::bail!("{} corrupt artifact(s) quarantined", report.corrupt.len());
    }
    Ok(())
}
