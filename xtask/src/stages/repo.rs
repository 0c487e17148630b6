//! The `repo` stage: the served OSTree repo. Every image's edge-commit
//! tarball is extracted safely (`compose::tarball`) and pulled into one
//! archive-mode repo, parents before children (so a shared ref ends on the
//! newest image; guests never see that ref: `stages::publish` sets each
//! channel's), then static deltas and the summary: from nothing to the
//! commit of each image a channel starts at (an install downloads a few
//! large parts instead of one request per object; no install starts from
//! the other images, and each such delta takes minutes) and from each
//! image's parent to it (an upgrade downloads a few files instead of
//! thousands).
//!
//! The repo is the stage's artifact, `out/repo`: immutable once published;
//! the publish stage links it into what the file server serves at
//! `/repo/`. Output digest: sha256 over the
//! sorted (ref, commit) pairs of the images and the delta names.
//!
//! The repo also keeps what the store's guests need: a guest installed from
//! a commit that is no longer any image's (a rebuild replaced it) still
//! upgrades from it, so that commit is pulled in from the artifact that
//! holds it, with a static delta from it to its ref's new head. Which
//! commits guests use is run state (`run/guests/*/guest.json`), not a key
//! input, as with the tag stage's promotions: `check_live` reruns the stage
//! under the same key when a guest's commit is missing, and the retained
//! commits stay out of the output digest, since nothing after this stage
//! reads them (installs take the images' commits), so installs stay cached.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{StageCtx, StageOutput};
use crate::{
    compose::tarball,
    graph::StageKind,
    store::Store,
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
    let installed: Vec<String> = ctx
        .stage
        .params
        .get("installed")
        .and_then(|value| serde_json::from_value(value.clone()).ok())
        .unwrap_or_default();

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
        plans.push(DeltaPlan { image: image.clone(), parent: from, to, from_scratch: installed.contains(image) });
    }
    let cache = DeltaCache::for_store(ctx.store)?;
    let mut deltas = generate_deltas(&repo, &plans, &cache, &|note| ctx.progress.note(note))?;
    let retained = retain_guest_commits(ctx, &repo, &commits)?;
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
            "retained": retained,
            "objects": n_objects,
            "object_bytes": repo_bytes,
            "delta_bytes": delta_bytes,
        }),
    })
}

/// One image's static deltas: from nothing to its commit when installs
/// start from it, and from its parent's commit when it has a parent among
/// the repo's images.
#[derive(Debug, Clone)]
pub struct DeltaPlan {
    pub image: String,
    /// The parent image's name and commit.
    pub parent: Option<(String, String)>,
    pub to: String,
    /// Installs pull this image into an empty repo.
    pub from_scratch: bool,
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
pub fn generate_deltas(
    repo: &Repo,
    plans: &[DeltaPlan],
    cache: &DeltaCache,
    note: &dyn Fn(&str),
) -> anyhow::Result<Vec<String>> {
    let mut deltas = Vec::new();
    for plan in plans {
        if plan.from_scratch {
            let name = plan.to.clone();
            let what = || format!("generating the from-scratch static delta of `{}`", plan.image);
            if cache.restore(repo, &name).with_context(what)? {
                note(&format!("static delta from scratch -> {} (from the delta cache)", plan.image));
            } else {
                note(&format!("static delta from scratch -> {}", plan.image));
                repo.generate_delta(DeltaFrom::Empty, &plan.to, DeltaParts::Separate).with_context(what)?;
                cache.keep(repo, &name);
            }
            deltas.push(name);
        }
        let Some((parent, from)) = &plan.parent else { continue };
        let name = format!("{from}-{}", plan.to);
        let what = || format!("generating the static delta from `{parent}` to `{}`", plan.image);
        if cache.restore(repo, &name).with_context(what)? {
            note(&format!("static delta {parent} -> {} (from the delta cache)", plan.image));
            deltas.push(name);
            continue;
        }
        note(&format!("static delta {parent} -> {}", plan.image));
        repo.generate_delta(DeltaFrom::Commit(from), &plan.to, DeltaParts::Separate).with_context(what)?;
        if repo.static_delta_bytes(&name).with_context(what)? <= INLINE_DELTA_BYTES {
            repo.delete_static_delta(&name).with_context(what)?;
            repo.generate_delta(DeltaFrom::Commit(from), &plan.to, DeltaParts::Inline).with_context(what)?;
        }
        cache.keep(repo, &name);
        deltas.push(name);
    }
    Ok(deltas)
}

/// Static deltas already generated, by name (`FROM-TO`, or `TO` from
/// scratch): a delta is determined by its two commits (and the parts rule
/// above), so an unchanged image's deltas are copied, not computed again
/// for minutes of LZMA, when a sibling image changes, a store is new, or a
/// test builds the same commits again. A cache, not an input: no key
/// depends on it, and a pull checks every object it applies. Entries are
/// published by rename (a half-copied one is never seen); losing one only
/// means generating it again.
#[derive(Debug, Clone)]
pub struct DeltaCache {
    dir: Option<PathBuf>,
}

impl DeltaCache {
    /// No cache: every delta generated (tests of generation itself).
    pub fn none() -> DeltaCache {
        DeltaCache { dir: None }
    }

    /// The cache in `dir`.
    pub fn at(dir: &Path) -> DeltaCache {
        DeltaCache { dir: Some(dir.to_path_buf()) }
    }

    /// The local world's build cache for `store` (beside the composer's
    /// caches: `EDGELAB_COMPOSER_CACHE`, shared by several stores, or the
    /// store's run state).
    pub fn for_store(store: &Store) -> anyhow::Result<DeltaCache> {
        Ok(DeltaCache::at(&super::compose::local_build_cache(store)?.join("static-deltas")))
    }

    /// Puts the cached delta `name` into `repo`; `Ok(false)` when the cache
    /// has none.
    pub(crate) fn restore(&self, repo: &Repo, name: &str) -> anyhow::Result<bool> {
        let Some(entry) = self.dir.as_ref().map(|dir| dir.join(name)) else { return Ok(false) };
        if !entry.is_dir() {
            return Ok(false);
        }
        crate::store::link_tree(&entry, &repo.static_delta_dir(name)?)?;
        Ok(true)
    }

    /// Copies `repo`'s delta `name` into the cache; a failure is a warning.
    fn keep(&self, repo: &Repo, name: &str) {
        let Some(dir) = &self.dir else { return };
        let kept = repo.static_delta_dir(name).and_then(|source| {
            std::fs::create_dir_all(dir)?;
            let partial = dir.join(format!(".{name}.partial.{}", std::process::id()));
            std::fs::remove_dir_all(&partial).ok();
            crate::store::link_tree(&source, &partial)?;
            if std::fs::rename(&partial, dir.join(name)).is_err() {
                // Another build kept the same delta first.
                std::fs::remove_dir_all(&partial).ok();
            }
            Ok(())
        });
        if let Err(err) = kept {
            tracing::warn!("could not keep static delta {name} in {}: {err:#}", dir.display());
        }
    }
}

/// Is every commit a guest of this store uses (and the store still holds)
/// in the published repo? `Err` names the first one missing.
pub fn check_live(ctx: &StageCtx, _output_digest: &str) -> Result<(), String> {
    let repo = Repo::at(ctx.out.join("repo"));
    for (guest, commit) in guest_commits(ctx.store) {
        if !repo.has_commit(&commit) && commit_source(ctx.store, &commit).is_some() {
            return Err(format!("guest {guest}'s commit {} is not in the served repo", &commit[..12]));
        }
    }
    Ok(())
}

/// (guest, commit) for every guest of the store with a disk, from its run
/// state: the commit its disk was installed from.
pub fn guest_commits(store: &Store) -> Vec<(String, String)> {
    let Ok(dir) = store.run_dir("guests") else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut commits: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("disk.img").exists())
        .filter_map(|path| {
            let state = crate::guests::load_state(&path)?;
            let name = path.file_name()?.to_string_lossy().into_owned();
            state.commit.filter(|commit| is_commit_id(commit)).map(|commit| (name, commit))
        })
        .collect();
    commits.sort();
    commits
}

/// Pulls each guest's commit that is no image's into `repo`, with a static
/// delta to its ref's head there; returns what was kept, for the manifest.
fn retain_guest_commits(
    ctx: &StageCtx,
    repo: &Repo,
    commits: &BTreeMap<String, (String, String)>,
) -> anyhow::Result<Vec<Value>> {
    let image_commits: Vec<&String> = commits.values().map(|(_, commit)| commit).collect();
    let mut retained: Vec<Value> = Vec::new();
    for (guest, commit) in guest_commits(ctx.store) {
        if image_commits.contains(&&commit) {
            continue;
        }
        if let Some(kept) = retained.iter_mut().find(|kept| kept["commit"] == json!(commit)) {
            if let Some(guests) = kept["guests"].as_array_mut() {
                guests.push(json!(guest));
            }
            continue;
        }
        let Some((source, ostree_ref)) = commit_source(ctx.store, &commit) else {
            ctx.progress.note(&format!(
                "guest {guest}'s commit {} is gone from the store: its next upgrade has no static delta",
                &commit[..12]
            ));
            continue;
        };
        ctx.progress.note(&format!("keeping guest {guest}'s commit {}", &commit[..12]));
        repo.pull_local(&source, &[&commit], Depth::Tip)
            .with_context(|| format!("keeping guest {guest}'s commit {commit} in the served repo"))?;
        // The ref ends on the newest image that shares it: where the guest's
        // next upgrade goes once its channel is promoted there (a channel
        // still on an older image has no delta from this commit).
        let head = match &ostree_ref {
            Some(ostree_ref) => repo.rev_parse(ostree_ref)?.unwrap_or_default(),
            None => String::new(),
        };
        let mut delta = Value::Null;
        if is_commit_id(&head) {
            repo.generate_delta(DeltaFrom::Commit(&commit), &head, DeltaParts::Separate)
                .with_context(|| format!("generating the static delta from guest {guest}'s commit to {head}"))?;
            delta = json!(format!("{commit}-{head}"));
        }
        retained.push(json!({"commit": commit, "ref": ostree_ref, "guests": [guest], "delta": delta}));
    }
    Ok(retained)
}

/// A repo folder in the store holding `commit` (a compose's extracted repo,
/// or an earlier served repo), and the commit's ref there.
fn commit_source(store: &Store, commit: &str) -> Option<(PathBuf, Option<String>)> {
    let manifests = store.list();
    let compose =
        manifests.iter().find(|manifest| manifest.kind == StageKind::Compose && manifest.output_digest == commit);
    if let Some(manifest) = compose {
        let ostree_ref = manifest.extra.get("ref").and_then(Value::as_str).map(str::to_string);
        return Some((store.artifact_out(&manifest.key).join("repo"), ostree_ref));
    }
    manifests.iter().filter(|manifest| manifest.kind == StageKind::Repo).find_map(|manifest| {
        let images = manifest.extra.get("images")?.as_object()?;
        let image = images.values().find(|image| image.get("commit").and_then(Value::as_str) == Some(commit))?;
        let ostree_ref = image.get("ref").and_then(Value::as_str).map(str::to_string);
        Some((store.artifact_out(&manifest.key).join("repo"), ostree_ref))
    })
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
