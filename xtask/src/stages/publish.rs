//! The `publish` stage: what the lab's file server serves at `/repo/`. The
//! served repo (`repo served`) keeps every image's commit; here each
//! channel's ref is set to the commit of the image the channel points at
//! now, so a guest installing from the channel, and a guest's automatic
//! staging following it, get that commit.
//!
//! A channel starts at the image lab.kdl names (`channel "edge" ...
//! image="v1"`); `cargo xtask image promote v2` moves it, and that
//! promotion is run state (`run/channel-promotions.json`) that outlives
//! `lab up`, as a container tag's is (`stages::tag`). Unlike a tag's, it
//! is part of this stage's key (the `channel edge` fact), because the ref
//! lives in an artifact: each place a channel can point at is its own
//! immutable artifact, promoting back to v1 finds v1's again, and no
//! published folder is ever rewritten. The artifact is `out/repo`, an
//! archive repo whose objects and static deltas are hard links to the
//! served repo's (no copy of the content), with the channels' refs, a
//! from-scratch static delta for every channel's commit (installs start
//! from it; a promoted channel's only when the delta cache has it, since
//! making one takes minutes) and its own summary. Output digest: sha256 over the served repo's output digest
//! and each channel's (name, ref, commit), so the installs that follow a
//! channel are made again when it moves.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    StageCtx, StageOutput,
    repo::{DeltaCache, DeltaPlan, generate_deltas},
};
use crate::{
    store::Store,
    tools::ostree::{Repo, RepoMode},
};

/// The run-state file holding channel promotions.
pub const PROMOTIONS_FILE: &str = "channel-promotions.json";

/// Promoted channels: channel name -> the image it points at instead of
/// lab.kdl's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Promotions {
    pub channels: BTreeMap<String, Promotion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub image: String,
}

/// A channel as published: its ref at the commit of the image it points at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedChannel {
    pub name: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    pub image: String,
    /// The image lab.kdl starts it at.
    pub declared: String,
    pub commit: String,
}

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let repo = ctx.inputs.get("repo").context("the publish stage has no served repo input")?;
    let declared: BTreeMap<String, Value> = ctx
        .stage
        .params
        .get("channels")
        .and_then(|value| serde_json::from_value(value.clone()).ok())
        .unwrap_or_default();
    let promotions = load_promotions(ctx.store);
    let mut channels = Vec::new();
    for (name, channel) in &declared {
        let text = |field: &str| channel.get(field).and_then(Value::as_str).unwrap_or_default().to_string();
        let declared_image = text("image");
        let image = promotions.channels.get(name).map(|it| it.image.clone()).unwrap_or_else(|| declared_image.clone());
        let Some(commit) = repo.extra.pointer(&format!("/images/{image}/commit")).and_then(Value::as_str) else {
            let images = repo.extra.get("images").and_then(Value::as_object);
            let names: Vec<&str> = images.map(|it| it.keys().map(String::as_str).collect()).unwrap_or_default();
            bail!(
                "channel `{name}` points at image `{image}`, which the served repo does not hold (its images: {}); \
                 `cargo xtask image promote {declared_image} --channel {name}` puts it back on lab.kdl's image",
                names.join(", ")
            );
        };
        channels.push(PublishedChannel {
            name: name.clone(),
            ostree_ref: text("ref"),
            image,
            declared: declared_image,
            commit: commit.to_string(),
        });
    }

    let cache = DeltaCache::for_store(ctx.store)?;
    // Absent: installs' deltas are made (`lab watch`'s upgrade graph says false).
    let install_deltas = ctx.stage.params.get("install-deltas").and_then(Value::as_bool).unwrap_or(true);
    let generated =
        publish_tree(&repo.out.join("repo"), &ctx.out.join("repo"), &channels, &cache, install_deltas, &|note| {
            ctx.progress.note(note)
        })?;

    let mut hasher = Sha256::new();
    hasher.update(format!("repo {}\n", repo.output_digest));
    for channel in &channels {
        hasher.update(format!("channel {} {} {}\n", channel.name, channel.ostree_ref, channel.commit));
    }
    let by_name: serde_json::Map<String, Value> =
        channels.iter().map(|channel| (channel.name.clone(), json!(channel))).collect();
    Ok(StageOutput {
        output_digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        extra: json!({ "channels": by_name, "generated_deltas": generated }),
    })
}

/// Does the published repo hold every guest commit the served repo keeps
/// (`stages::repo` adds one under the same key when a guest needs it)?
/// `Err` names the first missing; the runner then publishes again.
pub fn check_live(ctx: &StageCtx, _output_digest: &str) -> Result<(), String> {
    let Some(repo) = ctx.inputs.get("repo") else { return Ok(()) };
    let published = Repo::at(ctx.out.join("repo"));
    let retained = repo.extra.get("retained").and_then(Value::as_array).cloned().unwrap_or_default();
    for kept in retained {
        let Some(commit) = kept.get("commit").and_then(Value::as_str) else { continue };
        if !published.has_commit(commit) {
            return Err(format!("guest commit {} is not published", &commit[..12.min(commit.len())]));
        }
    }
    Ok(())
}

/// Lays out the published repo at `target` from the served repo at
/// `source`: its objects and deltas hard-linked, each channel's ref, a
/// from-scratch delta for each channel's commit that has none (for a
/// promoted channel, or when `generate` is false, only from the delta
/// cache: never generated during a promotion or `lab watch`'s upgrade), and
/// the summary. Returns the deltas it had to add.
pub fn publish_tree(
    source: &Path,
    target: &Path,
    channels: &[PublishedChannel],
    cache: &DeltaCache,
    generate: bool,
    note: &dyn Fn(&str),
) -> anyhow::Result<Vec<String>> {
    let repo = Repo::init(target, RepoMode::Archive)?;
    for folder in ["objects", "deltas"] {
        if source.join(folder).is_dir() {
            crate::store::link_tree(&source.join(folder), &target.join(folder))
                .with_context(|| format!("linking the served repo's {folder} into {}", target.display()))?;
        }
    }
    let mut generated = Vec::new();
    for channel in channels {
        if !repo.has_commit(&channel.commit) {
            bail!("channel `{}`: the served repo has no commit {}", channel.name, channel.commit);
        }
        repo.set_ref(&channel.ostree_ref, &channel.commit)
            .with_context(|| format!("pointing channel `{}` at image `{}`", channel.name, channel.image))?;
        if repo.static_delta_dir(&channel.commit)?.join("superblock").is_file() {
            continue;
        }
        if channel.image != channel.declared || !generate {
            // A promotion stays a matter of seconds: a from-scratch delta
            // takes minutes of LZMA (276 s for the demo's v2 here, in the
            // middle of the upgrade scenario). One made before is used.
            if cache.restore(&repo, &channel.commit)? {
                note(&format!("static delta from scratch -> {} (from the delta cache)", channel.image));
                generated.push(channel.commit.clone());
            } else {
                note(&format!(
                    "channel `{}` at image `{}`: no from-scratch delta of it, so a guest installed now pulls it \
                     object by object (the upgrades of installed guests use the deltas from each parent)",
                    channel.name, channel.image
                ));
            }
            continue;
        }
        let plan =
            DeltaPlan { image: channel.image.clone(), parent: None, to: channel.commit.clone(), from_scratch: true };
        generated.extend(generate_deltas(&repo, &[plan], cache, note)?);
    }
    repo.update_summary()?;
    Ok(generated)
}

/// The recorded promotions.
pub fn load_promotions(store: &Store) -> Promotions {
    store.load_state(PROMOTIONS_FILE).and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// Records that `channel` points at `promotion`, or, with `None`, at
/// lab.kdl's image again.
pub fn record_promotion(store: &Store, channel: &str, promotion: Option<Promotion>) -> anyhow::Result<()> {
    let mut promotions = load_promotions(store);
    match promotion {
        Some(promotion) => promotions.channels.insert(channel.to_string(), promotion),
        None => promotions.channels.remove(channel),
    };
    store.save_state(PROMOTIONS_FILE, &serde_json::to_vec_pretty(&promotions)?)?;
    Ok(())
}

/// The fact of the run state `name` (`graph::channel_state`): the image a
/// promoted channel points at; `None` when it follows lab.kdl.
pub fn state_fact(store: &Store, name: &str) -> Option<String> {
    let channel = name.strip_prefix("channel ")?;
    load_promotions(store).channels.remove(channel).map(|promotion| promotion.image)
}

/// A channel of the current `publish served` artifact, as published.
pub fn published_channel(extra: &Value, channel: &str) -> anyhow::Result<PublishedChannel> {
    let entry = extra.pointer(&format!("/channels/{channel}")).context("not published")?;
    let text = |field: &str| {
        entry.get(field).and_then(Value::as_str).map(str::to_string).with_context(|| format!("no `{field}`"))
    };
    Ok(PublishedChannel {
        name: channel.to_string(),
        ostree_ref: text("ref")?,
        image: text("image")?,
        declared: text("declared")?,
        commit: text("commit")?,
    })
}
