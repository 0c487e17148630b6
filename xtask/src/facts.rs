//! Gathering Facts: the digests of every file the graph's stages read, the
//! identity of every tool they run, and the run state they depend on (where
//! `image promote` pointed a channel). This is the I/O half of planning; the plan
//! itself (`plan.rs`) is pure. Unchanged files come from the stat cache.

use std::collections::BTreeSet;

use anyhow::Context;

use crate::{
    graph::Graph,
    key::Facts,
    store::{StatCache, Store},
    tools,
};

/// Counts for `bench plan` and `--verbose`.
#[derive(Debug, Default, Clone, Copy)]
pub struct GatherStats {
    pub n_files_hashed: u64,
    pub n_cache_hits: u64,
    pub bytes_hashed: u64,
}

/// Digests every input of `graph` and identifies its tools.
pub fn gather(graph: &Graph, store: &Store, cache: &mut StatCache) -> anyhow::Result<(Facts, GatherStats)> {
    let mut facts = Facts::default();
    let paths: BTreeSet<&std::path::PathBuf> = graph.stages.iter().flat_map(|stage| stage.files.values()).collect();
    for path in paths {
        let digest =
            crate::hash::digest_path(path, Some(cache)).with_context(|| format!("hashing {}", path.display()))?;
        facts.file_digests.insert(path.clone(), digest);
    }
    let programs: BTreeSet<&str> = graph.stages.iter().flat_map(|stage| stage.tools.iter().copied()).collect();
    let mut ids = load_identity_cache(store);
    for program in programs {
        facts.tool_ids.insert(program.to_string(), tools::identity(program, &mut ids));
    }
    save_identity_cache(store, &ids);
    let names: BTreeSet<&String> = graph.stages.iter().flat_map(|stage| stage.state.iter()).collect();
    for name in names {
        if let Some(value) = crate::stages::publish::state_fact(store, name) {
            facts.state.insert(name.clone(), value);
        }
    }
    let stats =
        GatherStats { n_files_hashed: cache.n_hashed, n_cache_hits: cache.n_hits, bytes_hashed: cache.bytes_hashed };
    Ok((facts, stats))
}

fn load_identity_cache(store: &Store) -> tools::IdentityCache {
    store.load_state("tool-identities.json").and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

fn save_identity_cache(store: &Store, ids: &tools::IdentityCache) {
    if ids.dirty {
        store.save_state("tool-identities.json", &serde_json::to_vec_pretty(ids).unwrap_or_default()).ok();
    }
}
