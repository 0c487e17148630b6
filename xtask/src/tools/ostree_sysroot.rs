//! `ostree admin` and friends on a sysroot: what an installer does to put an
//! OSTree commit onto a disk (init-fs, os-init, remote, pull, deploy). The
//! repository side of ostree (commit, summary, static deltas) lives with the
//! composer; this file knows only sysroots.

use std::{path::Path, time::Duration};

use anyhow::Context;

use super::Cmd;

/// One deployment as `ostree admin status` lists it, default first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub os: String,
    /// `<commit>.<serial>`.
    pub id: String,
    pub booted: bool,
}

/// Makes `sysroot` an empty OSTree sysroot and `os` a stateroot in it.
pub fn init(sysroot: &Path, os: &str) -> anyhow::Result<()> {
    ostree().args(["admin", "init-fs"]).arg(sysroot).run().context("ostree admin init-fs")?;
    ostree().args(["admin", "os-init"]).arg(sysroot_flag(sysroot)).arg(os).run().context("ostree admin os-init")?;
    Ok(())
}

/// Adds remote `name` at `url` to the sysroot's repo, without GPG checks
/// (the lab's commits are not signed, as in the original demo).
pub fn add_remote(sysroot: &Path, name: &str, url: &str) -> anyhow::Result<()> {
    ostree()
        .arg(repo_flag(sysroot))
        .args(["remote", "add", "--no-gpg-verify", name, url])
        .run()
        .with_context(|| format!("adding remote {name} {url}"))?;
    Ok(())
}

/// Pulls `ostree_ref` from remote `name`, fetching from `url` instead of the
/// remote's own URL when given (the installer reaches the server by another
/// address than the guests do).
pub fn pull(sysroot: &Path, remote: &str, ostree_ref: &str, url: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = ostree().arg(repo_flag(sysroot)).arg("pull");
    if let Some(url) = url {
        cmd = cmd.arg(format!("--url={url}"));
    }
    cmd.args([remote, ostree_ref])
        .timeout(Duration::from_secs(1800))
        .run()
        .with_context(|| format!("pulling {remote}:{ostree_ref}"))?;
    Ok(())
}

/// Pulls only the commit object `commit` from remote `name` (`--commit-metadata-only`),
/// by its id so that no local ref is made: a later pull of the ref still
/// finds no local commit to start from and takes the from-scratch delta.
pub fn pull_commit_metadata(sysroot: &Path, remote: &str, commit: &str, url: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = ostree().arg(repo_flag(sysroot)).args(["pull", "--commit-metadata-only"]);
    if let Some(url) = url {
        cmd = cmd.arg(format!("--url={url}"));
    }
    cmd.args([remote, commit]).run().with_context(|| format!("pulling the commit object {commit} from {remote}"))?;
    Ok(())
}

/// Deploys `refspec` (`edge:rhel/8/x86_64/edge` or a commit) for `os` with
/// these kernel arguments; it becomes the default deployment.
pub fn deploy(sysroot: &Path, os: &str, refspec: &str, kargs: &[String]) -> anyhow::Result<()> {
    ostree()
        .args(["admin", "deploy"])
        .arg(sysroot_flag(sysroot))
        .arg(format!("--os={os}"))
        .args(kargs.iter().map(|karg| format!("--karg={karg}")))
        .arg(refspec)
        .timeout(Duration::from_secs(600))
        .run()
        .with_context(|| format!("deploying {refspec} into {}", sysroot.display()))?;
    Ok(())
}

/// The commit `ostree_ref` points at in the sysroot's repo.
pub fn rev_parse(sysroot: &Path, ostree_ref: &str) -> anyhow::Result<String> {
    let out = ostree().arg(repo_flag(sysroot)).args(["rev-parse", ostree_ref]).run()?;
    Ok(out.stdout.trim().to_string())
}

/// The sysroot's deployments, default first.
pub fn deployments(sysroot: &Path) -> anyhow::Result<Vec<Deployment>> {
    let out = ostree().args(["admin", "status"]).arg(sysroot_flag(sysroot)).run()?;
    Ok(parse_status(&out.stdout))
}

/// The folder of a deployment (`ostree/deploy/<os>/deploy/<id>`).
pub fn deployment_dir(sysroot: &Path, deployment: &Deployment) -> std::path::PathBuf {
    sysroot.join("ostree/deploy").join(&deployment.os).join("deploy").join(&deployment.id)
}

/// Parses `ostree admin status`: deployment lines start with `* ` (booted)
/// or two spaces, then the stateroot and `<commit>.<serial>`.
pub fn parse_status(text: &str) -> Vec<Deployment> {
    text.lines()
        .filter_map(|line| {
            let booted = line.starts_with("* ");
            let rest = line.strip_prefix("* ").or_else(|| line.strip_prefix("  "))?;
            if rest.starts_with(' ') {
                return None;
            }
            let mut words = rest.split_whitespace();
            let os = words.next()?.to_string();
            let id = words.next()?.to_string();
            let (commit, serial) = id.split_once('.')?;
            (commit.len() == 64 && serial.chars().all(|c| c.is_ascii_digit())).then_some(Deployment { os, id, booted })
        })
        .collect()
}

fn ostree() -> Cmd {
    Cmd::new("ostree").timeout(Duration::from_secs(300))
}

fn sysroot_flag(sysroot: &Path) -> String {
    format!("--sysroot={}", sysroot.display())
}

fn repo_flag(sysroot: &Path) -> String {
    format!("--repo={}", sysroot.join("ostree/repo").display())
}
