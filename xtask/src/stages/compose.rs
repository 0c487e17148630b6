//! The `compose` stage: an OSTree edge commit of one lab image, by either
//! world's composer (`crate::compose`). It builds the `ComposeRequest` from
//! the blueprint stage's output plus the image's extra packages (version
//! bumped by the rule in `crate::blueprint`), and the parent compose's output
//! (its commit id, its extracted `repo/`, the lab's served repo URL), then
//! hands it to the composer of the stage's world (`crate::world::composer`).
//!
//! Output digest: the OSTree commit id. `out/` holds the tarball as composer
//! makes it, and the tarball extracted beside it (`compose.json`, `repo/`)
//! for the served repo and for the next image's parent. The resolved package
//! NEVRAs are recorded in the manifest (composer is not hermetic; `image
//! info` shows them).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{StageCtx, StageOutput};
use crate::{
    compose::{
        ComposeBackend, ComposeRequest,
        weldr::{self, WeldrComposer},
    },
    store::Store,
};

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let name = &ctx.stage.id.name;
    let image = ctx.lab.image(name).with_context(|| format!("image `{name}` is not in the lab"))?;
    let blueprint_input =
        ctx.inputs.get("blueprint").with_context(|| format!("image `{name}`: its blueprint was not built"))?;
    let base = super::blueprint::read_output(&blueprint_input.out)?;
    let composed = crate::blueprint::composed_blueprint(&base, ctx.lab, image);
    let (parent_commit, parent_repo, parent_url) = match &image.parent {
        None => (None, None, None),
        Some(parent) => {
            let Some(input) = ctx.inputs.get("parent") else {
                bail!(
                    "image `{name}`: its parent image `{parent}` has not been composed: \
                     run `cargo xtask image {parent}` first"
                );
            };
            if !weldr::is_commit_id(&input.output_digest) {
                bail!("image `{name}`: parent `{parent}`'s output `{}` is not a commit id", input.output_digest);
            }
            let repo = input.out.join("repo");
            let url = ctx.stage.params.get("parent-url").and_then(Value::as_str).map(str::to_string);
            (Some(input.output_digest.clone()), repo.is_dir().then_some(repo), url)
        }
    };
    let request = ComposeRequest {
        image: name.clone(),
        blueprint: composed.clone(),
        ostree_ref: image.ostree_ref.clone(),
        parent_commit,
        parent_url,
        parent_repo,
        package_map: ctx.stage.params.get("package-map").cloned().unwrap_or(json!([])),
    };
    let backend = crate::world::composer(ctx.stage.backend, ctx.store)?;
    let result = backend.compose(&request, &ctx.out, ctx.progress)?;
    if !weldr::is_commit_id(&result.commit) {
        bail!("image `{name}`: the {} composer returned `{}`, not a commit id", backend.name(), result.commit);
    }
    extract(&result.tarball, &ctx.out)?;
    let composed_toml = ctx.out.join("blueprint.toml");
    std::fs::write(&composed_toml, composed.to_toml())
        .with_context(|| format!("writing {}", composed_toml.display()))?;
    Ok(StageOutput {
        output_digest: result.commit.clone(),
        extra: json!({
            "commit": result.commit,
            "parent": request.parent_commit,
            "parent_url": request.parent_url,
            "ref": request.ostree_ref,
            "backend": backend.name(),
            "backend_id": result.backend_id,
            "blueprint": composed.name,
            "blueprint_version": composed.version,
            "tarball": result.tarball.file_name().map(|it| it.to_string_lossy().into_owned()),
            "tarball_sha256": result.tarball_sha256,
            "compose_json": result.compose_json,
            "packages": result.packages,
        }),
    })
}

/// The RHEL world's composer: osbuild-composer through its Weldr API, with
/// its compose state in the store's run state.
pub fn weldr_backend(store: &Store) -> anyhow::Result<Box<dyn ComposeBackend>> {
    Ok(Box::new(WeldrComposer { config: weldr::WeldrConfig::for_store(store)? }))
}

/// Where `EDGELAB_COMPOSER_CACHE` names a folder, the local composer keeps
/// its caches there instead (shared by several stores: CI's tests and its
/// `e2e` lab; the composer locks it for each compose).
pub const COMPOSER_CACHE_ENV: &str = "EDGELAB_COMPOSER_CACHE";

/// The local world's composer; its package and base-rootfs caches live in
/// the store's run state (or `EDGELAB_COMPOSER_CACHE`), so a second compose
/// reuses them. They are caches, not inputs: no key depends on them.
pub fn local_backend(store: &Store) -> anyhow::Result<Box<dyn ComposeBackend>> {
    Ok(Box::new(crate::compose::local::LocalComposer::new(local_build_cache(store)?)))
}

/// The local world's build caches for `store`: `EDGELAB_COMPOSER_CACHE`
/// when it names a folder (shared by several stores), else the store's
/// `run/composer`. The composer's packages and bases, and the repo stage's
/// static deltas, live there.
pub fn local_build_cache(store: &Store) -> anyhow::Result<PathBuf> {
    Ok(match std::env::var_os(COMPOSER_CACHE_ENV).filter(|value| !value.is_empty()) {
        Some(folder) => PathBuf::from(folder),
        None => store.run_dir("composer")?,
    })
}

/// Extracts the edge-commit tarball beside itself (`compose.json`, `repo/`)
/// unless the backend already left them there.
fn extract(tarball: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let repo = out.join("repo");
    if repo.is_dir() && out.join("compose.json").is_file() {
        return Ok(repo);
    }
    // Safe extraction: no absolute paths, `..` or links out of `out`.
    crate::compose::tarball::extract(tarball, out)?;
    if !repo.is_dir() {
        bail!("{} has no repo/: not an edge-commit tarball", tarball.display());
    }
    Ok(repo)
}
