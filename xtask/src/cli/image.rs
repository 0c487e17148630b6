//! `cargo xtask image NAME [--parent]` and `cargo xtask image info NAME`:
//! compose one image (what `lab up --only compose NAME` does, after saying
//! whether its parent must be composed first), and show what a compose made,
//! from the store: compose.json's fields, the commit and its parent, the
//! composer's UUID and the depsolved packages it recorded.

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Global, Session, lab_cmd};
use crate::{
    graph::{StageId, StageKind},
    plan::Status,
    progress::Progress,
    runner,
    store::Manifest,
};

/// Composes `name`; with `parent`, insists that the lab gives it a parent.
pub fn compose(global: &Global, name: &str, parent: bool) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let Some(image) = session.lab.image(name) else {
        let names: Vec<&str> = session.lab.images.iter().map(|image| image.name.as_str()).collect();
        bail!("no image `{name}` in the lab; images are: {}", names.join(", "));
    };
    if parent && image.parent.is_none() {
        bail!(
            "image `{name}` has no parent in {}: drop --parent, or add parent=\"...\" to it",
            session.lab.file.display()
        );
    }
    let stage = StageId::new(StageKind::Compose, name);
    if let Some(parent) = &image.parent {
        let plan = lab_cmd::compute_plan(&session)?;
        let parent_stage = StageId::new(StageKind::Compose, parent.clone());
        match plan.entry(&parent_stage).map(|entry| entry.status) {
            Some(Status::Fresh) => {}
            _ => eprintln!("parent image `{parent}` is not composed or is stale: composing it first"),
        }
    }
    let lock = session.store.lock(global.lock_wait())?;
    let facts = session.facts()?;
    let progress = Progress::new(global.quiet);
    let summary = runner::run(
        &session.lab,
        &session.graph,
        &facts,
        &session.store,
        &lock,
        std::slice::from_ref(&stage),
        &progress,
    );
    print!("{}", summary.render());
    if summary.failed() || !summary.missing().is_empty() {
        bail!("image `{name}` was not composed (see above)");
    }
    drop(lock);
    let manifest = session.current()?.manifest(&session.store, &stage)?;
    let parent = manifest.extra.get("parent").and_then(Value::as_str).unwrap_or("none");
    println!("image {name}: commit {} (parent {parent})", manifest.output_digest);
    Ok(())
}

/// Shows the current compose of `name` (the one `lab plan` calls fresh).
pub fn info(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    if session.lab.image(name).is_none() {
        bail!("no image `{name}` in the lab");
    }
    let stage = StageId::new(StageKind::Compose, name);
    let manifest = session.current()?.manifest(&session.store, &stage).with_context(|| format!("image info {name}"))?;
    print!("{}", render_info(&manifest));
    Ok(())
}

/// The info table of a compose artifact: its facts, then compose.json's fields.
pub fn render_info(manifest: &Manifest) -> String {
    let extra = &manifest.extra;
    let text = |key: &str| match extra.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    };
    let n_packages = extra.get("packages").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    let mut rows: Vec<(String, String)> = vec![
        ("stage".into(), manifest.stage.clone()),
        ("key".into(), manifest.key.0.clone()),
        ("commit".into(), manifest.output_digest.clone()),
        ("parent".into(), text("parent")),
        ("ref".into(), text("ref")),
        ("backend".into(), format!("{} ({})", text("backend"), text("backend_id"))),
        ("blueprint".into(), format!("{} {}", text("blueprint"), text("blueprint_version"))),
        ("tarball".into(), format!("{} {}", text("tarball"), text("tarball_sha256"))),
        ("packages".into(), format!("{n_packages} resolved at compose time")),
    ];
    if let Some(Value::Object(fields)) = extra.get("compose_json") {
        for (field, value) in fields {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            rows.push((format!("compose.json {field}"), value));
        }
    }
    let width = rows.iter().map(|(field, _)| field.len()).max().unwrap_or(0);
    rows.iter().map(|(field, value)| format!("{field:width$}  {value}\n")).collect()
}
