//! A manifest for a stage a test publishes by hand (no runner): keyed by its
//! preimage's hash, as the store requires, with no facts and no inputs, or
//! (`current_manifest_for`) with the host's facts and its deps' outputs, so
//! the plan calls it the stage's current artifact.
//! Included with `#[path = "support/manifest.rs"] mod manifest;`.

use edgelab::{
    graph::Stage,
    key::{Facts, Preimage},
    store::Manifest,
};

/// `stage`'s manifest with a placeholder output digest and `extra`.
pub fn manifest_for(stage: &Stage, extra: serde_json::Value) -> Manifest {
    let preimage = Preimage::of(stage, &Facts::default(), Default::default());
    Manifest {
        stage: stage.id.to_string(),
        kind: stage.id.kind,
        key: preimage.key(),
        preimage,
        output_digest: format!("sha256:{}", "0".repeat(64)),
        content_digest: String::new(),
        created_unix: 0,
        duration_ms: 1,
        extra,
    }
}

/// `stage`'s manifest keyed as the plan keys it: with `facts` and the
/// output digests of its deps by role; `output_digest` is what it made.
#[allow(dead_code)]
pub fn current_manifest_for(
    stage: &Stage,
    facts: &Facts,
    inputs: std::collections::BTreeMap<String, String>,
    output_digest: &str,
    extra: serde_json::Value,
) -> Manifest {
    let preimage = Preimage::of(stage, facts, inputs);
    Manifest { key: preimage.key(), preimage, output_digest: output_digest.to_string(), ..manifest_for(stage, extra) }
}
