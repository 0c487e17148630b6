//! A minimal bootable Debian OSTree commit for the guest tests, built the way
//! /work/shared/notes/local-guest.md measured it (mmdebstrap, the tree
//! reshaped for OSTree, committed to an archive repo), with the local world's
//! initramfs (guest/local/initramfs/build.sh) and cached under /var/tmp/edgelab-guests-cache, so only
//! the first run pays its ~5 minutes. Each test gets its own copy of the
//! served repo and layers its commits on top with `--tree=ref= --tree=dir=`.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use edgelab::tools::Cmd;

pub const OSTREE_REF: &str = "rhel/8/x86_64/edge";
const CACHE: &str = "/var/tmp/edgelab-guests-cache";
/// Bump when the recipe below changes what it builds.
const RECIPE: &str = "2";
const PACKAGES: &str = "systemd,systemd-sysv,udev,linux-image-cloud-amd64,dracut,ostree,ostree-boot,iproute2,busybox,procps,curl,keepalived,kmod";

fn initramfs_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest/local/initramfs/build.sh")
}

/// The cached archive repo holding the base commit on `OSTREE_REF`.
pub fn base_repo() -> PathBuf {
    let cache = Path::new(CACHE);
    fs::create_dir_all(cache).unwrap();
    let lock = fs::File::create(cache.join("lock")).unwrap();
    lock.lock().unwrap();
    // The initramfs script is part of what is built: a change to it builds anew.
    let script_digest = hex::encode(&edgelab::hash::digest_file_raw(&initramfs_script()).unwrap()[..6]);
    let repo_dir = cache.join(format!("served-{RECIPE}-{script_digest}"));
    if !repo_dir.join("ready").exists() {
        build_base(cache, &repo_dir);
    }
    repo_dir.join("repo")
}

/// A fresh served folder (`<dir>/repo`, archive) holding the base commit.
pub fn served_copy(dir: &Path) -> (PathBuf, String) {
    let base = base_repo();
    let served = dir.join("served");
    fs::create_dir_all(&served).unwrap();
    run(Cmd::new("cp").args(["-a", "--reflink=auto"]).arg(&base).arg(served.join("repo")));
    let commit = rev_parse(&served.join("repo"), OSTREE_REF);
    (served, commit)
}

/// Commits the current commit of `OSTREE_REF` plus `files` (paths relative
/// to the root, e.g. `usr/etc/greenboot/...`) as its child; returns it.
pub fn commit_on_top(repo: &Path, subject: &str, files: &[(&str, &str)]) -> String {
    let extra = repo.with_file_name(format!("extra-{subject}"));
    for (path, text) in files {
        let path = extra.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
    }
    let parent = rev_parse(repo, OSTREE_REF);
    run(Cmd::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["commit", "--bootable", "-b", OSTREE_REF, "-s", subject])
        .arg(format!("--parent={parent}"))
        .arg(format!("--tree=ref={parent}"))
        .arg(format!("--tree=dir={}", extra.display())));
    run(Cmd::new("ostree").arg(format!("--repo={}", repo.display())).args(["summary", "-u"]));
    rev_parse(repo, OSTREE_REF)
}

pub fn rev_parse(repo: &Path, name: &str) -> String {
    run(Cmd::new("ostree").arg(format!("--repo={}", repo.display())).args(["rev-parse", name])).trim().to_string()
}

fn build_base(cache: &Path, repo_dir: &Path) {
    let rootfs = cache.join("rootfs");
    if !rootfs.join("usr/lib/modules").exists() {
        let partial = cache.join("rootfs.partial");
        fs::remove_dir_all(&partial).ok();
        eprintln!("building the guest rootfs with mmdebstrap (about 5 minutes, cached in {CACHE})");
        run(Cmd::new("mmdebstrap")
            .args(["--variant=minbase", "--mode=root", &format!("--include={PACKAGES}")])
            .args(
                ["/usr/share/man/*", "/usr/share/locale/*", "/usr/share/doc/*", "/usr/share/info/*"]
                    .map(|path| format!("--dpkgopt=path-exclude={path}")),
            )
            .args(["bookworm"])
            .arg(&partial)
            .timeout(Duration::from_secs(1800)));
        fs::rename(&partial, &rootfs).unwrap();
    }
    let tree = cache.join("tree.partial");
    if tree.exists() {
        run(Cmd::new("rm").arg("-rf").arg(&tree));
    }
    run(Cmd::new("cp").args(["-a", "--reflink=auto"]).arg(&rootfs).arg(&tree));
    let kver = fs::read_dir(tree.join("usr/lib/modules")).unwrap().next().unwrap().unwrap().file_name();
    let kver = kver.to_string_lossy().into_owned();
    // The local world's initramfs, as the local composer builds it.
    let script = fs::read_to_string(initramfs_script()).unwrap();
    run(Cmd::new("unshare")
        .args(["--mount", "--fork", "chroot"])
        .arg(&tree)
        .args(["/bin/sh", "-c", "mount -t proc proc /proc && exec /bin/sh -c \"$0\" edgelab-initramfs \"$1\" \"$2\""])
        .args([script.as_str(), kver.as_str(), "/tmp/initramfs.img"])
        .timeout(Duration::from_secs(600)));
    reshape(&tree, &kver);
    let repo = repo_dir.join("repo");
    fs::remove_dir_all(repo_dir).ok();
    fs::create_dir_all(repo_dir).unwrap();
    run(Cmd::new("ostree").arg(format!("--repo={}", repo.display())).args(["init", "--mode=archive"]));
    run(Cmd::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["commit", "--bootable", "-b", OSTREE_REF, "-s", "edgelab test base"])
        .arg(format!("--tree=dir={}", tree.display()))
        .timeout(Duration::from_secs(900)));
    run(Cmd::new("ostree").arg(format!("--repo={}", repo.display())).args(["summary", "-u"]));
    run(Cmd::new("rm").arg("-rf").arg(&tree));
    fs::write(repo_dir.join("ready"), "").unwrap();
    // Builds for other recipes or scripts are not used again.
    for entry in fs::read_dir(cache).unwrap().flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with("served-") && entry.path() != repo_dir;
        if stale {
            run(Cmd::new("rm").arg("-rf").arg(entry.path()));
        }
    }
}

/// The tree as OSTree wants it: kernel and initramfs beside the modules,
/// /etc as /usr/etc, /var's content as the factory copy, the mutable
/// folders as links into /var, and /sysroot + /ostree.
fn reshape(tree: &Path, kver: &str) {
    let modules = tree.join("usr/lib/modules").join(kver);
    fs::rename(tree.join(format!("boot/vmlinuz-{kver}")), modules.join("vmlinuz")).unwrap();
    fs::rename(tree.join("tmp/initramfs.img"), modules.join("initramfs.img")).unwrap();
    for entry in fs::read_dir(tree.join("boot")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { fs::remove_dir_all(&path).unwrap() } else { fs::remove_file(&path).unwrap() }
    }
    fs::write(tree.join("etc/machine-id"), "").unwrap();
    fs::write(tree.join("etc/fstab"), "# / is mounted by the initramfs (root=/dev/vda rw)\n").unwrap();
    fs::rename(tree.join("etc"), tree.join("usr/etc")).unwrap();
    fs::create_dir_all(tree.join("usr/share/factory")).unwrap();
    fs::rename(tree.join("var"), tree.join("usr/share/factory/var")).unwrap();
    fs::create_dir(tree.join("var")).unwrap();
    for (dir, target) in [
        ("home", "var/home"),
        ("root", "var/roothome"),
        ("opt", "var/opt"),
        ("srv", "var/srv"),
        ("mnt", "var/mnt"),
        ("usr/local", "../var/usrlocal"),
    ] {
        let path = tree.join(dir);
        if path.exists() {
            fs::remove_dir_all(&path).unwrap();
        }
        std::os::unix::fs::symlink(target, &path).unwrap();
    }
    // Device nodes and mount points' content are not for a commit.
    for dir in ["tmp", "dev", "proc", "sys", "run"] {
        for entry in fs::read_dir(tree.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { fs::remove_dir_all(&path).unwrap() } else { fs::remove_file(&path).unwrap() }
        }
    }
    fs::create_dir_all(tree.join("sysroot")).unwrap();
    std::os::unix::fs::symlink("sysroot/ostree", tree.join("ostree")).unwrap();
}

fn run(cmd: Cmd) -> String {
    match cmd.run() {
        Ok(out) => out.stdout,
        Err(err) => panic!("{err:#}"),
    }
}
