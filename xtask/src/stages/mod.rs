//! Stages: HOW each kind of stage runs. One file per kind, each with one
//! public `run` function; this file dispatches to them and says which kinds
//! can run in which world.
//!
//! A stage gets a `StageCtx`: the lab, its Stage (what to build), the outputs
//! of its deps, and a scratch `out/` folder in the store. It returns the
//! output digest; the runner writes the manifest and publishes.

pub mod blueprint;
pub mod compose;
pub mod container;
pub mod install;
pub mod iso;
pub mod kickstart;
pub mod prereqs;
pub mod publish;
pub mod push;
pub mod repo;
pub mod tag;

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::Value;

use crate::{
    graph::{Stage, StageKind},
    lab::Lab,
    progress::Progress,
    services::Service,
    store::Store,
};

/// A dep's published artifact, as a running stage sees it.
#[derive(Debug, Clone)]
pub struct Input {
    pub output_digest: String,
    /// The artifact's `out/` folder (read-only by convention).
    pub out: PathBuf,
    pub extra: Value,
}

/// Everything a running stage may use.
pub struct StageCtx<'a> {
    pub lab: &'a Lab,
    pub stage: &'a Stage,
    /// Dependency role -> its artifact (`parent`, `blueprint`, `image v1`).
    pub inputs: BTreeMap<String, Input>,
    /// Where the stage writes what it produces.
    pub out: PathBuf,
    /// For run state of services a stage needs (the registry for pushes).
    pub store: &'a Store,
    pub progress: &'a Progress,
}

/// What a stage produced.
#[derive(Debug, Clone)]
pub struct StageOutput {
    /// The digest downstream keys use: a native content address when there
    /// is one (OCI manifest digest, OSTree commit), else sha256 of `out/`.
    pub output_digest: String,
    /// Stage-specific facts kept in the manifest.
    pub extra: Value,
}

/// Whether this build of edgelab can run `stage` in its resolved world;
/// `Err` names the missing capability.
pub fn capability(stage: &Stage) -> Result<(), String> {
    match stage.id.kind {
        StageKind::Prereqs | StageKind::Blueprint | StageKind::Kickstart | StageKind::Iso => Ok(()),
        StageKind::Container | StageKind::Push | StageKind::Tag => Ok(()),
        StageKind::Compose | StageKind::Repo | StageKind::Publish | StageKind::Install => Ok(()),
    }
}

/// Runs `ctx.stage`, writing into `ctx.out`. Stages that talk to the lab's
/// services run where those live (the lab's network namespace, local world).
pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    if services_needed(ctx.stage).is_empty() {
        return run_here(ctx);
    }
    crate::guests::netns::in_lab(ctx.lab, ctx.store, || run_here(ctx))?
}

fn run_here(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    match ctx.stage.id.kind {
        StageKind::Prereqs => prereqs::run(ctx),
        StageKind::Blueprint => blueprint::run(ctx),
        StageKind::Container => container::run(ctx),
        StageKind::Push => push::run(ctx),
        StageKind::Tag => tag::run(ctx),
        StageKind::Compose => compose::run(ctx),
        StageKind::Kickstart => kickstart::run(ctx),
        StageKind::Iso => iso::run(ctx),
        StageKind::Repo => repo::run(ctx),
        StageKind::Publish => publish::run(ctx),
        StageKind::Install => install::run(ctx),
    }
}

/// For stages whose result lives outside the store too (a pushed image, an
/// installed package): is that outside state still there? `Err` says what
/// was lost; the runner then reruns the stage even though its key is cached.
pub fn check_live(ctx: &StageCtx, output_digest: &str) -> Result<(), String> {
    if services_needed(ctx.stage).is_empty() {
        return check_live_here(ctx, output_digest);
    }
    crate::guests::netns::in_lab(ctx.lab, ctx.store, || check_live_here(ctx, output_digest))
        .unwrap_or_else(|err| Err(format!("{err:#}")))
}

fn check_live_here(ctx: &StageCtx, output_digest: &str) -> Result<(), String> {
    match ctx.stage.id.kind {
        StageKind::Prereqs => prereqs::check_live(ctx, output_digest),
        StageKind::Push => push::check_live(ctx, output_digest),
        StageKind::Tag => tag::check_live(ctx, output_digest),
        StageKind::Repo => repo::check_live(ctx, output_digest),
        StageKind::Publish => publish::check_live(ctx, output_digest),
        _ => Ok(()),
    }
}

/// Services that must be up before `stage` runs or is checked (pushes and
/// tags talk to the registry). The runner ensures them.
pub fn services_needed(stage: &Stage) -> Vec<Service> {
    match stage.id.kind {
        StageKind::Push | StageKind::Tag => vec![Service::Registry],
        // The install pulls from the lab's file server, as a guest would.
        StageKind::Install => vec![Service::FileServer],
        _ => vec![],
    }
}

/// sha256 of a stage's `out/` folder, for stages with no native address.
pub fn digest_out(out: &std::path::Path) -> anyhow::Result<String> {
    Ok(crate::hash::digest_path(out, None)?)
}
