//! The runner behind `lab up`: walks the graph in dependency order, reuses
//! what the store has, runs what is stale in a scratch folder, publishes it,
//! and prints a summary of what ran, what was cached and how long each took.
//!
//! Keys are computed here with the ACTUAL output digests of deps that just
//! ran, which is where early cutoff happens: a dep rebuilt to the same output
//! leaves this stage's key, and so its artifact, unchanged.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;

use crate::{
    graph::{Graph, StageId},
    key::{Facts, Preimage},
    lab::Lab,
    progress::Progress,
    services,
    stages::{self, Input, StageCtx},
    store::{Manifest, Store, StoreLock},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Cached,
    /// Cached, but what it made outside the store was gone; ran again.
    Repaired(String),
    /// Ran although cached, because the user asked (`--rebuild`); the
    /// output the cached artifact had, if there was one.
    Rebuilt {
        previous: Option<String>,
    },
    /// Cannot run in this world yet (the capability is named).
    Missing(String),
    Failed(String),
    /// Not run because a dep failed or is missing.
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct StageReport {
    pub stage: StageId,
    pub outcome: Outcome,
    pub duration: Duration,
    pub output_digest: Option<String>,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub reports: Vec<StageReport>,
}

/// Which stages a run is about.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// These stages and what they depend on; every stage when empty.
    pub wanted: Vec<StageId>,
    /// Run these even when their key is cached (`lab up --rebuild`); what
    /// follows them reruns only if the output changed (early cutoff).
    pub rebuild: BTreeSet<StageId>,
}

/// Runs `wanted` stages (all when empty) and what they depend on.
pub fn run(
    lab: &Lab,
    graph: &Graph,
    facts: &Facts,
    store: &Store,
    lock: &StoreLock,
    wanted: &[StageId],
    progress: &Progress,
) -> Summary {
    let targets = Targets { wanted: wanted.to_vec(), rebuild: BTreeSet::new() };
    run_targets(lab, graph, facts, store, lock, &targets, progress)
}

/// Runs `targets.wanted` (all when empty) and what they depend on, forcing
/// `targets.rebuild`.
pub fn run_targets(
    lab: &Lab,
    graph: &Graph,
    facts: &Facts,
    store: &Store,
    lock: &StoreLock,
    targets: &Targets,
    progress: &Progress,
) -> Summary {
    let selected = if targets.wanted.is_empty() {
        graph.stages.iter().map(|s| s.id.clone()).collect()
    } else {
        let wanted: Vec<StageId> = targets.wanted.iter().chain(&targets.rebuild).cloned().collect();
        graph.upstream_closure(&wanted)
    };
    let mut summary = Summary::default();
    let mut done: BTreeMap<StageId, Input> = BTreeMap::new();
    let mut services_up = BTreeSet::new();
    for stage in graph.stages.iter().filter(|stage| selected.contains(&stage.id)) {
        let started = Instant::now();
        let blocked: Vec<String> =
            stage.deps.values().filter(|dep| !done.contains_key(*dep)).map(|dep| dep.to_string()).collect();
        if !blocked.is_empty() {
            summary.push(stage.id.clone(), Outcome::Skipped(format!("needs {}", blocked.join(", "))), started, None);
            continue;
        }
        // Services a stage talks to (the registry) are started, or restarted
        // if they died, before its result is checked or it runs.
        let service_failed = stages::services_needed(stage).into_iter().find_map(|service| {
            if services_up.contains(&service) {
                return None;
            }
            match services::ensure(lab, store, service) {
                Ok(ensured) => {
                    if let services::Ensured::Restarted { why, .. } = &ensured {
                        progress.note(&format!("restarted the lab {service}: {why}"));
                    }
                    services_up.insert(service);
                    None
                }
                Err(err) => Some(format!("{err:#}")),
            }
        });
        if let Some(err) = service_failed {
            summary.push(stage.id.clone(), Outcome::Failed(err), started, None);
            continue;
        }
        let inputs: BTreeMap<String, Input> =
            stage.deps.iter().map(|(role, dep)| (role.clone(), done[dep].clone())).collect();
        let input_digests = inputs.iter().map(|(role, input)| (role.clone(), input.output_digest.clone())).collect();
        let preimage = Preimage::of(stage, facts, input_digests);
        let key = preimage.key();
        let mut ctx = StageCtx { lab, stage, inputs, out: store.artifact_out(&key), store, progress };

        let mut repaired = None;
        let forced = targets.rebuild.contains(&stage.id);
        let cached = store.artifact_manifest(&key);
        let previous_output = cached.as_ref().filter(|_| forced).map(|manifest| manifest.output_digest.clone());
        if let Some(manifest) = cached.filter(|_| !forced) {
            match stages::check_live(&ctx, &manifest.output_digest) {
                Ok(()) => {
                    done.insert(stage.id.clone(), input_of(store, &manifest));
                    summary.push(stage.id.clone(), Outcome::Cached, started, Some(manifest.output_digest));
                    continue;
                }
                Err(lost) => repaired = Some(lost),
            }
        }
        if let Err(missing) = stages::capability(stage) {
            summary.push(stage.id.clone(), Outcome::Missing(missing), started, None);
            continue;
        }

        let what = match (&repaired, forced) {
            (Some(lost), _) => format!("{} (repairing: {lost})", stage.id),
            (None, true) => format!("{} (rebuilding)", stage.id),
            (None, false) => stage.id.to_string(),
        };
        let started = progress.start(&what);
        let scratch = match store.begin(lock, &stage.id) {
            Ok(scratch) => scratch,
            Err(err) => {
                progress.finish(&format!("failed: {err}"));
                summary.push(stage.id.clone(), Outcome::Failed(err.to_string()), started, None);
                continue;
            }
        };
        ctx.out = scratch.out.clone();
        let result = stages::run(&ctx).with_context(|| format!("stage `{}`", stage.id));
        let result = result.and_then(|output| {
            let manifest = Manifest {
                stage: stage.id.to_string(),
                kind: stage.id.kind,
                key: key.clone(),
                preimage: preimage.clone(),
                output_digest: output.output_digest,
                content_digest: String::new(),
                created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                duration_ms: started.elapsed().as_millis() as u64,
                extra: output.extra,
            };
            // A forced or repairing run's result replaces the cached one: it
            // holds what the cached one lacked.
            match forced || repaired.is_some() {
                true => store.publish_replacing(lock, scratch, manifest.clone())?,
                false => store.publish(lock, scratch, manifest.clone())?,
            };
            Ok(manifest)
        });
        match result {
            Ok(manifest) => {
                progress.finish(&format!("done in {:.1?}", started.elapsed()));
                done.insert(stage.id.clone(), input_of(store, &manifest));
                let outcome = match (repaired, forced) {
                    (Some(lost), _) => Outcome::Repaired(lost),
                    (None, true) => Outcome::Rebuilt { previous: previous_output },
                    (None, false) => Outcome::Ran,
                };
                summary.push(stage.id.clone(), outcome, started, Some(manifest.output_digest));
            }
            Err(err) => {
                progress.finish("failed");
                summary.push(stage.id.clone(), Outcome::Failed(format!("{err:#}")), started, None);
            }
        }
    }
    summary
}

fn input_of(store: &Store, manifest: &Manifest) -> Input {
    Input {
        output_digest: manifest.output_digest.clone(),
        out: store.artifact_out(&manifest.key),
        extra: manifest.extra.clone(),
    }
}

impl Summary {
    fn push(&mut self, stage: StageId, outcome: Outcome, started: Instant, output_digest: Option<String>) {
        self.reports.push(StageReport { stage, outcome, duration: started.elapsed(), output_digest });
    }

    pub fn failed(&self) -> bool {
        self.reports.iter().any(|report| matches!(report.outcome, Outcome::Failed(_)))
    }

    pub fn missing(&self) -> Vec<&StageReport> {
        self.reports.iter().filter(|report| matches!(report.outcome, Outcome::Missing(_))).collect()
    }

    /// The summary table: stage, what happened, how long.
    pub fn render(&self) -> String {
        let width = self.reports.iter().map(|r| r.stage.to_string().len()).max().unwrap_or(5).max(5);
        let mut out = format!("{:width$}  {:9}  {:>8}  detail\n", "stage", "result", "time");
        let (mut n_ran, mut n_cached, mut n_other) = (0, 0, 0);
        for report in &self.reports {
            let (result, detail) = match &report.outcome {
                Outcome::Ran => ("ran", String::new()),
                Outcome::Cached => ("cached", String::new()),
                Outcome::Repaired(lost) => ("repaired", lost.clone()),
                Outcome::Rebuilt { previous } => ("rebuilt", rebuilt_detail(previous.as_deref(), report)),
                Outcome::Missing(missing) => ("missing", format!("not implemented yet: {missing}")),
                Outcome::Failed(err) => ("FAILED", err.lines().next().unwrap_or("").to_string()),
                Outcome::Skipped(why) => ("skipped", why.clone()),
            };
            match report.outcome {
                Outcome::Ran | Outcome::Repaired(_) | Outcome::Rebuilt { .. } => n_ran += 1,
                Outcome::Cached => n_cached += 1,
                _ => n_other += 1,
            }
            let time = format!("{:.1?}", report.duration);
            out.push_str(format!("{:width$}  {result:9}  {time:>8}  {detail}", report.stage.to_string()).trim_end());
            out.push('\n');
        }
        out.push_str(&format!("{n_ran} ran, {n_cached} cached, {n_other} not run\n"));
        // The table shows a failure's first line; here is all of it (the
        // tool's command line and the tail of its output).
        for report in &self.reports {
            if let Outcome::Failed(err) = &report.outcome
                && err.lines().nth(1).is_some()
            {
                out.push_str(&format!(
                    "\n{} failed:\n  {}\n",
                    report.stage,
                    err.lines().collect::<Vec<_>>().join("\n  ")
                ));
            }
        }
        out
    }
}

/// Whether a forced rebuild reproduced the cached output: what decides if
/// the stages after it run.
fn rebuilt_detail(previous: Option<&str>, report: &StageReport) -> String {
    let short = |digest: &str| digest.trim_start_matches("sha256:").chars().take(12).collect::<String>();
    match (previous, report.output_digest.as_deref()) {
        (None, _) => "was not cached".into(),
        (Some(previous), Some(now)) if previous == now => format!("same output {}", short(now)),
        (Some(previous), Some(now)) => format!("output changed {} -> {}", short(previous), short(now)),
        (Some(_), None) => String::new(),
    }
}
