//! `mmdebstrap`: a Debian root filesystem from a package list, with the
//! downloaded `.deb`s kept in a cache folder between runs so a second
//! bootstrap downloads nothing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "mmdebstrap", debian: Some("mmdebstrap"), rhel: None, pip: None, version_args: &["--version"] }];

/// What to bootstrap.
#[derive(Debug, Clone)]
pub struct Bootstrap<'a> {
    /// `bookworm`.
    pub suite: &'a str,
    /// An absent or empty folder the root filesystem is created in.
    pub target: &'a Path,
    /// Installed on top of the minbase variant.
    pub packages: &'a [String],
    /// Sources, each a one-line `deb URI SUITE COMPONENTS` or a URI.
    pub mirrors: &'a [String],
    /// `.deb`s are synced in from and out to this folder.
    pub apt_cache: &'a Path,
    /// When set, the package lists apt downloaded are kept here (so later
    /// installs into a copy of the tree need no `apt-get update`).
    pub keep_lists: Option<&'a Path>,
    /// `SOURCE_DATE_EPOCH` for mmdebstrap: it clamps what it writes to this
    /// time and removes what only a clock makes (ldconfig's aux-cache,
    /// machine-id), so the same archive gives the same tree.
    pub source_date_epoch: i64,
}

/// Paths dpkg leaves out of the tree: docs and translations nobody reads on
/// an edge device.
const PATH_EXCLUDES: &[&str] = &["/usr/share/man/*", "/usr/share/locale/*", "/usr/share/doc/*", "/usr/share/info/*"];

/// `mmdebstrap 1.3.5`.
pub fn version() -> anyhow::Result<String> {
    super::require("mmdebstrap")?;
    Ok(Cmd::new("mmdebstrap").arg("--version").run()?.stdout.trim().to_string())
}

/// Runs mmdebstrap as root into `request.target`.
pub fn bootstrap(request: &Bootstrap) -> anyhow::Result<()> {
    super::require("mmdebstrap")?;
    std::fs::create_dir_all(request.apt_cache)
        .with_context(|| format!("creating the apt cache {}", request.apt_cache.display()))?;
    let cache = absolute(request.apt_cache)?;
    let mut cmd = Cmd::new("mmdebstrap")
        .args(["--variant=minbase", "--mode=root", "--format=directory"])
        // Keep the essential .debs in the cache and let it be non-empty.
        .args(["--skip=essential/unlink", "--skip=download/empty"])
        .arg(format!("--include={}", request.packages.join(",")))
        .args(PATH_EXCLUDES.iter().map(|path| format!("--dpkgopt=path-exclude={path}")))
        .arg("--aptopt=Acquire::Retries \"1\"")
        .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
        .arg(format!("--setup-hook=sync-in {} /var/cache/apt/archives/", cache.display()))
        .arg(format!("--customize-hook=sync-out /var/cache/apt/archives {}", cache.display()));
    if let Some(lists) = request.keep_lists {
        std::fs::create_dir_all(lists).with_context(|| format!("creating {}", lists.display()))?;
        cmd = cmd
            .arg(format!("--customize-hook=sync-out /var/lib/apt/lists {}", absolute(lists)?.display()))
            .arg("--skip=cleanup/apt/lists");
    }
    cmd = cmd.arg(request.suite).arg(request.target);
    for mirror in request.mirrors {
        cmd = cmd.arg(mirror);
    }
    cmd.env("LC_ALL", "C.UTF-8")
        .env("SOURCE_DATE_EPOCH", request.source_date_epoch.to_string())
        .timeout(Duration::from_secs(3600))
        .run()
        .map_err(explain_failure)?;
    Ok(())
}

/// apt's "Unable to locate package X" is buried in mmdebstrap's output;
/// lift it to the first line so the package name is the first thing read.
fn explain_failure(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    let missing: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split("Unable to locate package ").nth(1))
        .map(|name| name.trim())
        .collect();
    if !missing.is_empty() {
        return err.context(format!("the package archive has no package named {}", missing.join(", ")));
    }
    if text.contains("Failed to fetch") || text.contains("Could not connect") || text.contains("apt-get update failed")
    {
        return err.context("cannot reach the package archive (check the mirror in /etc/apt and the network)");
    }
    err
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
