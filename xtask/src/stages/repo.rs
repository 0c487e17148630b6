//! The `repo` stage: the served OSTree repo. Every image's edge-commit
//! tarball is extracted safely (`compose::tarball`) and pulled into one
//! archive-mode repo, parents before children (so a shared ref ends on the
//! newest image), then static deltas and the summary: from nothing to each
//! image's commit (an install downloads a few large parts instead of one
//! request per object) and from each image's parent to it (an upgrade
//! downloads a few files instead of thousands).
//!
//! The repo is the stage's artifact, `out/repo`: immutable once published;
//! the file server serves it at `/repo/`. Output digest: sha256 over the
//! sorted (ref, commit) pairs of the images and the delta names.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{StageCtx, StageOutput};
use crate::{
    compose::tarball,
    tools::ostree::{DeltaFrom, DeltaParts, Depth, Repo, RepoMode},
};

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let parents: BTreeMap<String, Option<String>> = ctx
        .stage
        .params
        .get("parents")
        .and_then(|value| serde_json::from_value(value.clone()).ok())
        .unwrap_or_default();
    let images: Vec<String> =
        ctx.inputs.keys().filter_map(|role| role.strip_prefix("image ")).map(str::to_string).collect();
    let order = parents_first(&images, &parents)?;

    let repo = Repo::init(ctx.out.join("repo"), RepoMode::Archive)?;
    let unpack_root = ctx.out.join(".unpacked");
    let mut commits: BTreeMap<String, (String, String)> = BTreeMap::new();
    for image in &order {
        ctx.progress.note(&format!("adding image {image}"));
        let input = &ctx.inputs[&format!("image {image}")];
        // The compose stage records the tarball's name (composer names it by
        // compose UUID); the local composer's is `<image>-commit.tar`.
        let tarball_name = match input.extra.get("tarball").and_then(Value::as_str) {
            Some(name) if !name.contains('/') && name != ".." => name.to_string(),
            Some(name) => bail!("image `{image}`: the tarball name `{name}` is not a plain file name"),
            None => format!("{image}-commit.tar"),
        };
        let tarball_path = input.out.join(&tarball_name);
        let (ostree_ref, commit) = add_image(&repo, &tarball_path, &unpack_root.join(image))
            .with_context(|| format!("adding image `{image}` to the served repo"))?;
        if is_commit_id(&input.output_digest) && input.output_digest != commit {
            bail!(
                "image `{image}`: its tarball holds commit {commit}, but the compose produced {}",
                input.output_digest
            );
        }
        commits.insert(image.clone(), (ostree_ref, commit));
    }
    std::fs::remove_dir_all(&unpack_root).ok();

    let mut plans = Vec::new();
    for image in &order {
        let to = commits[image].1.clone();
        let from = match parents.get(image).cloned().flatten() {
            Some(parent) => match commits.get(&parent) {
                Some((_, from)) => Some((parent, from.clone())),
                None => bail!("image `{image}`: its parent `{parent}` is not among the repo's images"),
            },
            None => None,
        };
        plans.push(DeltaPlan { image: image.clone(), parent: from, to });
    }
    let mut deltas = generate_deltas(&repo, &plans, &|note| ctx.progress.note(note))?;
    repo.update_summary()?;
    deltas.sort();
    deltas.dedup();

    let mut pairs: Vec<(String, String)> = commits.values().cloned().collect();
    pairs.sort();
    let mut hasher = Sha256::new();
    for (ostree_ref, commit) in &pairs {
        hasher.update(format!("{ostree_ref} {commit}\n"));
    }
    for delta in &deltas {
        hasher.update(format!("delta {delta}\n"));
    }
    let (n_objects, repo_bytes) = count_files(&repo.path.join("objects"))?;
    let (_, delta_bytes) = count_files(&repo.path.join("deltas"))?;
    Ok(StageOutput {
        output_digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        extra: json!({
            "images": commits.iter().map(|(name, (r, c))| (name.clone(), json!({"ref": r, "commit": c}))).collect::<serde_json::Map<String, Value>>(),
            "refs": repo.refs()?,
            "deltas": deltas,
            "objects": n_objects,
            "object_bytes": repo_bytes,
            "delta_bytes": delta_bytes,
        }),
    })
}

/// One image's static deltas: from nothing to its commit, and from its
/// parent's commit when it has a parent among the repo's images.
#[derive(Debug, Clone)]
pub struct DeltaPlan {
    pub image: String,
    /// The parent image's name and commit.
    pub parent: Option<(String, String)>,
    pub to: String,
}

/// A parent delta at most this big is regenerated with its parts inside
/// the superblock: an upgrade then fetches one delta file instead of two,
/// and a client holding a few MiB in memory is no burden. A bigger one
/// (a kernel or a large package changed) keeps its parts apart, as
/// ostree streams those.
pub const INLINE_DELTA_BYTES: u64 = 8 << 20;

/// Generates every plan's deltas and returns their names (`FROM-TO`, and
/// `TO` for the from-scratch ones).
///
/// The from-scratch delta is what makes an install a handful of requests:
/// a pull with no local commit takes it from the summary by itself (libostree
/// `get_best_static_delta_start_for`: a "scratch" match, used when the pull
/// has no local ref), fetching the commit's objects as a few large
/// compressed parts instead of one request per object (8,988 requests for
/// the demo's image otherwise). The installer pulls through it
/// (`guests::installer`); Anaconda's `ostreesetup` pulls into an empty
/// repo, so it takes it too.
pub fn generate_deltas(repo: &Repo, plans: &[DeltaPlan], note: &dyn Fn(&str)) -> anyhow::Result<Vec<String>> {
    let mut deltas = Vec::new();
    for plan in plans {
        note(&format!("static delta from scratch -> {}", plan.image));
        repo.generate_delta(DeltaFrom::Empty, &plan.to, DeltaParts::Separate)
            .with_context(|| format!("generating the from-scratch static delta of `{}`", plan.image))?;
        deltas.push(plan.to.clone());
        let Some((parent, from)) = &plan.parent else { continue };
        note(&format!("static delta {parent} -> {}", plan.image));
        let what = || format!("generating the static delta from `{parent}` to `{}`", plan.image);
        repo.generate_delta(DeltaFrom::Commit(from), &plan.to, DeltaParts::Separate).with_context(what)?;
        let name = format!("{from}-{}", plan.to);
        if repo.static_delta_bytes(&name).with_context(what)? <= INLINE_DELTA_BYTES {
            repo.delete_static_delta(&name).with_context(what)?;
            repo.generate_delta(DeltaFrom::Commit(from), &plan.to, DeltaParts::Inline).with_context(what)?;
        }
        deltas.push(name);
    }
    Ok(deltas)
}

/// Extracts a compose's tarball and pulls its commit into `repo`, moving
/// the tarball's ref to it. Returns (ref, commit).
fn add_image(repo: &Repo, tarball_path: &Path, unpack: &Path) -> anyhow::Result<(String, String)> {
    if !tarball_path.is_file() {
        bail!("{} is missing: the compose stage left no commit tarball", tarball_path.display());
    }
    tarball::extract(tarball_path, unpack)?;
    let compose = tarball::read_compose_json(unpack)?;
    let field = |name: &str| {
        compose
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{}: compose.json has no `{name}`", tarball_path.display()))
    };
    let (ostree_ref, commit) = (field("ref")?, field("ostree-commit")?);
    if !is_commit_id(&commit) {
        bail!("{}: `{commit}` is not a commit id", tarball_path.display());
    }
    repo.pull_local(&unpack.join("repo"), &[&commit], Depth::Tip)?;
    repo.set_ref(&ostree_ref, &commit)?;
    std::fs::remove_dir_all(unpack).ok();
    Ok((ostree_ref, commit))
}

/// `images` ordered so every parent comes before its children.
fn parents_first(images: &[String], parents: &BTreeMap<String, Option<String>>) -> anyhow::Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < images.len() {
        let before = order.len();
        for image in images {
            let parent = parents.get(image).cloned().flatten();
            let ready = parent.as_ref().is_none_or(|parent| order.contains(parent) || !images.contains(parent));
            if ready && !order.contains(image) {
                order.push(image.clone());
            }
        }
        if order.len() == before {
            bail!("the images' parents form a cycle");
        }
    }
    Ok(order)
}

fn is_commit_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// (files, bytes) under `dir`; (0, 0) when it does not exist.
fn count_files(dir: &Path) -> anyhow::Result<(u64, u64)> {
    if !dir.exists() {
        return Ok((0, 0));
    }
    let (mut files, mut bytes) = (0, 0);
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        if entry.file_type().is_file() {
            files += 1;
            bytes += entry.metadata().map(|meta| meta.len()).unwrap_or(0);
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parents_first() {
        let images = vec!["v3".to_string(), "v2".into(), "v1".into()];
        let parents = BTreeMap::from([
            ("v1".to_string(), None),
            ("v2".to_string(), Some("v1".to_string())),
            ("v3".to_string(), Some("v2".to_string())),
        ]);
        assert_eq!(parents_first(&images, &parents).unwrap(), vec!["v1", "v2", "v3"]);
        let cycle =
            BTreeMap::from([("a".to_string(), Some("b".to_string())), ("b".to_string(), Some("a".to_string()))]);
        assert!(parents_first(&["a".into(), "b".into()], &cycle).is_err());
    }
}
