//! A tree reshaped for OSTree (kernel under usr/lib/modules, etc ->
//! usr/etc, var content -> usr/share/factory/var, links into var), and the
//! build's own traces removed so the same inputs commit the same tree.

use std::{fs, path::Path};

use anyhow::Context;

use super::base::clear_for_commit;
use super::customize::write_replacing;
use super::workdir::{remove_any, rename};

/// Files a package install or a user add writes from the clock or from
/// the build host's state, removed from every tree before it is committed:
/// logs of the build's apt and dpkg runs (dated lines), and ldconfig's
/// cache of file stamps. (The guest starts them afresh.)
pub(super) const BUILD_TRACES: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    "var/cache/ldconfig/aux-cache",
];

/// The OSTree layout: kernel and initramfs in usr/lib/modules/$KVER, /etc
/// as usr/etc, /var's content as usr/share/factory/var (the installer fills
/// each deployment's /var from it), the writable top-level folders as links
/// into /var, and the sysroot mount point.
pub(super) fn reshape_for_ostree(root: &Path, kernel: &str) -> anyhow::Result<()> {
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

/// Removes `BUILD_TRACES` from a tree about to be committed.
pub(super) fn remove_build_traces(root: &Path) -> anyhow::Result<()> {
    for path in BUILD_TRACES {
        remove_any(&root.join(path))?;
    }
    Ok(())
}
