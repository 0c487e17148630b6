//! `ostree`: making, committing to and pulling OSTree repositories.

use std::path::Path;

use anyhow::Context;

use super::Cmd;

/// `ostree init --mode=MODE` (`archive`, `bare-user`...).
pub fn init(repo: &Path, mode: &str) -> anyhow::Result<()> {
    super::require("ostree")?;
    Cmd::new("ostree").arg(repo_flag(repo)).arg("init").arg(format!("--mode={mode}")).run()?;
    Ok(())
}

/// Commits the folder `tree` on `branch` and returns the commit id.
pub fn commit_tree(repo: &Path, branch: &str, tree: &Path, subject: &str) -> anyhow::Result<String> {
    let output = Cmd::new("ostree")
        .arg(repo_flag(repo))
        .arg("commit")
        .arg(format!("--branch={branch}"))
        .arg(format!("--subject={subject}"))
        .arg(format!("--tree=dir={}", tree.display()))
        .run()?;
    let commit = output.stdout.trim().to_string();
    if commit.len() != 64 {
        anyhow::bail!("`ostree commit` into {} printed `{commit}`, not a commit id", repo.display());
    }
    Ok(commit)
}

/// Adds remote `name` at `url` without GPG verification (the lab serves
/// unsigned commits over plain HTTP, as the original demo did).
pub fn remote_add(repo: &Path, name: &str, url: &str) -> anyhow::Result<()> {
    Cmd::new("ostree").arg(repo_flag(repo)).args(["remote", "add", "--no-gpg-verify", name, url]).run()?;
    Ok(())
}

/// `ostree pull REMOTE BRANCH`: fetches the branch's commit and every object
/// it reaches.
pub fn pull(repo: &Path, remote: &str, branch: &str) -> anyhow::Result<()> {
    Cmd::new("ostree")
        .arg(repo_flag(repo))
        .args(["pull", remote, branch])
        .run()
        .with_context(|| format!("pulling {remote}:{branch} into {}", repo.display()))?;
    Ok(())
}

fn repo_flag(repo: &Path) -> String {
    format!("--repo={}", repo.display())
}
