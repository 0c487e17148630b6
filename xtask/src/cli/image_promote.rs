//! `cargo xtask image promote IMAGE [--channel NAME] [--json]`: points a
//! channel at an image, the OS twin of `container promote` and the demo's
//! "serve version-2" step. Records the promotion in run state, then runs
//! the `publish` stage (and what it needs, usually cached), whose key the
//! promotion is part of (see `stages::publish`): a channel's earlier place
//! is found again, not rebuilt. Promoting the image lab.kdl starts the
//! channel at clears the record. The result is read back from the
//! published repo, and a running lab file server is moved onto it.

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::{
    graph::{StageId, StageKind},
    lab::Channel,
    progress::Progress,
    runner,
    services::{self, Service, file_server},
    stages::publish::{self, Promotion, PublishedChannel},
    store::StoreLock,
    tools::ostree::Repo,
};

pub fn promote(global: &Global, image: &str, channel: Option<&str>, json: bool) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let lock = session.store.lock(global.lock_wait())?;
    let progress = Progress::new(global.quiet || json);
    let published = promote_in(&session, &lock, &progress, image, channel)?;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&published)?),
        false => println!(
            "channel {} ({}) -> {} ({}){}",
            published.name,
            published.ostree_ref,
            published.image,
            published.commit,
            if published.image == published.declared { ", as lab.kdl declares" } else { "" }
        ),
    }
    Ok(())
}

/// `promote` on an already loaded lab, under the store's lock; returns the
/// channel as now published.
pub fn promote_in(
    session: &Session,
    lock: &StoreLock,
    progress: &Progress,
    image: &str,
    channel: Option<&str>,
) -> anyhow::Result<PublishedChannel> {
    let (lab, store) = (&session.lab, &session.store);
    if lab.image(image).is_none() {
        let names: Vec<&str> = lab.images.iter().map(|it| it.name.as_str()).collect();
        bail!("no image `{image}` in the lab; images are: {}", names.join(", "));
    }
    let channel = which_channel(session, channel)?;
    let previous = publish::load_promotions(store).channels.remove(&channel.name);
    let promotion = (channel.image != image).then(|| Promotion { image: image.to_string() });
    publish::record_promotion(store, &channel.name, promotion)?;

    // The facts are gathered after the record: they carry the promotion.
    let stage = StageId::new(StageKind::Publish, "served");
    let facts = session.facts()?;
    let summary = runner::run(lab, &session.graph, &facts, store, lock, std::slice::from_ref(&stage), progress);
    if summary.failed() || !summary.reports.iter().any(|it| it.stage == stage && it.output_digest.is_some()) {
        publish::record_promotion(store, &channel.name, previous)?;
        bail!(
            "publishing channel `{}` at image `{image}` failed, so it was not moved:\n{}",
            channel.name,
            summary.render()
        );
    }
    let manifest = session.current()?.manifest(store, &stage)?;
    let published = publish::published_channel(&manifest.extra, &channel.name)
        .with_context(|| format!("channel `{}` in the published repo", channel.name))?;
    let repo = Repo::at(store.artifact_out(&manifest.key).join("repo"));
    let at = repo.rev_parse(&published.ostree_ref)?;
    if published.image != image || at.as_deref() != Some(published.commit.as_str()) {
        bail!(
            "channel `{}`: its ref {} is at {} after promotion, expected image `{image}` ({})",
            channel.name,
            published.ostree_ref,
            at.as_deref().unwrap_or("nothing"),
            published.commit
        );
    }
    if services::running_pid(store, file_server::NAME).is_some() {
        services::ensure(lab, store, Service::FileServer)?;
    }
    Ok(published)
}

/// `lab status`'s channel lines: where each channel points (promoted or
/// as lab.kdl declares) and the commit the current publish has it at.
pub fn status_lines(session: &Session, plan: &crate::plan::Plan) -> Vec<String> {
    let stage = StageId::new(StageKind::Publish, "served");
    let published = plan
        .entry(&stage)
        .filter(|entry| entry.status == crate::plan::Status::Fresh)
        .and_then(|entry| entry.key.as_ref())
        .and_then(|key| session.store.artifact_manifest(key));
    let promotions = publish::load_promotions(&session.store);
    session
        .lab
        .channels
        .iter()
        .map(|channel| {
            let pointed = match promotions.channels.get(&channel.name) {
                Some(promotion) => format!("{} (promoted; lab.kdl: {})", promotion.image, channel.image),
                None => channel.image.clone(),
            };
            let at = published
                .as_ref()
                .and_then(|manifest| publish::published_channel(&manifest.extra, &channel.name).ok())
                .map(|it| format!("published at {}", &it.commit[..12.min(it.commit.len())]))
                .unwrap_or_else(|| "not published yet: run `cargo xtask lab up`".into());
            format!("channel {} ({}): {pointed}, {at}", channel.name, channel.ostree_ref)
        })
        .collect()
}

/// The channel `--channel` names, or the one the kickstart installs from.
fn which_channel<'a>(session: &'a Session, channel: Option<&str>) -> anyhow::Result<&'a Channel> {
    let lab = &session.lab;
    let names = || lab.channels.iter().map(|it| it.name.as_str()).collect::<Vec<_>>().join(", ");
    match channel {
        Some(name) => {
            lab.channel(name).with_context(|| format!("no channel `{name}` in the lab; channels are: {}", names()))
        }
        None => lab.install_channel().with_context(|| {
            format!("the lab installs from no channel: say which with --channel (channels: {})", names())
        }),
    }
}
