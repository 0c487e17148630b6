//! The `tag` stage: a registry tag (`prod`) pointing at one of the app's
//! pushed builds, set by copying the manifest through the registry's HTTP
//! API (no process needed).
//!
//! Promotion (`cargo xtask container promote httpd v2 --tag prod`) is an
//! explicit user action that must outlive the next `lab up`: lab.kdl still
//! says `tag "prod" "v1"`, and reverting prod on every `lab up` would undo
//! the auto-update demo behind the user's back. So a promotion is recorded
//! in run state (`run/container-promotions.json`) and this stage honours it:
//! while a promotion is recorded the tag follows the promoted build (its
//! newest push), otherwise the declared one. Promoting back to the declared
//! build removes the record. The stage's key and output digest stay those of
//! the declared build (what lab.kdl says); `check_live` compares the registry
//! with the build the tag should follow now, so a promotion or a lost tag is
//! repaired without a key change.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{StageCtx, StageOutput};
use crate::{
    current::Current,
    graph::{StageId, StageKind},
    key::short_digest,
    lab::Lab,
    services::registry,
    store::Store,
};

/// The run-state file holding promotions.
pub const PROMOTIONS_FILE: &str = "container-promotions.json";

/// Promoted tags: `APP:TAG` -> the build it follows instead of lab.kdl's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Promotions {
    pub tags: BTreeMap<String, Promotion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub build: String,
    /// The build's pushed digest when promoted (used if its push is gone).
    pub digest: String,
}

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let (repository, tag, declared) = (param(ctx, "repository")?, param(ctx, "tag")?, param(ctx, "build")?);
    super::container::find_build(ctx.lab, repository, declared)
        .with_context(|| format!("tag `{tag}` of container `{repository}` points at an unknown build"))?;
    let pushed = ctx.inputs.get("pushed").context("the tag stage has no pushed input")?;
    let (build, digest) = target(ctx.lab, ctx.store, repository, tag, declared, &pushed.output_digest);
    let endpoint = registry::endpoint(ctx.lab);
    registry::tag_manifest(endpoint, repository, &digest, tag)
        .with_context(|| format!("tagging {repository}:{tag} as {build} ({})", short_digest(&digest)))?;
    let extra =
        json!({ "repository": repository, "tag": tag, "declared": declared, "points_at": build, "digest": digest });
    std::fs::write(ctx.out.join("tag.json"), serde_json::to_vec_pretty(&extra)?)?;
    Ok(StageOutput { output_digest: pushed.output_digest.clone(), extra })
}

/// Does the tag point where it should now (the declared build, or the
/// promoted one)?
pub fn check_live(ctx: &StageCtx, output_digest: &str) -> Result<(), String> {
    let (Ok(repository), Ok(tag), Ok(declared)) = (param(ctx, "repository"), param(ctx, "tag"), param(ctx, "build"))
    else {
        return Err("stage parameters missing".into());
    };
    let (build, wanted) = target(ctx.lab, ctx.store, repository, tag, declared, output_digest);
    match registry::manifest_digest(registry::endpoint(ctx.lab), repository, tag) {
        Ok(Some(digest)) if digest == wanted => Ok(()),
        Ok(Some(digest)) => Err(format!(
            "{repository}:{tag} is {}, but should follow {build} ({})",
            short_digest(&digest),
            short_digest(&wanted)
        )),
        Ok(None) => Err(format!("the registry no longer has {repository}:{tag}")),
        Err(err) => Err(format!("{err:#}")),
    }
}

/// The recorded promotions.
pub fn load_promotions(store: &Store) -> Promotions {
    store.load_state(PROMOTIONS_FILE).and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// Records that `app:tag` follows `promotion`, or, with `None`, that it
/// follows lab.kdl again.
pub fn record_promotion(store: &Store, app: &str, tag: &str, promotion: Option<Promotion>) -> anyhow::Result<()> {
    let mut promotions = load_promotions(store);
    let name = format!("{app}:{tag}");
    match promotion {
        Some(promotion) => promotions.tags.insert(name, promotion),
        None => promotions.tags.remove(&name),
    };
    store.save_state(PROMOTIONS_FILE, &serde_json::to_vec_pretty(&promotions)?)?;
    Ok(())
}

/// The build and digest `app:tag` should point at now.
fn target(lab: &Lab, store: &Store, app: &str, tag: &str, declared: &str, declared_digest: &str) -> (String, String) {
    match load_promotions(store).tags.remove(&format!("{app}:{tag}")) {
        Some(promotion) if promotion.build != declared => {
            // Follow the promoted build's current push, so prod tracks a
            // rebuilt v2 until it is promoted back.
            let push = StageId::new(StageKind::Push, format!("{app}-{}", promotion.build));
            let current = Current::of(lab, store).and_then(|current| current.manifest(store, &push));
            let digest = current.map(|it| it.output_digest).unwrap_or(promotion.digest);
            (promotion.build, digest)
        }
        _ => (declared.to_string(), declared_digest.to_string()),
    }
}

fn param<'a>(ctx: &'a StageCtx, name: &str) -> anyhow::Result<&'a str> {
    ctx.stage.params.get(name).and_then(|value| value.as_str()).with_context(|| format!("stage parameter `{name}`"))
}
