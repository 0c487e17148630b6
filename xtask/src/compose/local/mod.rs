//! The local composer: an edge commit built on any Linux host from Debian
//! packages, packed as the same tarball osbuild-composer produces.
//!
//! A compose is four steps, each cached where it can be:
//! 1. The base: mmdebstrap of the blueprint's packages plus what a bootable
//!    OSTree guest needs, with a small uncompressed dracut initramfs, kept as
//!    a commit in a persistent bare build repo and keyed by its package set,
//!    suite, mirrors and mmdebstrap version. A compose whose packages are a
//!    cached base's plus a few (v2 = v1 + strace) installs the few into a
//!    checkout of that base with the guest's own apt-get and the cached
//!    `.deb`s instead of bootstrapping again (seconds instead of minutes).
//! 2. The tree: a hardlinked checkout of the base (`/etc` and `/var` copied,
//!    since they are edited in place), the blueprint's customizations
//!    applied, then reshaped for OSTree (kernel under usr/lib/modules, etc
//!    -> usr/etc, var content -> usr/share/factory/var, links into var).
//! 3. The commit: `ostree commit --link-checkout-speedup` into the build repo
//!    (unchanged files are not rehashed), with the parent commit.
//! 4. The tarball: the commit pulled into a persistent archive repo (only new
//!    objects are compressed), then into a fresh archive repo with its parent
//!    (hardlinks), packed as `compose.json` + `repo/`.
//!
//! The cache folder is locked for the whole compose: two composes never
//! share a build repo mid-commit.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{ComposeBackend, ComposeRequest, ComposeResult, tarball};
use crate::{
    progress::Progress,
    tools::ostree::{CommitRequest, Depth, Repo, RepoMode},
};

mod base;
mod customize;
mod packages;
mod reshape;
mod workdir;

use base::{build_small_initramfs, checkout_base, find_or_build_base, install_extra_packages};
pub use customize::KARGS_FILE;
use customize::{apply_customizations, host_keys_at_first_boot};
pub use packages::{PackagePlan, dpkg_status_packages, host_debian_sources, plan_packages};
use packages::{apt_source_files, installed_packages};
use reshape::reshape_for_ostree;
use workdir::{WorkDir, empty_trash, lock_cache, write_new};

/// What every edge guest gets besides the blueprint's packages: systemd as
/// init, the cloud kernel, dracut for the initramfs, ostree to deploy and
/// upgrade, keepalived for VRRP, podman with what rootless needs, and the
/// basics the demo's scripts use.
pub const GUEST_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "linux-image-cloud-amd64",
    "dracut",
    "ostree",
    "ostree-boot",
    "keepalived",
    "podman",
    "uidmap",
    "slirp4netns",
    "fuse-overlayfs",
    "dbus-user-session",
    "iproute2",
    "procps",
    "curl",
    "busybox",
    // RHEL for Edge commits carry sshd; blueprints enable it without listing it.
    "openssh-server",
];

/// The time every compose without a parent is made at (2024-01-01 00:00:00
/// UTC), as `SOURCE_DATE_EPOCH` and as the commit's timestamp; a compose
/// with a parent is made one second after its parent. Time then comes from
/// the inputs, never the clock, so the same inputs give the same commit id,
/// and an upgrade is never "chronologically older" than the commit it
/// replaces (ostree refuses those).
pub const EPOCH: i64 = 1_704_067_200;

/// Composes edge commits with mmdebstrap and ostree.
#[derive(Debug, Clone)]
pub struct LocalComposer {
    cache_dir: PathBuf,
    /// The Debian release the guests run.
    pub suite: String,
    /// apt sources (`deb URI SUITE COMPONENTS`); empty takes the host's
    /// Debian sources from /etc/apt.
    pub mirrors: Vec<String>,
}

/// What `out/<image>-local.json` records about a compose: how packages were
/// mapped or dropped, what the base was, what was not applied, and timings.
#[derive(Debug, Clone, Default, Serialize)]
struct ComposeNotes {
    image: String,
    packages: PackagePlan,
    base_key: String,
    base_built: bool,
    extra_packages_installed: Vec<String>,
    customizations_not_applied: Vec<String>,
    timings_ms: Vec<(String, u64)>,
}

impl LocalComposer {
    /// A composer keeping its caches (downloaded packages, base rootfs, the
    /// bare build repo) under `cache_dir`, e.g. the store's `run/composer`.
    pub fn new(cache_dir: PathBuf) -> LocalComposer {
        // Bind mounts and hooks need an absolute path.
        let cache_dir = std::path::absolute(&cache_dir).unwrap_or(cache_dir);
        LocalComposer { cache_dir, suite: "bookworm".into(), mirrors: Vec::new() }
    }

    /// Uses these apt sources instead of the host's.
    pub fn with_mirrors(mut self, mirrors: Vec<String>) -> LocalComposer {
        self.mirrors = mirrors;
        self
    }

    /// The bare repo every local commit is made in.
    pub fn build_repo(&self) -> PathBuf {
        self.cache_dir.join("build-repo")
    }

    fn apt_cache(&self) -> PathBuf {
        self.cache_dir.join("apt-cache")
    }

    fn archive_repo(&self) -> PathBuf {
        self.cache_dir.join("archive-repo")
    }

    fn bases_dir(&self) -> PathBuf {
        self.cache_dir.join("bases")
    }

    fn mirrors(&self) -> anyhow::Result<Vec<String>> {
        if !self.mirrors.is_empty() {
            return Ok(self.mirrors.clone());
        }
        let mut texts = Vec::new();
        for path in apt_source_files() {
            if let Ok(text) = fs::read_to_string(&path) {
                texts.push((path, text));
            }
        }
        let mirrors = host_debian_sources(&self.suite, &texts);
        if mirrors.is_empty() {
            bail!(
                "no Debian {} sources in /etc/apt: add one (deb http://deb.debian.org/debian {} main) or give the composer a mirror",
                self.suite,
                self.suite
            );
        }
        Ok(mirrors)
    }
}

impl ComposeBackend for LocalComposer {
    fn name(&self) -> &'static str {
        "local"
    }

    fn compose(&self, request: &ComposeRequest, out: &Path, progress: &Progress) -> anyhow::Result<ComposeResult> {
        let result = compose(self, request, out, progress);
        if result.is_err() {
            // Nothing half-written: a failed compose leaves `out` as it was.
            for name in [format!("{}-commit.tar", request.image), format!("{}-local.json", request.image)] {
                fs::remove_file(out.join(name)).ok();
            }
        }
        result.with_context(|| format!("composing image `{}` locally", request.image))
    }
}

fn compose(
    composer: &LocalComposer,
    request: &ComposeRequest,
    out: &Path,
    progress: &Progress,
) -> anyhow::Result<ComposeResult> {
    let mut notes = ComposeNotes { image: request.image.clone(), ..ComposeNotes::default() };
    let mut clock = Clock::new();
    fs::create_dir_all(&composer.cache_dir)
        .with_context(|| format!("creating the composer cache {}", composer.cache_dir.display()))?;
    let _lock = lock_cache(&composer.cache_dir)?;

    let plan = plan_packages(&request.blueprint, &request.package_map)?;
    for (rpm, reason) in &plan.dropped {
        progress.note(&format!("dropped package {rpm}: {reason}"));
    }
    for what in &plan.ignored {
        progress.note(&format!("ignored {what}"));
    }
    let wanted: Vec<String> = GUEST_PACKAGES
        .iter()
        .map(|name| name.to_string())
        .chain(plan.install.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    notes.packages = plan;

    let build_repo = Repo::init(composer.build_repo(), RepoMode::Bare)?;
    ensure_parent(&build_repo, request)?;
    let epoch = source_date_epoch(&build_repo, request)?;
    let work_root = composer.cache_dir.join("work");
    fs::create_dir_all(&work_root).with_context(|| format!("creating {}", work_root.display()))?;
    empty_trash(&work_root);
    let work = WorkDir(Some(
        tempfile::Builder::new()
            .prefix(&format!("{}.", request.image))
            .tempdir_in(&work_root)
            .with_context(|| format!("creating a work folder in {}", work_root.display()))?,
    ));

    let (base, built) = find_or_build_base(composer, &build_repo, &wanted, work.path(), progress)?;
    notes.base_key = base.key.clone();
    notes.base_built = built;
    clock.lap(&mut notes, if built { "base (mmdebstrap + initramfs)" } else { "base (cached)" });

    let tree = work.path().join("tree");
    progress.note("checking out the base");
    checkout_base(&build_repo, &base, &tree)?;
    clock.lap(&mut notes, "checkout");

    let extras: Vec<String> = wanted.iter().filter(|name| !base.packages.contains(name)).cloned().collect();
    if !extras.is_empty() {
        progress.note(&format!("installing {} into the base", extras.join(", ")));
        install_extra_packages(composer, &base, &tree, &extras, epoch)?;
        notes.extra_packages_installed = extras;
        clock.lap(&mut notes, "extra packages");
    }

    let packages = installed_packages(&tree)?;
    notes.customizations_not_applied = apply_customizations(&tree, &request.blueprint, epoch)?;
    for what in &notes.customizations_not_applied {
        progress.note(&format!("customization not applied: {what}"));
    }
    clock.lap(&mut notes, "customizations");

    progress.note("building the initramfs");
    build_small_initramfs(&tree, &base.kernel)?;
    clock.lap(&mut notes, "initramfs");

    host_keys_at_first_boot(&tree)?;
    reshape_for_ostree(&tree, &base.kernel)?;
    clock.lap(&mut notes, "reshape");

    progress.note("committing");
    let version = Some(request.blueprint.version.clone());
    let subject = format!("edgelab local compose of image {}", request.image);
    let stats = build_repo.commit(&CommitRequest {
        branch: &request.ostree_ref,
        tree: &tree,
        parent: request.parent_commit.as_deref(),
        subject: &subject,
        version: version.as_deref(),
        bootable: true,
        link_checkout_speedup: true,
        consume: false,
        timestamp: Some(epoch),
    })?;
    let commit = stats.commit.clone();
    clock.lap(&mut notes, "commit");

    progress.note("packing the commit tarball");
    let archive = Repo::init(composer.archive_repo(), RepoMode::Archive)?;
    let depth = if request.parent_commit.is_some() { Depth::Parents(1) } else { Depth::Tip };
    archive.pull_local(&build_repo.path, &[&commit], depth)?;
    clock.lap(&mut notes, "archive repo (new objects compressed)");
    let staging = Repo::init(work.path().join("repo"), RepoMode::Archive)?;
    staging.pull_local(&archive.path, &[&commit], depth)?;
    staging.set_ref(&request.ostree_ref, &commit)?;
    clock.lap(&mut notes, "staging repo (hardlinks)");

    let compose_json = json!({
        "ref": request.ostree_ref,
        "ostree-n-metadata-total": stats.metadata_total,
        "ostree-n-metadata-written": stats.metadata_written,
        "ostree-n-content-total": stats.content_total,
        "ostree-n-content-written": stats.content_written,
        "ostree-n-cache-hits": stats.cache_hits,
        "ostree-content-bytes-written": stats.content_bytes_written,
        "ostree-commit": commit,
        "ostree-content-checksum": build_repo.content_checksum(&commit)?,
        "ostree-version": version.clone().unwrap_or_default(),
        "ostree-timestamp": commit_timestamp(&build_repo, &commit)?,
        "rpm-ostree-inputhash": input_hash(&packages),
    });
    let tarball_path = out.join(format!("{}-commit.tar", request.image));
    tarball::pack(&tarball_path, &compose_json, &staging.path)?;
    clock.lap(&mut notes, "tarball");

    let notes_path = out.join(format!("{}-local.json", request.image));
    write_new(&notes_path, &serde_json::to_vec_pretty(&notes)?)?;
    let tarball_sha256 = crate::hash::digest_file(&tarball_path)
        .with_context(|| format!("hashing {}", tarball_path.display()))?
        .trim_start_matches("sha256:")
        .to_string();
    Ok(ComposeResult { tarball: tarball_path, commit, tarball_sha256, compose_json, backend_id: base.key, packages })
}

/// Makes sure the build repo holds the parent commit: from an earlier local
/// compose, or pulled from `parent_repo` (a repo folder or a commit tarball).
fn ensure_parent(build_repo: &Repo, request: &ComposeRequest) -> anyhow::Result<()> {
    let Some(parent) = &request.parent_commit else {
        return Ok(());
    };
    if build_repo.has_commit(parent) {
        return Ok(());
    }
    let Some(source) = &request.parent_repo else {
        bail!("the parent commit {parent} is not in the build repo and the request names no repo holding it");
    };
    if source.is_dir() {
        build_repo.pull_local(source, &[parent], Depth::Tip)?;
        return Ok(());
    }
    let unpacked = tempfile::tempdir_in(build_repo.path.parent().unwrap_or(Path::new("/var/tmp")))?;
    tarball::extract(source, unpacked.path())?;
    build_repo.pull_local(&unpacked.path().join("repo"), &[parent], Depth::Tip)?;
    Ok(())
}

/// The time a compose is made at: `EPOCH`, or its parent's time plus one
/// second.
fn source_date_epoch(build_repo: &Repo, request: &ComposeRequest) -> anyhow::Result<i64> {
    match &request.parent_commit {
        None => Ok(EPOCH),
        Some(parent) => Ok(build_repo.timestamp(parent)? + 1),
    }
}

fn commit_timestamp(repo: &Repo, commit: &str) -> anyhow::Result<String> {
    let log = repo.log(commit)?;
    let date = log.lines().find_map(|line| line.trim().strip_prefix("Date:")).map(str::trim).unwrap_or_default();
    // `2026-11-27 11:36:50 +0000` -> `2026-11-27T11:36:50Z`, as composer writes it.
    let mut parts = date.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(day), Some(time)) => Ok(format!("{day}T{time}Z")),
        _ => Ok(date.to_string()),
    }
}

fn input_hash(packages: &[String]) -> String {
    hex::encode(Sha256::digest(packages.join("\n").as_bytes()))
}

/// Step timings for the notes file.
struct Clock {
    last: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock { last: Instant::now() }
    }

    fn lap(&mut self, notes: &mut ComposeNotes, step: &str) {
        notes.timings_ms.push((step.to_string(), self.last.elapsed().as_millis() as u64));
        self.last = Instant::now();
    }
}
