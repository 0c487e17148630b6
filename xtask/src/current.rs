//! The current artifact of a stage: the one whose key `lab plan` computes
//! now (from the lab's files and tools as they are and the recorded outputs
//! of the stage's deps), the one `lab plan` calls fresh. Every command and
//! service that shows, serves, installs or boots a stage's result takes it
//! from here. The most recently built artifact (`Store::last_manifest`) is
//! for explanations only: after a revert (change a blueprint, `lab up`,
//! change it back, `lab up`) it is the build the lab no longer describes.

use anyhow::bail;

use crate::{
    graph::{self, StageId},
    lab::Lab,
    plan::{self, Plan, Status},
    stages,
    store::{Manifest, Store},
};

/// The plan's view of which artifact is current for each stage.
#[derive(Debug, Clone)]
pub struct Current {
    plan: Plan,
}

impl Current {
    /// Plans `lab` against `store` (file digests through the store's stat
    /// cache, as `lab plan` does).
    pub fn of(lab: &Lab, store: &Store) -> anyhow::Result<Current> {
        let graph = graph::build(lab);
        let mut cache = store.load_stat_cache();
        let (facts, _stats) = crate::facts::gather(&graph, store, &mut cache)?;
        store.save_stat_cache(&cache);
        Ok(Current::from_plan(plan::plan(&graph, &facts, store, &stages::capability)))
    }

    /// From a plan the caller already made.
    pub fn from_plan(plan: Plan) -> Current {
        Current { plan }
    }

    /// The manifest of `stage`'s current artifact; an error naming the stage
    /// and why it has none (its inputs changed since its last build, or it
    /// was never built) when the store has none.
    pub fn manifest(&self, store: &Store, stage: &StageId) -> anyhow::Result<Manifest> {
        let Some(entry) = self.plan.entry(stage) else {
            bail!("there is no stage `{stage}` in the lab");
        };
        let found = match (&entry.status, &entry.key) {
            (Status::Fresh, Some(key)) => store.artifact_manifest(key),
            _ => None,
        };
        match found {
            Some(manifest) => Ok(manifest),
            None => {
                let why = entry.reasons.first().map(|reason| format!(" ({reason})")).unwrap_or_default();
                bail!("{stage} has no current build{why}: run `cargo xtask lab up`")
            }
        }
    }

    /// Whether `stage` has a current artifact.
    pub fn is_built(&self, store: &Store, stage: &StageId) -> bool {
        self.manifest(store, stage).is_ok()
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}
