//! `cargo xtask bench compose`: the local composer on the demo lab's images,
//! a cold and a warm compose side by side in one run, written to
//! `bench/results/compose.json` with date, machine and load.
//!
//! Each leg composes v1 (the RFE blueprint) and then v2 on top of v1's
//! commit, with the requests the compose stage would make from `lab.kdl`.
//! The cold leg starts from an empty composer cache of its own (no
//! downloaded .debs, no base rootfs, no build repo: what a fresh machine
//! pays; minutes), removed afterwards. The warm leg uses the shared cache
//! (`EDGELAB_COMPOSER_CACHE`, or the one the tests use), so it measures what
//! a developer pays once that cache is filled; whether its v1 still had to
//! build the base is recorded as `v1_base_built`, never assumed.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context;
use serde_json::{Value, json};

use super::{Global, Session, bench_meta, project_root};
use crate::{
    compose::{ComposeBackend, ComposeRequest, ComposeResult, local::LocalComposer},
    graph::{StageId, StageKind},
    progress::Progress,
};

#[derive(Debug, Clone, clap::Args)]
pub struct ComposeBenchArgs {
    /// Only the warm leg (the cold one takes many minutes and downloads the
    /// base system again); the JSON says the cold leg was skipped.
    #[arg(long)]
    pub warm_only: bool,
    /// Where compose.json goes (default bench/results/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The cache the warm leg uses: the tests' shared one unless
/// `EDGELAB_COMPOSER_CACHE` says otherwise.
fn shared_cache() -> PathBuf {
    std::env::var_os("EDGELAB_COMPOSER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/edgelab-test-cache/composer"))
}

pub fn run(global: &Global, args: &ComposeBenchArgs) -> anyhow::Result<()> {
    for program in ["mmdebstrap", "ostree", "chroot", "mount"] {
        crate::tools::require(program)?;
    }
    if !crate::tools::apt::is_root() {
        anyhow::bail!("bench compose needs root (the local composer runs mmdebstrap --mode=root and chroot)");
    }
    let session = Session::load(global).context("loading the demo lab")?;
    let work = tempfile::Builder::new().prefix("edgelab-bench-compose-").tempdir().context("creating a work folder")?;
    let machine = bench_meta::machine();
    let started = bench_meta::utc_now();
    let progress = Progress::new(global.quiet);

    let cold = if args.warm_only {
        json!({"skipped": "--warm-only"})
    } else {
        let cache = work.path().join("cold-cache");
        eprintln!("bench compose: cold leg, empty cache {}", cache.display());
        let leg = compose_leg(&session, &cache, &work.path().join("cold"), &progress);
        // The cold cache is gigabytes; it is the leg's, not the user's.
        std::fs::remove_dir_all(&cache).ok();
        leg?
    };
    let cache = shared_cache();
    eprintln!("bench compose: warm leg, shared cache {}", cache.display());
    let warm = compose_leg(&session, &cache, &work.path().join("warm"), &progress)?;

    let report = json!({
        "date": started,
        "machine": machine,
        "load_average_at_end": bench_meta::load_average(),
        "what": {
            "legs": "each leg composes v1, then v2 with v1's commit as parent, as the compose stage would from lab.kdl",
            "cold": "an empty composer cache of the leg's own: .debs downloaded, base rootfs built, build repo created",
            "warm": "the shared composer cache (EDGELAB_COMPOSER_CACHE or /var/tmp/edgelab-test-cache/composer)",
            "v1_steps_ms": "the local composer's own step timings for v1 (v1-local.json)",
        },
        "cold": cold,
        "warm": warm,
    });
    let out_dir = args.out.clone().unwrap_or_else(|| project_root().join("bench/results"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join("compose.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    for (name, leg) in [("cold", &report["cold"]), ("warm", &report["warm"])] {
        match leg.get("v1_compose_secs") {
            Some(v1) => println!(
                "{name}: v1 {v1} s (base built: {}), v2 after v1 {} s",
                leg["v1_base_built"], leg["v2_after_v1_compose_secs"]
            ),
            None => println!("{name}: skipped"),
        }
    }
    println!("written to {}", path.display());
    Ok(())
}

/// Composes v1 then v2 (parent v1) with `cache` as the composer's cache.
fn compose_leg(session: &Session, cache: &Path, work: &Path, progress: &Progress) -> anyhow::Result<Value> {
    let composer = LocalComposer::new(cache.to_path_buf());
    let (v1_out, v2_out) = (work.join("v1"), work.join("v2"));
    for dir in [&v1_out, &v2_out] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let started = Instant::now();
    let v1 = compose(&composer, session, "v1", None, &v1_out, progress)?;
    let v1_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let v2 = compose(&composer, session, "v2", Some(&v1.commit), &v2_out, progress)?;
    let v2_secs = started.elapsed().as_secs_f64();
    let notes_path = v1_out.join("v1-local.json");
    let notes: Value = std::fs::read(&notes_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .with_context(|| format!("reading the composer's notes {}", notes_path.display()))?;
    Ok(json!({
        "cache": cache,
        "v1_compose_secs": (v1_secs * 10.0).round() / 10.0,
        "v1_base_built": notes["base_built"],
        "v1_steps_ms": notes["timings_ms"],
        "v2_after_v1_compose_secs": (v2_secs * 10.0).round() / 10.0,
        "v1_commit": v1.commit,
        "v2_commit": v2.commit,
    }))
}

/// One image's compose, with the request the compose stage builds from the lab.
fn compose(
    composer: &LocalComposer,
    session: &Session,
    name: &str,
    parent_commit: Option<&str>,
    out: &Path,
    progress: &Progress,
) -> anyhow::Result<ComposeResult> {
    let lab = &session.lab;
    let image = lab.image(name).with_context(|| format!("the lab has no image `{name}`"))?;
    let lab_blueprint = lab
        .blueprint(&image.blueprint)
        .with_context(|| format!("image `{name}`: no blueprint `{}`", image.blueprint))?;
    let text = std::fs::read_to_string(&lab_blueprint.file)
        .with_context(|| format!("reading blueprint {}", lab_blueprint.file.display()))?;
    let base = crate::blueprint::parse_blueprint(&lab.display_path(&lab_blueprint.file), &text)
        .map_err(|err| anyhow::anyhow!("{}", super::render_diagnostics(&err)))?;
    let composed = crate::blueprint::composed_blueprint(&base, lab, image);
    let package_map = session
        .graph
        .stage(&StageId::new(StageKind::Compose, name))
        .and_then(|stage| stage.params.get("package-map").cloned())
        .unwrap_or(json!([]));
    let request = ComposeRequest {
        image: name.into(),
        blueprint: composed.clone(),
        ostree_ref: image.ostree_ref.clone(),
        parent_commit: parent_commit.map(str::to_string),
        parent_url: None,
        parent_repo: None,
        package_map,
    };
    composer.compose(&request, out, progress).with_context(|| format!("composing {name}"))
}
