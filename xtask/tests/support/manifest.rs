//! A manifest for a stage a test publishes by hand (no runner): keyed by its
//! preimage's hash, as the store requires, with no facts and no inputs.
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
