//! `chroot` into a root filesystem being composed: the guest's own apt-get,
//! useradd, systemctl and dracut run there, with /proc, /sys and /dev
//! mounted for the duration and unmounted again however the work ends.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

use super::{Cmd, Output};

/// A root filesystem commands run inside.
#[derive(Debug, Clone)]
pub struct Chroot {
    pub root: PathBuf,
}

/// Mounts made for a chroot; dropping it unmounts them, newest first.
#[derive(Debug)]
pub struct Mounts {
    points: Vec<PathBuf>,
}

const LONG: Duration = Duration::from_secs(1800);

impl Chroot {
    pub fn new(root: impl Into<PathBuf>) -> Chroot {
        Chroot { root: root.into() }
    }

    /// Runs `program args...` inside the root with a clean environment.
    pub fn run<I, S>(&self, program: &str, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        super::require("chroot")?;
        Cmd::new("chroot")
            .arg(&self.root)
            .arg(program)
            .args(args)
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .timeout(LONG)
            .run()
    }

    /// Mounts proc, sysfs and the host's /dev (what dracut and apt need).
    pub fn mount_api_filesystems(&self) -> anyhow::Result<Mounts> {
        let mut mounts = Mounts { points: Vec::new() };
        mounts.mount(&["-t", "proc", "proc"], &self.root.join("proc"))?;
        mounts.mount(&["-t", "sysfs", "sysfs"], &self.root.join("sys"))?;
        mounts.mount(&["--bind", "/dev"], &self.root.join("dev"))?;
        Ok(mounts)
    }

    /// Bind-mounts the host folder `source` at `inside` (a path in the root).
    pub fn bind(&self, mounts: &mut Mounts, source: &Path, inside: &str) -> anyhow::Result<()> {
        let target = self.root.join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        let source = source.to_string_lossy().into_owned();
        mounts.mount(&["--bind", &source], &target)
    }
}

impl Mounts {
    fn mount(&mut self, args: &[&str], target: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
        Cmd::new("mount").args(args).arg(target).run()?;
        self.points.push(target.to_path_buf());
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for point in self.points.iter().rev() {
            let done = Cmd::new("umount").arg(point).run().is_ok();
            if !done {
                // Something inside still holds it; detach so the tree can go.
                Cmd::new("umount").arg("--lazy").arg(point).run().ok();
            }
        }
    }
}
