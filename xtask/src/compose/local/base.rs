//! The local composer's base rootfs: mmdebstrap of the guest's packages
//! with a small initramfs, cached as a commit in the bare build repo and
//! keyed by its package set, suite, mirrors and mmdebstrap version; a
//! compose wanting a few packages more installs them into a checkout of a
//! cached base instead of bootstrapping again.

use std::{fs, path::Path};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::reshape::remove_build_traces;
use super::workdir::{remove_any, write_new};
use super::{EPOCH, LocalComposer};
use crate::{
    progress::Progress,
    tools::{
        chroot::Chroot,
        mmdebstrap::{self, Bootstrap},
        ostree::{CommitRequest, Repo},
    },
};

/// The dracut modules and drivers of the guest's initramfs: enough to find
/// a virtio disk and hand over to the OSTree deployment, nothing more.
pub(super) const DRACUT_MODULES: &str =
    "systemd systemd-initrd dracut-systemd base fs-lib rootfs-block udev-rules ostree kernel-modules";

pub(super) const DRACUT_DRIVERS: &str = "virtio_pci virtio_blk virtio_net";

/// The guest's initramfs builder (guest/local/initramfs/build.sh), run in
/// every compose's tree: a few busybox lines instead of dracut's systemd.
pub(super) const INITRAMFS_SCRIPT: &str = include_str!("../../../../guest/local/initramfs/build.sh");

/// Bump when the base recipe changes what a base holds.
pub(super) const BASE_SCHEMA: u32 = 1;

/// A cached base rootfs: a commit in the build repo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Base {
    pub(super) key: String,
    pub(super) suite: String,
    pub(super) mirrors: Vec<String>,
    pub(super) mmdebstrap: String,
    pub(super) packages: Vec<String>,
    pub(super) commit: String,
    pub(super) kernel: String,
}

/// The cached base for exactly `wanted`, else the largest cached base whose
/// packages are a subset of it (the rest is installed later), else a new
/// one bootstrapped now.
pub(super) fn find_or_build_base(
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

pub(super) fn base_key(suite: &str, mirrors: &[String], mmdebstrap_version: &str, packages: &[String]) -> String {
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
pub(super) fn cached_bases(composer: &LocalComposer, build_repo: &Repo) -> Vec<Base> {
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
pub(super) fn checkout_base(build_repo: &Repo, base: &Base, tree: &Path) -> anyhow::Result<()> {
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
pub(super) fn install_extra_packages(
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

pub(super) fn explain_apt_failure(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    let missing: Vec<&str> =
        text.lines().filter_map(|line| line.split("Unable to locate package ").nth(1)).map(str::trim).collect();
    if missing.is_empty() {
        return err;
    }
    err.context(format!("the package archive has no package named {}", missing.join(", ")))
}

/// The kernel version of the tree (the one folder in usr/lib/modules).
pub(super) fn kernel_version(root: &Path) -> anyhow::Result<String> {
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
pub(super) fn build_small_initramfs(root: &Path, kernel: &str) -> anyhow::Result<()> {
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
pub(super) fn build_initramfs(root: &Path, kernel: &str) -> anyhow::Result<()> {
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
pub(super) fn clear_for_commit(root: &Path) -> anyhow::Result<()> {
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
