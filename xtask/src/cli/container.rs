//! `cargo xtask container promote APP BUILD --tag TAG`: the auto-update step.
//!
//! Makes sure BUILD is built and pushed (through the runner, so usually all
//! cached), records the promotion in run state, then runs the tag stage,
//! which honours it (see `stages::tag` for why a promotion outlives
//! `lab up`). Promoting the build lab.kdl declares for the tag clears the
//! record. The result is read back from the registry.

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::{
    graph::{Graph, StageId, StageKind},
    key::{Facts, short_digest},
    lab::Lab,
    progress::Progress,
    runner,
    services::registry,
    stages::{container, tag},
    store::{Store, StoreLock},
};

pub fn promote(global: &Global, app: &str, build: &str, tag_name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let lock = session.store.lock(global.lock_wait())?;
    let facts = session.facts()?;
    let progress = Progress::new(global.quiet);
    let digest =
        promote_in(&session.lab, &session.graph, &facts, &session.store, &lock, &progress, app, build, tag_name)?;
    println!("{app}:{tag_name} -> {build} ({digest})");
    Ok(())
}

/// `promote` on an already loaded lab; returns the digest the tag now has.
#[allow(clippy::too_many_arguments)]
pub fn promote_in(
    lab: &Lab,
    graph: &Graph,
    facts: &Facts,
    store: &Store,
    lock: &StoreLock,
    progress: &Progress,
    app: &str,
    build: &str,
    tag_name: &str,
) -> anyhow::Result<String> {
    let (container, _) = container::find_build(lab, app, build)?;
    let Some(declared) = container.tags.iter().find(|it| it.name == tag_name) else {
        let names: Vec<&str> = container.tags.iter().map(|it| it.name.as_str()).collect();
        bail!(
            "container `{app}` declares no tag `{tag_name}` (declared: {}); add `tag \"{tag_name}\" \"{build}\"` \
             to its block in lab.kdl",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        );
    };
    let push = StageId::new(StageKind::Push, format!("{app}-{build}"));
    let summary = runner::run(lab, graph, facts, store, lock, std::slice::from_ref(&push), progress);
    let Some(digest) = summary.reports.iter().find(|it| it.stage == push).and_then(|it| it.output_digest.clone())
    else {
        bail!("{push} did not succeed, so {app}:{build} cannot be promoted:\n{}", summary.render());
    };
    let promotion =
        (declared.build != build).then(|| tag::Promotion { build: build.to_string(), digest: digest.clone() });
    tag::record_promotion(store, app, tag_name, promotion)?;

    let tag_stage = StageId::new(StageKind::Tag, format!("{app}-{tag_name}"));
    let summary = runner::run(lab, graph, facts, store, lock, std::slice::from_ref(&tag_stage), progress);
    if summary.failed() {
        bail!("retagging {app}:{tag_name} failed:\n{}", summary.render());
    }
    // The registry lives inside the lab's network namespace (local world).
    let endpoint = registry::endpoint(lab);
    let now = crate::guests::netns::in_lab_if_up(lab, || registry::manifest_digest(endpoint, app, tag_name))??
        .with_context(|| format!("the registry has no {app}:{tag_name} after retagging"))?;
    if now != digest {
        bail!(
            "{app}:{tag_name} is {} after promotion, expected {build}'s {}",
            short_digest(&now),
            short_digest(&digest)
        );
    }
    Ok(now)
}
