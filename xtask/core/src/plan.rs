//! The Plan: which stages are fresh, which must run, and why.
//!
//! Planning is pure. It walks the graph in dependency order with the host's
//! facts (file digests, tool identities) and a read-only view of the store,
//! computes each stage's key from its deps' recorded output digests, and looks
//! the key up. A stage whose dep must run cannot have its key known yet: it is
//! stale "after" that dep, and early cutoff may still spare it at run time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    graph::{Graph, Stage, StageId},
    key::{Facts, Key, Preimage},
};

/// What the plan needs to know about a published artifact.
#[derive(Debug, Clone)]
pub struct ArtifactInfo {
    pub key: Key,
    pub output_digest: String,
    pub preimage: Preimage,
}

/// A read-only view of the store.
pub trait StoreView {
    /// The published, valid artifact with this key.
    fn artifact(&self, key: &Key) -> Option<ArtifactInfo>;
    /// The newest artifact this stage produced, for explanations.
    fn last(&self, stage: &StageId) -> Option<ArtifactInfo>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Its artifact is in the store: nothing to do.
    Fresh,
    /// It must run.
    Stale,
    /// It must run, but edgelab cannot run it yet in this world.
    Unimplemented,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub stage: String,
    pub status: Status,
    /// Known when all deps are fresh.
    pub key: Option<Key>,
    /// The output digest of the fresh artifact.
    pub output: Option<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
    /// What the inputs ask for that this world will not do (a blueprint key
    /// without local effect), shown after the stages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Plans every stage of `graph`. `capability` says whether a stage can run
/// here; `Err` carries the missing capability, shown to the user.
pub fn plan(
    graph: &Graph,
    facts: &Facts,
    store: &dyn StoreView,
    capability: &dyn Fn(&Stage) -> Result<(), String>,
) -> Plan {
    let mut entries: Vec<PlanEntry> = Vec::new();
    let mut outputs: BTreeMap<&StageId, String> = BTreeMap::new();
    for stage in &graph.stages {
        let mut inputs = BTreeMap::new();
        let mut waiting_on = Vec::new();
        for (role, dep) in &stage.deps {
            match outputs.get(dep) {
                Some(output) => {
                    inputs.insert(role.clone(), output.clone());
                }
                None => {
                    // Say why the dep runs, so the user sees the root cause
                    // ("blueprint RFE.toml changed") at every stage it reaches.
                    let cause = entries
                        .iter()
                        .find(|entry| entry.stage == dep.to_string())
                        .and_then(|entry| entry.reasons.first())
                        .filter(|reason| !reason.starts_with("runs after"))
                        .map(|reason| format!(": {reason}"))
                        .unwrap_or_default();
                    waiting_on.push(format!("{dep}{cause}"));
                }
            }
        }
        let missing_capability = capability(stage).err();
        let entry = if !waiting_on.is_empty() {
            let mut reasons: Vec<String> = waiting_on.iter().map(|dep| format!("runs after {dep}")).collect();
            reasons.extend(missing_capability.iter().map(|missing| format!("cannot run here: {missing}")));
            PlanEntry {
                stage: stage.id.to_string(),
                status: if missing_capability.is_some() { Status::Unimplemented } else { Status::Stale },
                key: None,
                output: None,
                reasons,
            }
        } else {
            let preimage = Preimage::of(stage, facts, inputs);
            let key = preimage.key();
            match store.artifact(&key) {
                Some(artifact) => {
                    outputs.insert(&stage.id, artifact.output_digest.clone());
                    PlanEntry {
                        stage: stage.id.to_string(),
                        status: Status::Fresh,
                        key: Some(key),
                        output: Some(artifact.output_digest),
                        reasons: vec![],
                    }
                }
                None => {
                    let mut reasons = why_stale(stage, &preimage, store);
                    let status = match &missing_capability {
                        Some(missing) => {
                            reasons.push(format!("cannot run here: {missing}"));
                            Status::Unimplemented
                        }
                        None => Status::Stale,
                    };
                    PlanEntry { stage: stage.id.to_string(), status, key: Some(key), output: None, reasons }
                }
            }
        };
        entries.push(entry);
    }
    Plan { entries, warnings: Vec::new() }
}

fn why_stale(stage: &Stage, preimage: &Preimage, store: &dyn StoreView) -> Vec<String> {
    let Some(last) = store.last(&stage.id) else {
        return vec!["never built".into()];
    };
    let reasons = preimage.explain_changes(&last.preimage);
    if reasons.is_empty() {
        // Same preimage as the newest generation, yet no valid artifact: it
        // was removed (gc) or quarantined (verify found it corrupt).
        return vec![format!("artifact {} is missing or corrupt in the store", last.key.short())];
    }
    reasons
}

impl Plan {
    pub fn entry(&self, stage: &StageId) -> Option<&PlanEntry> {
        let name = stage.to_string();
        self.entries.iter().find(|entry| entry.stage == name)
    }

    pub fn n_stale(&self) -> usize {
        self.entries.iter().filter(|entry| entry.status != Status::Fresh).count()
    }

    /// The plan as a table for humans; `explain` adds the reasons.
    pub fn render(&self, explain: bool) -> String {
        let width = self.entries.iter().map(|entry| entry.stage.len()).max().unwrap_or(0);
        let mut out = String::new();
        for entry in &self.entries {
            let status = match entry.status {
                Status::Fresh => "fresh",
                Status::Stale => "stale",
                Status::Unimplemented => "missing",
            };
            let detail = match (&entry.status, entry.reasons.first()) {
                (Status::Fresh, _) => entry.key.as_ref().map(|key| key.short().to_string()).unwrap_or_default(),
                (_, Some(reason)) if !explain => reason.clone(),
                _ => String::new(),
            };
            out.push_str(format!("{:width$}  {status:7}  {detail}", entry.stage).trim_end());
            out.push('\n');
            if explain {
                for reason in &entry.reasons {
                    out.push_str(&format!("{:width$}    - {reason}\n", ""));
                }
            }
        }
        let n_stale = self.n_stale();
        out.push_str(&format!("{} stages, {} to run\n", self.entries.len(), n_stale));
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out
    }
}
