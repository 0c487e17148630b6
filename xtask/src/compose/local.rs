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
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{ComposeBackend, ComposeRequest, ComposeResult, tarball};
use crate::{
    progress::Progress,
    tools::{
        chroot::Chroot,
        mmdebstrap::{self, Bootstrap},
        ostree::{CommitRequest, Depth, Repo, RepoMode},
    },
};

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

/// The dracut modules and drivers of the guest's initramfs: enough to find
/// a virtio disk and hand over to the OSTree deployment, nothing more.
const DRACUT_MODULES: &str =
    "systemd systemd-initrd dracut-systemd base fs-lib rootfs-block udev-rules ostree kernel-modules";
const DRACUT_DRIVERS: &str = "virtio_pci virtio_blk virtio_net";

/// The guest's initramfs builder (guest/local/initramfs/build.sh), run in
/// every compose's tree: a few busybox lines instead of dracut's systemd.
const INITRAMFS_SCRIPT: &str = include_str!("../../../guest/local/initramfs/build.sh");

/// Bump when the base recipe changes what a base holds.
const BASE_SCHEMA: u32 = 1;

/// The time every compose without a parent is made at (2024-01-01 00:00:00
/// UTC), as `SOURCE_DATE_EPOCH` and as the commit's timestamp; a compose
/// with a parent is made one second after its parent. Time then comes from
/// the inputs, never the clock, so the same inputs give the same commit id,
/// and an upgrade is never "chronologically older" than the commit it
/// replaces (ostree refuses those).
pub const EPOCH: i64 = 1_704_067_200;

/// Files a package install or a user add writes from the clock or from
/// the build host's state, removed from every tree before it is committed:
/// logs of the build's apt and dpkg runs (dated lines), and ldconfig's
/// cache of file stamps. (The guest starts them afresh.)
const BUILD_TRACES: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    "var/cache/ldconfig/aux-cache",
];

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

/// How the blueprint's packages became Debian packages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackagePlan {
    /// Debian packages to install for the blueprint, sorted.
    pub install: Vec<String>,
    /// RPM name -> the Debian packages it became, where the map says so.
    pub mapped: Vec<(String, Vec<String>)>,
    /// RPM names left out, with the lab's reason.
    pub dropped: Vec<(String, String)>,
    /// Blueprint entries that mean nothing on Debian (version pins, groups).
    pub ignored: Vec<String>,
}

/// A cached base rootfs: a commit in the build repo.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Base {
    key: String,
    suite: String,
    mirrors: Vec<String>,
    mmdebstrap: String,
    packages: Vec<String>,
    commit: String,
    kernel: String,
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

/// Maps blueprint packages through the lab's package map (JSON as the graph
/// writes it: `[{"rpm": .., "debian": [..]} | {"rpm": .., "drop": reason}]`).
pub fn plan_packages(blueprint: &Value, package_map: &Value) -> anyhow::Result<PackagePlan> {
    let mut plan = PackagePlan::default();
    let mut install = BTreeSet::new();
    let entries = package_map.as_array().map(Vec::as_slice).unwrap_or_default();
    let packages = blueprint.get("packages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for package in packages {
        let Some(name) = package.get("name").and_then(Value::as_str) else {
            bail!("blueprint package entry without a name: {package}");
        };
        if let Some(version) = package.get("version").and_then(Value::as_str)
            && version != "*"
            && !version.is_empty()
        {
            plan.ignored.push(format!("version pin {name}-{version} (Debian versions differ; the archive's is used)"));
        }
        let entry = entries.iter().find(|entry| entry.get("rpm").and_then(Value::as_str) == Some(name));
        match entry {
            Some(entry) if entry.get("drop").is_some() => {
                let reason = entry["drop"].as_str().unwrap_or("dropped by the lab's package map");
                plan.dropped.push((name.to_string(), reason.to_string()));
            }
            Some(entry) => {
                let debs: Vec<String> = entry
                    .get("debian")
                    .and_then(Value::as_array)
                    .map(|debs| debs.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                install.extend(debs.iter().cloned());
                plan.mapped.push((name.to_string(), debs));
            }
            None => {
                install.insert(name.to_string());
            }
        }
    }
    for group in blueprint.get("groups").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let name = group.get("name").and_then(Value::as_str).unwrap_or("?");
        plan.ignored.push(format!("package group {name} (RPM groups have no Debian equivalent)"));
    }
    for module in blueprint.get("modules").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let name = module.get("name").and_then(Value::as_str).unwrap_or("?");
        plan.ignored.push(format!("module {name} (RPM modules have no Debian equivalent)"));
    }
    for name in &install {
        if !is_debian_package_name(name) {
            bail!("`{name}` is not a valid Debian package name; map it in the lab's package-map");
        }
    }
    plan.install = install.into_iter().collect();
    Ok(plan)
}

/// The one-line sources for `suite` among apt source files' texts, both
/// one-line (`.list`) and deb822 (`.sources`) formats.
pub fn host_debian_sources(suite: &str, files: &[(PathBuf, String)]) -> Vec<String> {
    let wanted = |candidate: &str| candidate == suite || candidate.starts_with(&format!("{suite}-"));
    let mut lines = Vec::new();
    for (path, text) in files {
        if path.extension().is_some_and(|ext| ext == "sources") {
            for stanza in text.split("\n\n") {
                let field = |name: &str| {
                    stanza.lines().find_map(|line| {
                        let (key, value) = line.split_once(':')?;
                        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().to_string())
                    })
                };
                if field("Enabled").is_some_and(|value| value.eq_ignore_ascii_case("no")) {
                    continue;
                }
                if !field("Types").is_some_and(|types| types.split_whitespace().any(|t| t == "deb")) {
                    continue;
                }
                let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else { continue };
                let components = field("Components").unwrap_or_else(|| "main".into());
                for uri in uris.split_whitespace() {
                    for candidate in suites.split_whitespace().filter(|s| wanted(s)) {
                        lines.push(format!("deb {uri} {candidate} {components}"));
                    }
                }
            }
        } else {
            for line in text.lines().map(str::trim) {
                let mut words = line.split_whitespace();
                if words.next() != Some("deb") {
                    continue;
                }
                let mut rest: Vec<&str> = words.collect();
                if rest.first().is_some_and(|word| word.starts_with('[')) {
                    let end = rest.iter().position(|word| word.ends_with(']')).unwrap_or(0);
                    rest.drain(..=end);
                }
                if rest.len() >= 2 && wanted(rest[1]) {
                    lines.push(format!("deb {}", rest.join(" ")));
                }
            }
        }
    }
    lines
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
    let version = request.blueprint.get("version").and_then(Value::as_str).map(str::to_string);
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

/// The cached base for exactly `wanted`, else the largest cached base whose
/// packages are a subset of it (the rest is installed later), else a new
/// one bootstrapped now.
fn find_or_build_base(
    composer: &LocalComposer,
    build_repo: &Repo,
    wanted: &[String],
    work: &Path,
    progress: &Progress,
) -> anyhow::Result<(Base, bool)> {
    let mirrors = composer.mirrors()?;
    let mmdebstrap_version = mmdebstrap::version()?;
    let key = base_key(&composer.suite, &mirrors, &mmdebstrap_version, wanted);
    let bases = cached_bases(composer, build_repo);
    let compatible =
        |base: &&Base| base.suite == composer.suite && base.mirrors == mirrors && base.mmdebstrap == mmdebstrap_version;
    if let Some(base) = bases.iter().filter(compatible).find(|base| base.key == key) {
        return Ok((base.clone(), false));
    }
    let subset = bases
        .iter()
        .filter(compatible)
        .filter(|base| base.packages.iter().all(|name| wanted.contains(name)))
        .max_by_key(|base| base.packages.len());
    if let Some(base) = subset {
        return Ok((base.clone(), false));
    }

    progress.note(&format!("bootstrapping Debian {} with {} packages (minutes, once)", composer.suite, wanted.len()));
    let rootfs = work.join("rootfs");
    let lists = composer.bases_dir().join(format!("{key}.lists"));
    fs::remove_dir_all(&lists).ok();
    mmdebstrap::bootstrap(&Bootstrap {
        suite: &composer.suite,
        target: &rootfs,
        packages: wanted,
        mirrors: &mirrors,
        apt_cache: &composer.apt_cache(),
        keep_lists: Some(&lists),
        source_date_epoch: EPOCH,
    })
    .with_context(|| format!("bootstrapping Debian {} with {}", composer.suite, wanted.join(" ")))?;

    let kernel = kernel_version(&rootfs)?;
    progress.note(&format!("building the initramfs for {kernel}"));
    build_initramfs(&rootfs, &kernel)?;
    clear_for_commit(&rootfs)?;
    remove_build_traces(&rootfs)?;
    progress.note("storing the base in the build repo");
    let stats = build_repo.commit(&CommitRequest {
        branch: &format!("edgelab/base/{}", &key[..16]),
        tree: &rootfs,
        parent: None,
        subject: "edgelab base rootfs",
        version: None,
        bootable: false,
        link_checkout_speedup: false,
        consume: true,
        timestamp: Some(EPOCH),
    })?;
    fs::remove_dir_all(&rootfs).ok();
    let base = Base {
        key: key.clone(),
        suite: composer.suite.clone(),
        mirrors,
        mmdebstrap: mmdebstrap_version,
        packages: wanted.to_vec(),
        commit: stats.commit,
        kernel,
    };
    write_new(&composer.bases_dir().join(format!("{key}.json")), &serde_json::to_vec_pretty(&base)?)?;
    Ok((base, true))
}

fn base_key(suite: &str, mirrors: &[String], mmdebstrap_version: &str, packages: &[String]) -> String {
    let preimage = json!({
        "schema": BASE_SCHEMA,
        "suite": suite,
        "mirrors": mirrors,
        "mmdebstrap": mmdebstrap_version,
        "packages": packages,
        "dracut": [DRACUT_MODULES, DRACUT_DRIVERS],
    });
    hex::encode(Sha256::digest(preimage.to_string().as_bytes()))
}

/// Bases recorded in the cache whose commit is still in the build repo.
fn cached_bases(composer: &LocalComposer, build_repo: &Repo) -> Vec<Base> {
    let Ok(entries) = fs::read_dir(composer.bases_dir()) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
        .filter_map(|entry| serde_json::from_slice::<Base>(&fs::read(entry.path()).ok()?).ok())
        .filter(|base| build_repo.has_commit(&base.commit))
        .collect()
}

/// A hardlinked checkout of the base, except /etc and /var which are
/// copies: package installs and useradd append to files there in place,
/// which would otherwise write through into the build repo's objects.
fn checkout_base(build_repo: &Repo, base: &Base, tree: &Path) -> anyhow::Result<()> {
    build_repo.checkout_hardlinked(&base.commit, tree)?;
    for dir in ["etc", "var"] {
        let path = tree.join(dir);
        fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        build_repo.checkout_copy(&base.commit, &format!("/{dir}"), &path)?;
    }
    Ok(())
}

/// apt-get inside the tree, with the base's package lists and the shared
/// `.deb` cache bind-mounted in, so a cached package downloads nothing.
fn install_extra_packages(
    composer: &LocalComposer,
    base: &Base,
    tree: &Path,
    extras: &[String],
    epoch: i64,
) -> anyhow::Result<()> {
    let lists = composer.bases_dir().join(format!("{}.lists", base.key));
    let chroot = Chroot::new(tree)
        .with_api_filesystems()
        .with_source_date_epoch(epoch)
        .with_bind(composer.apt_cache(), "/var/cache/apt/archives")
        .with_bind(&lists, "/var/lib/apt/lists");
    let resolv = tree.join("etc/resolv.conf");
    let resolv_before = fs::symlink_metadata(&resolv).is_ok();
    if !resolv_before {
        // Only for packages not in the cache; removed again below.
        fs::copy("/etc/resolv.conf", &resolv).ok();
    }
    let result = chroot
        .run(
            "apt-get",
            ["install", "-y", "-q", "--no-install-recommends", "-o", "Acquire::Retries=1"]
                .into_iter()
                .chain(extras.iter().map(String::as_str)),
        )
        .map_err(explain_apt_failure)
        .with_context(|| format!("installing {} into the base", extras.join(", ")));
    if !resolv_before {
        fs::remove_file(&resolv).ok();
    }
    result.map(drop)
}

fn explain_apt_failure(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    let missing: Vec<&str> =
        text.lines().filter_map(|line| line.split("Unable to locate package ").nth(1)).map(str::trim).collect();
    if missing.is_empty() {
        return err;
    }
    err.context(format!("the package archive has no package named {}", missing.join(", ")))
}

/// The kernel version of the tree (the one folder in usr/lib/modules).
fn kernel_version(root: &Path) -> anyhow::Result<String> {
    let modules = root.join("usr/lib/modules");
    let mut versions: Vec<String> = fs::read_dir(&modules)
        .with_context(|| format!("reading {}", modules.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| root.join("boot").join(format!("vmlinuz-{name}")).exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some(version) => Ok(version),
        None => bail!("no kernel in {} (is linux-image-cloud-amd64 installed?)", modules.display()),
    }
}

/// The guest's initramfs (`INITRAMFS_SCRIPT`) in place of the base's dracut
/// one: under TCG a boot spends 1 s in it instead of about 20.
fn build_small_initramfs(root: &Path, kernel: &str) -> anyhow::Result<()> {
    let target = format!("/boot/initramfs-{kernel}.img");
    // The tree is a hardlinked checkout: the base's initramfs is the build
    // repo's object itself, so it is unlinked, never written through.
    let old = root.join(target.trim_start_matches('/'));
    fs::remove_file(&old).with_context(|| format!("removing the base's initramfs {}", old.display()))?;
    // SOURCE_DATE_EPOCH: the script dates every file in the archive from it,
    // so the same inputs give the same initramfs (and commit).
    Chroot::new(root)
        .with_api_filesystems()
        .with_source_date_epoch(EPOCH)
        .run("/bin/sh", ["-c", INITRAMFS_SCRIPT, "edgelab-initramfs", kernel, target.as_str()])
        .with_context(|| format!("building the initramfs for kernel {kernel} (guest/local/initramfs/build.sh)"))?;
    Ok(())
}

/// A small uncompressed initramfs (it unpacks in 0.3 s instead of 8 s
/// under TCG), replacing the big host-only one the kernel package built.
fn build_initramfs(root: &Path, kernel: &str) -> anyhow::Result<()> {
    // `--reproducible`: file times in the cpio archive from SOURCE_DATE_EPOCH.
    let chroot = Chroot::new(root).with_api_filesystems().with_source_date_epoch(EPOCH);
    let target = format!("/boot/initramfs-{kernel}.img");
    chroot
        .run(
            "dracut",
            [
                "--force",
                "--reproducible",
                "--no-hostonly",
                "--no-compress",
                "-m",
                DRACUT_MODULES,
                "--drivers",
                DRACUT_DRIVERS,
                &target,
                kernel,
            ],
        )
        .with_context(|| format!("building the initramfs for kernel {kernel}"))?;
    let default = root.join(format!("boot/initrd.img-{kernel}"));
    if default.exists() {
        fs::remove_file(&default).with_context(|| format!("removing {}", default.display()))?;
    }
    Ok(())
}

/// Empties what only makes sense on a running system (device nodes, /proc,
/// /run, /tmp contents) so the tree can be committed.
fn clear_for_commit(root: &Path) -> anyhow::Result<()> {
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        let path = root.join(dir);
        if path.is_dir() {
            for entry in fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))? {
                remove_any(&entry?.path())?;
            }
        }
    }
    Ok(())
}

/// Installed packages from the tree's dpkg status, `name=version`, sorted.
fn installed_packages(root: &Path) -> anyhow::Result<Vec<String>> {
    let path = root.join("var/lib/dpkg/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(dpkg_status_packages(&text).into_iter().map(|(name, version)| format!("{name}={version}")).collect())
}

/// (name, version) of every installed package in a dpkg status file, sorted.
pub fn dpkg_status_packages(text: &str) -> Vec<(String, String)> {
    let mut packages = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_string()))
        };
        if let (Some(name), Some(version), Some(status)) = (field("Package"), field("Version"), field("Status"))
            && status.ends_with(" installed")
        {
            let arch = field("Architecture").unwrap_or_default();
            let name =
                if arch.is_empty() || arch == "all" || arch == "amd64" { name } else { format!("{name}:{arch}") };
            packages.push((name, version));
        }
    }
    packages.sort();
    packages
}

/// Applies the blueprint's customizations to the tree; returns what could
/// not be applied (reported, never silently skipped).
fn apply_customizations(root: &Path, blueprint: &Value, epoch: i64) -> anyhow::Result<Vec<String>> {
    let mut not_applied = Vec::new();
    let Some(custom) = blueprint.get("customizations").and_then(Value::as_object) else {
        return Ok(not_applied);
    };
    // useradd dates the password change in /etc/shadow from SOURCE_DATE_EPOCH.
    let chroot = Chroot::new(root).with_source_date_epoch(epoch);
    let list = |value: Option<&Value>| -> Vec<Value> { value.and_then(Value::as_array).cloned().unwrap_or_default() };
    for (key, value) in custom {
        match key.as_str() {
            "group" => {
                for group in list(Some(value)) {
                    let name = required_str(&group, "name", "customizations.group")?;
                    let mut args = vec!["-f".to_string()];
                    if let Some(gid) = group.get("gid").and_then(Value::as_i64) {
                        args.extend(["-g".into(), gid.to_string()]);
                    }
                    args.push(name.to_string());
                    chroot.run("groupadd", &args).with_context(|| format!("adding group {name}"))?;
                }
            }
            "user" => {
                for user in list(Some(value)) {
                    add_user(&chroot, &user)?;
                }
            }
            "sshkey" => {
                for entry in list(Some(value)) {
                    let user = required_str(&entry, "user", "customizations.sshkey")?;
                    let key = required_str(&entry, "key", "customizations.sshkey")?;
                    add_authorized_key(&chroot, user, key)?;
                }
            }
            "services" => {
                for name in list(value.get("enabled")) {
                    let name = name.as_str().unwrap_or_default();
                    enable_service(&chroot, name, "enable")?;
                }
                for name in list(value.get("disabled")) {
                    let name = name.as_str().unwrap_or_default();
                    enable_service(&chroot, name, "disable")?;
                }
            }
            "firewall" => {
                // There is no firewalld on the guest: the list is recorded for
                // the guest's own firewall setup to read.
                let ports: Vec<String> =
                    list(value.get("ports")).iter().filter_map(Value::as_str).map(str::to_string).collect();
                let mut text = String::from("# Ports the blueprint opens (port:protocol), one per line.\n");
                for port in &ports {
                    text.push_str(port);
                    text.push('\n');
                }
                write_replacing(&root.join("etc/edgelab/firewall-ports"), text.as_bytes(), 0o644)?;
                let services: Vec<String> = list(value.get("services").and_then(|s| s.get("enabled")))
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                if !services.is_empty() {
                    let text = format!("{}\n", services.join("\n"));
                    write_replacing(&root.join("etc/edgelab/firewall-services"), text.as_bytes(), 0o644)?;
                }
            }
            "hostname" => {
                let name = value.as_str().unwrap_or_default();
                write_replacing(&root.join("etc/hostname"), format!("{name}\n").as_bytes(), 0o644)?;
            }
            "timezone" => {
                if let Some(zone) = value.get("timezone").and_then(Value::as_str) {
                    if !root.join("usr/share/zoneinfo").join(zone).exists() {
                        bail!("customizations.timezone: unknown time zone `{zone}`");
                    }
                    let link = root.join("etc/localtime");
                    remove_any(&link).ok();
                    std::os::unix::fs::symlink(format!("/usr/share/zoneinfo/{zone}"), &link)
                        .with_context(|| format!("linking {}", link.display()))?;
                    write_replacing(&root.join("etc/timezone"), format!("{zone}\n").as_bytes(), 0o644)?;
                }
                if value.get("ntpservers").is_some() {
                    not_applied.push("timezone.ntpservers (no chrony on the guest)".into());
                }
            }
            "kernel" => {
                if let Some(append) = value.get("append").and_then(Value::as_str) {
                    // The installer reads this when it deploys the commit.
                    write_replacing(&root.join("etc/edgelab/kernel-args"), format!("{append}\n").as_bytes(), 0o644)?;
                }
            }
            "directories" => {
                for dir in list(Some(value)) {
                    let path = guest_path(required_str(&dir, "path", "customizations.directories")?)?;
                    let target = root.join(&path);
                    fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
                    if let Some(mode) = mode_of(&dir)? {
                        set_mode(&target, mode)?;
                    }
                }
            }
            "files" => {
                for file in list(Some(value)) {
                    let path = guest_path(required_str(&file, "path", "customizations.files")?)?;
                    let data = file.get("data").and_then(Value::as_str).unwrap_or_default();
                    write_replacing(&root.join(&path), data.as_bytes(), mode_of(&file)?.unwrap_or(0o644))?;
                }
            }
            other => not_applied.push(format!("customizations.{other} (not supported by the local composer)")),
        }
    }
    Ok(not_applied)
}

fn add_user(chroot: &Chroot, user: &Value) -> anyhow::Result<()> {
    let name = required_str(user, "name", "customizations.user")?;
    let mut args: Vec<String> = vec!["--create-home".into()];
    if let Some(description) = user.get("description").and_then(Value::as_str) {
        args.extend(["--comment".into(), description.into()]);
    }
    if let Some(password) = user.get("password").and_then(Value::as_str) {
        if !password.starts_with('$') {
            bail!("customizations.user {name}: the password must be a crypt(3) hash, never plaintext");
        }
        args.extend(["--password".into(), password.into()]);
    }
    if let Some(shell) = user.get("shell").and_then(Value::as_str) {
        args.extend(["--shell".into(), shell.into()]);
    } else {
        args.extend(["--shell".into(), "/bin/bash".into()]);
    }
    if let Some(uid) = user.get("uid").and_then(Value::as_i64) {
        args.extend(["--uid".into(), uid.to_string()]);
    }
    if let Some(home) = user.get("home").and_then(Value::as_str) {
        args.extend(["--home-dir".into(), home.into()]);
    }
    let groups: Vec<String> = user
        .get("groups")
        .and_then(Value::as_array)
        .map(|groups| groups.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    for group in &groups {
        // RHEL's `wheel` has no Debian twin; make the groups a blueprint names.
        chroot.run("groupadd", ["-f", group.as_str()]).with_context(|| format!("adding group {group}"))?;
    }
    if !groups.is_empty() {
        args.extend(["--groups".into(), groups.join(",")]);
    }
    args.push(name.to_string());
    chroot.run("useradd", &args).with_context(|| format!("adding user {name}"))?;
    if let Some(key) = user.get("key").and_then(Value::as_str) {
        add_authorized_key(chroot, name, key)?;
    }
    Ok(())
}

fn add_authorized_key(chroot: &Chroot, user: &str, key: &str) -> anyhow::Result<()> {
    let entry = chroot.run("getent", ["passwd", user]).with_context(|| format!("looking up user {user}"))?.stdout;
    let fields: Vec<&str> = entry.trim().split(':').collect();
    let (Some(uid), Some(gid), Some(home)) = (fields.get(2), fields.get(3), fields.get(5)) else {
        bail!("user {user} has no passwd entry");
    };
    let ssh_dir = chroot.root.join(home.trim_start_matches('/')).join(".ssh");
    fs::create_dir_all(&ssh_dir).with_context(|| format!("creating {}", ssh_dir.display()))?;
    set_mode(&ssh_dir, 0o700)?;
    let keys = ssh_dir.join("authorized_keys");
    let mut text = fs::read_to_string(&keys).unwrap_or_default();
    text.push_str(key.trim());
    text.push('\n');
    write_replacing(&keys, text.as_bytes(), 0o600)?;
    let owner = format!("{uid}:{gid}");
    let inside = format!("{home}/.ssh");
    chroot.run("chown", ["-R", owner.as_str(), inside.as_str()]).with_context(|| format!("chown {inside}"))?;
    Ok(())
}

fn enable_service(chroot: &Chroot, name: &str, verb: &str) -> anyhow::Result<()> {
    let unit = if name.contains('.') { name.to_string() } else { format!("{name}.service") };
    // An alias (Debian's sshd.service -> ssh.service) cannot be enabled by
    // its alias name: enable the unit it names.
    let unit = ["etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .filter_map(|dir| fs::read_link(chroot.root.join(dir).join(&unit)).ok())
        .filter_map(|target| target.file_name().map(|name| name.to_string_lossy().into_owned()))
        .find(|target| target.contains('.') && *target != unit)
        .unwrap_or(unit);
    chroot
        .run("systemctl", [verb, unit.as_str()])
        .with_context(|| format!("customizations.services: systemctl {verb} {unit} (is its package installed?)"))?;
    Ok(())
}

/// The unit that makes a device's SSH host keys on its first boot, before
/// sshd starts (as RHEL's sshd-keygen does).
const SSH_KEYGEN_UNIT: &str = "[Unit]
Description=Generate this device's SSH host keys (an image ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
";

/// openssh-server's install made host keys: random, so no two composes
/// would be the same, and every device of the image would share them.
/// They are removed, and the device makes its own on its first boot.
fn host_keys_at_first_boot(root: &Path) -> anyhow::Result<()> {
    let ssh = root.join("etc/ssh");
    if !ssh.join("sshd_config").exists() {
        return Ok(());
    }
    for entry in fs::read_dir(&ssh).with_context(|| format!("reading {}", ssh.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("ssh_host_") {
            remove_any(&path)?;
        }
    }
    let unit = "edgelab-ssh-keygen.service";
    write_replacing(&root.join("etc/systemd/system").join(unit), SSH_KEYGEN_UNIT.as_bytes(), 0o644)?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    remove_any(&wants.join(unit))?;
    std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), wants.join(unit))
        .with_context(|| format!("enabling {unit}"))?;
    Ok(())
}

/// The OSTree layout: kernel and initramfs in usr/lib/modules/$KVER, /etc
/// as usr/etc, /var's content as usr/share/factory/var (the installer fills
/// each deployment's /var from it), the writable top-level folders as links
/// into /var, and the sysroot mount point.
fn reshape_for_ostree(root: &Path, kernel: &str) -> anyhow::Result<()> {
    let modules = root.join("usr/lib/modules").join(kernel);
    rename(&root.join(format!("boot/vmlinuz-{kernel}")), &modules.join("vmlinuz"))?;
    rename(&root.join(format!("boot/initramfs-{kernel}.img")), &modules.join("initramfs.img"))?;
    for entry in fs::read_dir(root.join("boot")).context("reading boot/")? {
        remove_any(&entry?.path())?;
    }
    for link in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        remove_any(&root.join(link))?;
    }
    clear_for_commit(root)?;
    remove_build_traces(root)?;

    // Package lists and caches are the build's, not the guest's.
    for dir in ["var/lib/apt/lists", "var/cache/apt/archives"] {
        let path = root.join(dir);
        if path.is_dir() {
            for entry in fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))? {
                remove_any(&entry?.path())?;
            }
        }
    }
    for file in ["var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"] {
        remove_any(&root.join(file))?;
    }

    write_replacing(&root.join("etc/machine-id"), b"", 0o444)?;
    write_replacing(
        &root.join("etc/fstab"),
        b"# The root is mounted by the initramfs from the ostree= argument.\n",
        0o644,
    )?;
    rename(&root.join("etc"), &root.join("usr/etc"))?;

    let factory = root.join("usr/share/factory");
    fs::create_dir_all(&factory).with_context(|| format!("creating {}", factory.display()))?;
    rename(&root.join("var"), &factory.join("var"))?;
    fs::create_dir(root.join("var")).context("creating var/")?;
    let factory_var = factory.join("var");
    for (dir, into_var, link) in [
        ("home", "home", "var/home"),
        ("root", "roothome", "var/roothome"),
        ("opt", "opt", "var/opt"),
        ("srv", "srv", "var/srv"),
        ("mnt", "mnt", "var/mnt"),
        ("usr/local", "usrlocal", "../var/usrlocal"),
    ] {
        let path = root.join(dir);
        let moved = factory_var.join(into_var);
        remove_any(&moved)?;
        if fs::symlink_metadata(&path).is_ok() {
            rename(&path, &moved)?;
        } else {
            fs::create_dir_all(&moved).with_context(|| format!("creating {}", moved.display()))?;
        }
        std::os::unix::fs::symlink(link, &path).with_context(|| format!("linking {}", path.display()))?;
    }
    fs::create_dir_all(root.join("sysroot")).context("creating sysroot/")?;
    remove_any(&root.join("ostree"))?;
    std::os::unix::fs::symlink("sysroot/ostree", root.join("ostree")).context("linking ostree")?;
    Ok(())
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

/// Removes `BUILD_TRACES` from a tree about to be committed.
fn remove_build_traces(root: &Path) -> anyhow::Result<()> {
    for path in BUILD_TRACES {
        remove_any(&root.join(path))?;
    }
    Ok(())
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

fn is_debian_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn apt_source_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "list" || ext == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
}

fn required_str<'a>(value: &'a Value, field: &str, what: &str) -> anyhow::Result<&'a str> {
    value.get(field).and_then(Value::as_str).with_context(|| format!("{what}: an entry without `{field}`: {value}"))
}

/// A guest path from a blueprint: absolute, without `..`; returned relative.
fn guest_path(path: &str) -> anyhow::Result<PathBuf> {
    let relative = path.strip_prefix('/').with_context(|| format!("`{path}` is not an absolute path"))?;
    if relative.split('/').any(|part| part == "..") || relative.is_empty() {
        bail!("`{path}` must name a file inside the guest without `..`");
    }
    Ok(PathBuf::from(relative))
}

fn mode_of(entry: &Value) -> anyhow::Result<Option<u32>> {
    match entry.get("mode") {
        None => Ok(None),
        Some(Value::String(text)) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .map(Some)
            .with_context(|| format!("mode `{text}` is not octal")),
        Some(Value::Number(number)) => Ok(number.as_u64().map(|n| n as u32)),
        Some(other) => bail!("mode {other} is neither a string nor a number"),
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", path.display()))
}

/// Writes a file by replacing it, never in place: files in the tree may be
/// hardlinks into the build repo.
fn write_replacing(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    remove_any(path)?;
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let partial = path.with_extension("partial");
    let result = fs::write(&partial, bytes).and_then(|()| fs::rename(&partial, path));
    if result.is_err() {
        fs::remove_file(&partial).ok();
    }
    result.with_context(|| format!("writing {}", path.display()))
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::rename(from, to).with_context(|| format!("moving {} to {}", from.display(), to.display()))
}

fn remove_any(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => Err(err),
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// Holds the cache's lock file for the duration of a compose.
fn lock_cache(cache_dir: &Path) -> anyhow::Result<fs::File> {
    let path = cache_dir.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// A work folder removed when dropped, unless something is still mounted
/// inside it: deleting through a leftover bind mount of /dev or the apt
/// cache would delete the host's files.
struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    fn path(&self) -> &Path {
        self.0.as_ref().map(|dir| dir.path()).unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        let path = dir.keep();
        if mounted_under(&path) {
            eprintln!("warning: leaving {} in place: something is still mounted inside it", path.display());
            return;
        }
        // Deleting a rootfs (tens of thousands of files) takes seconds: move
        // it to the trash and delete it off the compose's critical path. What
        // a finished process leaves there, the next compose deletes.
        let trash = path.parent().map(|work| work.join("trash")).unwrap_or_else(|| path.clone());
        let target = trash.join(path.file_name().unwrap_or_default());
        let doomed = match fs::create_dir_all(&trash).and_then(|()| fs::rename(&path, &target)) {
            Ok(()) => target,
            Err(_) => path,
        };
        std::thread::spawn(move || fs::remove_dir_all(doomed));
    }
}

/// Deletes what earlier composes left in the trash, in the background.
fn empty_trash(work_root: &Path) {
    let trash = work_root.join("trash");
    if mounted_under(&trash) {
        return;
    }
    if let Ok(entries) = fs::read_dir(&trash) {
        let doomed: Vec<PathBuf> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
        std::thread::spawn(move || doomed.iter().for_each(|path| drop(fs::remove_dir_all(path))));
    }
}

/// Whether any mount point lies inside `dir` (from /proc/self/mountinfo).
fn mounted_under(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    text.lines().filter_map(|line| line.split(' ').nth(4)).any(|point| Path::new(point).starts_with(dir))
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

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn maps_drops_and_keeps_packages() {
        let blueprint = json!({
            "packages": [
                {"name": "container-tools", "version": "*"},
                {"name": "setroubleshoot-server", "version": "*"},
                {"name": "jq", "version": "1.6"},
            ],
            "groups": [{"name": "core"}],
        });
        let map = json!([
            {"rpm": "container-tools", "debian": ["podman", "buildah", "skopeo"]},
            {"rpm": "setroubleshoot-server", "drop": "no SELinux"},
        ]);
        let plan = plan_packages(&blueprint, &map).unwrap();
        expect![[r#"
            PackagePlan {
                install: [
                    "buildah",
                    "jq",
                    "podman",
                    "skopeo",
                ],
                mapped: [
                    (
                        "container-tools",
                        [
                            "podman",
                            "buildah",
                            "skopeo",
                        ],
                    ),
                ],
                dropped: [
                    (
                        "setroubleshoot-server",
                        "no SELinux",
                    ),
                ],
                ignored: [
                    "version pin jq-1.6 (Debian versions differ; the archive's is used)",
                    "package group core (RPM groups have no Debian equivalent)",
                ],
            }
        "#]]
        .assert_debug_eq(&plan);
        let err = plan_packages(&json!({"packages": [{"name": "Bad_Name"}]}), &json!([])).unwrap_err();
        assert!(err.to_string().contains("Bad_Name"), "{err}");
    }

    #[test]
    fn reads_host_sources() {
        let files = vec![
            (
                PathBuf::from("/etc/apt/sources.list.d/debian.sources"),
                "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                 Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                 Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n"
                    .to_string(),
            ),
            (
                PathBuf::from("/etc/apt/sources.list"),
                "deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n\
                 deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n# deb http://x bookworm main\n"
                    .to_string(),
            ),
        ];
        expect![[r#"
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
                "deb http://mirror.example/debian bookworm main contrib",
            ]
        "#]]
        .assert_debug_eq(&host_debian_sources("bookworm", &files));
    }

    #[test]
    fn reads_dpkg_status() {
        let status = "Package: strace\nStatus: install ok installed\nArchitecture: amd64\nVersion: 6.1-0.1\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                      Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36\n";
        assert_eq!(
            dpkg_status_packages(status),
            vec![("libc6:i386".to_string(), "2.36".to_string()), ("strace".to_string(), "6.1-0.1".to_string())]
        );
    }

    #[test]
    fn guest_paths_stay_inside() {
        assert_eq!(guest_path("/etc/motd").unwrap(), PathBuf::from("etc/motd"));
        assert!(guest_path("etc/motd").is_err());
        assert!(guest_path("/etc/../../x").is_err());
    }
}
