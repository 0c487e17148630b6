//! `cargo xtask image diff v1 v2`: packages added, removed and changed
//! between two composed images, read from the commits themselves (the dpkg
//! status each commit carries in usr/share/factory/var), like the demo's
//! `rpm-ostree db diff`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Global, Session};
use crate::{
    compose::{local::dpkg_status_packages, tarball},
    current::Current,
    graph::{StageId, StageKind},
    tools::ostree::Repo,
};

/// Where dpkg's database lives in a local commit after the OSTree reshape.
pub const DPKG_STATUS: &str = "/usr/share/factory/var/lib/dpkg/status";

/// Package differences between two images, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackageDiff {
    pub added: Vec<(String, String)>,
    pub removed: Vec<(String, String)>,
    /// (name, old version, new version)
    pub changed: Vec<(String, String, String)>,
}

pub fn diff(global: &Global, old: &str, new: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let current = session.current()?;
    let old_tarball = composed_tarball(&session, &current, old)?;
    let new_tarball = composed_tarball(&session, &current, new)?;
    let diff = diff_tarballs(&old_tarball, &new_tarball, scratch.path())?;
    print!("{}", diff.render(old, new));
    Ok(())
}

/// Diffs the commits of two edge-commit tarballs, unpacking them under `scratch`.
pub fn diff_tarballs(old: &Path, new: &Path, scratch: &Path) -> anyhow::Result<PackageDiff> {
    let old_packages = tarball_packages(old, &scratch.join("old"))?;
    let new_packages = tarball_packages(new, &scratch.join("new"))?;
    Ok(PackageDiff::between(&old_packages, &new_packages))
}

impl PackageDiff {
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> PackageDiff {
        let mut diff = PackageDiff::default();
        for (name, version) in new {
            match old.get(name) {
                None => diff.added.push((name.clone(), version.clone())),
                Some(before) if before != version => diff.changed.push((name.clone(), before.clone(), version.clone())),
                Some(_) => {}
            }
        }
        for (name, version) in old {
            if !new.contains_key(name) {
                diff.removed.push((name.clone(), version.clone()));
            }
        }
        diff
    }

    /// `+strace 6.1-0.1` lines, then `-name version`, then `~name a -> b`.
    pub fn render(&self, old: &str, new: &str) -> String {
        let mut out = String::new();
        for (name, version) in &self.added {
            out.push_str(&format!("+{name} {version}\n"));
        }
        for (name, version) in &self.removed {
            out.push_str(&format!("-{name} {version}\n"));
        }
        for (name, before, after) in &self.changed {
            out.push_str(&format!("~{name} {before} -> {after}\n"));
        }
        out.push_str(&format!(
            "{old} -> {new}: {} added, {} removed, {} changed\n",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        ));
        out
    }
}

/// The current compose of `image` (the one `lab plan` calls fresh): its tarball.
fn composed_tarball(session: &Session, current: &Current, image: &str) -> anyhow::Result<PathBuf> {
    if session.lab.image(image).is_none() {
        let known: Vec<&str> = session.lab.images.iter().map(|image| image.name.as_str()).collect();
        bail!("no image `{image}` in the lab (images: {})", known.join(", "));
    }
    let stage = StageId::new(StageKind::Compose, image);
    let manifest = current.manifest(&session.store, &stage)?;
    let out = session.store.artifact_out(&manifest.key);
    let name = manifest
        .extra
        .get("tarball")
        .and_then(Value::as_str)
        .filter(|name| !name.contains('/') && *name != "..")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{image}-commit.tar"));
    let tarball = out.join(name);
    if !tarball.is_file() {
        bail!("image `{image}`: {} is gone from the store (run `cargo xtask artifacts verify`)", tarball.display());
    }
    Ok(tarball)
}

fn tarball_packages(tarball_path: &Path, into: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    tarball::extract(tarball_path, into)?;
    let compose = tarball::read_compose_json(into)?;
    let commit = compose
        .get("ostree-commit")
        .and_then(Value::as_str)
        .with_context(|| format!("{}: compose.json names no commit", tarball_path.display()))?;
    let repo = Repo::at(into.join("repo"));
    if !repo.path_exists(commit, DPKG_STATUS)? {
        bail!(
            "{}: commit {commit} has no {DPKG_STATUS} (not a local-world commit; on RHEL use `rpm-ostree db diff`)",
            tarball_path.display()
        );
    }
    let status = repo.cat(commit, DPKG_STATUS)?;
    Ok(dpkg_status_packages(&status).into_iter().collect())
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn renders_a_diff() {
        let old = BTreeMap::from([("jq".to_string(), "1.6".to_string()), ("nano".to_string(), "7.2".to_string())]);
        let new = BTreeMap::from([("jq".to_string(), "1.7".to_string()), ("strace".to_string(), "6.1".to_string())]);
        expect![[r#"
            +strace 6.1
            -nano 7.2
            ~jq 1.6 -> 1.7
            v1 -> v2: 1 added, 1 removed, 1 changed
        "#]]
        .assert_eq(&PackageDiff::between(&old, &new).render("v1", "v2"));
    }
}
