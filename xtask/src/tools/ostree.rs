//! `ostree`: repositories, commits, checkouts, pulls between local repos,
//! summaries, static deltas and sysroot deployment. The one place that knows
//! ostree's flags; the local composer, the served repo and the installer use it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "ostree",
    debian: Some("ostree"),
    rhel: Some("ostree"),
    pip: None,
    version_args: &["--version"],
}];

/// A repository's storage mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoMode {
    /// Files stored as themselves: hardlink checkouts, fast commits.
    Bare,
    /// Compressed objects: what is served over HTTP.
    Archive,
}

/// One OSTree repository on disk.
#[derive(Debug, Clone)]
pub struct Repo {
    pub path: PathBuf,
}

/// What `ostree commit` is asked to do.
#[derive(Debug, Clone)]
pub struct CommitRequest<'a> {
    /// The ref the commit is made on (and bound to).
    pub branch: &'a str,
    pub tree: &'a Path,
    /// The parent commit; `None` makes a commit without one (`--orphan`).
    pub parent: Option<&'a str>,
    pub subject: &'a str,
    /// Written as the `version` metadata key.
    pub version: Option<&'a str>,
    /// The tree holds a kernel and initramfs under usr/lib/modules.
    pub bootable: bool,
    /// The tree is a hardlinked checkout of this (bare) repo.
    pub link_checkout_speedup: bool,
    /// Move the tree's files into the repo instead of copying (the tree is
    /// left unusable).
    pub consume: bool,
    /// The commit's timestamp (seconds since the epoch) instead of the
    /// clock's: with it, the same tree and parent give the same commit id.
    pub timestamp: Option<i64>,
}

/// What `ostree commit --table-output` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitStats {
    pub commit: String,
    pub metadata_total: u64,
    pub metadata_written: u64,
    pub content_total: u64,
    pub content_written: u64,
    pub cache_hits: u64,
    pub content_bytes_written: u64,
}

/// How much history `pull_local` brings along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The named commit only.
    Tip,
    /// The commit and this many ancestors.
    Parents(u32),
}

/// Where a static delta starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaFrom<'a> {
    /// From nothing (`--empty`): what a pull into an empty repo uses.
    Empty,
    /// From this commit, e.g. the parent of `to`.
    Commit(&'a str),
}

/// Where a static delta's parts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaParts {
    /// One file per part beside the superblock.
    Separate,
    /// Inside the superblock (`--inline`).
    Inline,
}

const LONG: Duration = Duration::from_secs(3600);

/// `ostree --version`'s `Version:` line, e.g. `2022.7`.
pub fn version() -> anyhow::Result<String> {
    let out = ostree().arg("--version").run()?;
    Ok(out
        .stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("Version:"))
        .map(|v| v.trim().trim_matches('\'').to_string())
        .unwrap_or_default())
}

impl Repo {
    pub fn at(path: impl Into<PathBuf>) -> Repo {
        Repo { path: path.into() }
    }

    /// Creates the repo unless it already exists.
    pub fn init(path: impl Into<PathBuf>, mode: RepoMode) -> anyhow::Result<Repo> {
        let repo = Repo::at(path);
        if repo.path.join("config").exists() {
            return Ok(repo);
        }
        std::fs::create_dir_all(&repo.path).with_context(|| format!("creating {}", repo.path.display()))?;
        let mode = match mode {
            RepoMode::Bare => "bare",
            RepoMode::Archive => "archive",
        };
        repo.cmd("init").arg(format!("--mode={mode}")).run()?;
        Ok(repo)
    }

    /// Commits `request.tree`, returning the commit id and object counts.
    pub fn commit(&self, request: &CommitRequest) -> anyhow::Result<CommitStats> {
        let mut cmd = self
            .cmd("commit")
            .arg(format!("--branch={}", request.branch))
            .arg(format!("--tree=dir={}", request.tree.display()))
            .arg(format!("--subject={}", request.subject))
            .arg("--table-output");
        cmd = match request.parent {
            Some(parent) => cmd.arg(format!("--parent={parent}")),
            // Without it ostree takes the branch's tip as the parent: the
            // commit id would depend on what was committed there before.
            None => cmd.arg("--orphan"),
        };
        if let Some(version) = request.version {
            cmd = cmd.arg(format!("--add-metadata-string=version={version}"));
        }
        if request.bootable {
            cmd = cmd.arg("--bootable");
        }
        if request.link_checkout_speedup {
            cmd = cmd.arg("--link-checkout-speedup");
        }
        if request.consume {
            cmd = cmd.arg("--consume");
        }
        if let Some(timestamp) = request.timestamp {
            cmd = cmd.arg(format!("--timestamp=@{timestamp}"));
        }
        let out = cmd.timeout(LONG).run()?;
        parse_commit_table(&out.stdout)
    }

    /// Checks `rev` out as hardlinks into this (bare) repo's objects: files
    /// must then be replaced, never written in place.
    pub fn checkout_hardlinked(&self, rev: &str, dest: &Path) -> anyhow::Result<()> {
        self.cmd("checkout").args(["-H", rev]).arg(dest).timeout(LONG).run()?;
        Ok(())
    }

    /// Checks out one folder of `rev` as fresh copies, safe to edit in place.
    pub fn checkout_copy(&self, rev: &str, subpath: &str, dest: &Path) -> anyhow::Result<()> {
        self.cmd("checkout")
            .arg("--force-copy")
            .arg(format!("--subpath={subpath}"))
            .arg(rev)
            .arg(dest)
            .timeout(LONG)
            .run()?;
        Ok(())
    }

    /// Pulls `revs` (refs or commit ids) from the repo at `source`.
    pub fn pull_local(&self, source: &Path, revs: &[&str], depth: Depth) -> anyhow::Result<()> {
        let mut cmd = self.cmd("pull-local");
        if let Depth::Parents(n) = depth {
            cmd = cmd.arg(format!("--depth={n}"));
        }
        cmd.arg(source).args(revs).timeout(LONG).run()?;
        Ok(())
    }

    /// Points `name` at `commit`, creating or moving the ref.
    pub fn set_ref(&self, name: &str, commit: &str) -> anyhow::Result<()> {
        self.cmd("refs").arg("--force").arg(format!("--create={name}")).arg(commit).run()?;
        Ok(())
    }

    /// The commit `rev` names, or None when the repo does not have it.
    pub fn rev_parse(&self, rev: &str) -> anyhow::Result<Option<String>> {
        let out = self.cmd("rev-parse").arg(rev).run_unchecked()?;
        if out.status.success() {
            return Ok(Some(out.stdout.trim().to_string()));
        }
        if out.stderr.contains("not found") || out.stderr.contains("No such") {
            return Ok(None);
        }
        bail!("{}", super::failure_message(&self.cmd("rev-parse").arg(rev).display(), &out))
    }

    /// Whether the repo holds the commit object `commit`.
    pub fn has_commit(&self, commit: &str) -> bool {
        self.cmd("show").arg(commit).run().is_ok()
    }

    /// The parent of `commit`, when it has one.
    pub fn parent_of(&self, commit: &str) -> anyhow::Result<Option<String>> {
        self.rev_parse(&format!("{commit}^"))
    }

    /// `ostree log`: the commit and its ancestors present in the repo.
    pub fn log(&self, rev: &str) -> anyhow::Result<String> {
        Ok(self.cmd("log").arg(rev).run()?.stdout)
    }

    /// The commit's content checksum (the `ContentChecksum:` of `ostree show`).
    pub fn content_checksum(&self, commit: &str) -> anyhow::Result<String> {
        let out = self.cmd("show").arg(commit).run()?;
        Ok(out
            .stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix("ContentChecksum:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default())
    }

    /// The commit's timestamp in seconds since the epoch (`ostree show`
    /// prints it in UTC as `Date:  2026-11-27 11:36:50 +0000`).
    pub fn timestamp(&self, commit: &str) -> anyhow::Result<i64> {
        let out = self.cmd("show").arg(commit).run()?;
        let date = out.stdout.lines().find_map(|line| line.trim().strip_prefix("Date:")).map(str::trim);
        date.and_then(parse_utc_date)
            .with_context(|| format!("`ostree show {commit}` in {} printed no readable Date:", self.path.display()))
    }

    /// Files and folders that differ between two commits (`ostree diff`:
    /// one `A|D|M path` per line).
    pub fn diff(&self, from: &str, to: &str) -> anyhow::Result<String> {
        Ok(self.cmd("diff").arg(from).arg(to).timeout(LONG).run()?.stdout)
    }

    /// A file's bytes from a commit (`ostree cat`).
    pub fn cat(&self, commit: &str, path: &str) -> anyhow::Result<String> {
        Ok(self.cmd("cat").arg(commit).arg(path).timeout(LONG).run()?.stdout)
    }

    /// `path`'s own line of `ostree ls -d`: type and mode, uid, gid, size,
    /// path (`d00750 1300 1130 0 /usr/etc/widget`).
    pub fn ls(&self, commit: &str, path: &str) -> anyhow::Result<String> {
        Ok(self.cmd("ls").arg("-d").arg(commit).arg(path).run()?.stdout.trim().to_string())
    }

    /// Whether `path` exists in `commit`.
    pub fn path_exists(&self, commit: &str, path: &str) -> anyhow::Result<bool> {
        let out = self.cmd("ls").arg(commit).arg(path).run_unchecked()?;
        Ok(out.status.success())
    }

    /// Regenerates the summary file clients read refs from.
    pub fn update_summary(&self) -> anyhow::Result<()> {
        self.cmd("summary").arg("-u").timeout(LONG).run()?;
        Ok(())
    }

    /// Generates the static delta `from` -> `to`.
    pub fn generate_static_delta(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.generate_delta(DeltaFrom::Commit(from), to, DeltaParts::Separate)
    }

    /// Generates the static delta to `to` from `from`, its parts in their
    /// own files or inside the superblock (one request fewer to fetch it,
    /// but the client holds the whole delta in memory).
    pub fn generate_delta(&self, from: DeltaFrom, to: &str, parts: DeltaParts) -> anyhow::Result<()> {
        let mut cmd = self.cmd("static-delta").arg("generate");
        cmd = match from {
            DeltaFrom::Empty => cmd.arg("--empty"),
            DeltaFrom::Commit(from) => cmd.arg(format!("--from={from}")),
        };
        if parts == DeltaParts::Inline {
            cmd = cmd.arg("--inline");
        }
        cmd.arg(format!("--to={to}")).timeout(LONG).run()?;
        Ok(())
    }

    /// The bytes of a static delta's files (superblock and parts) as the
    /// repo holds them; the name is `FROM-TO`, or `TO` for a from-scratch one.
    pub fn static_delta_bytes(&self, name: &str) -> anyhow::Result<u64> {
        let dir = self.static_delta_dir(name)?;
        let mut bytes = 0;
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            bytes += entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?.len();
        }
        Ok(bytes)
    }

    /// The folder of the static delta `name` (`FROM-TO` or `TO`) in the repo.
    pub fn static_delta_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        Ok(self.path.join("deltas").join(delta_dir(name)?))
    }

    /// Deletes the static delta `name` (`FROM-TO` or `TO`).
    pub fn delete_static_delta(&self, name: &str) -> anyhow::Result<()> {
        self.cmd("static-delta").arg("delete").arg(name).run()?;
        Ok(())
    }

    /// The static deltas in the repo (`FROM-TO` names).
    pub fn static_deltas(&self) -> anyhow::Result<Vec<String>> {
        let out = self.cmd("static-delta").arg("list").run()?;
        let mut deltas: Vec<String> = out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("(No static deltas)"))
            .map(str::to_string)
            .collect();
        deltas.sort();
        Ok(deltas)
    }

    /// Every ref with its commit.
    pub fn refs(&self) -> anyhow::Result<Vec<(String, String)>> {
        let out = self.cmd("refs").run()?;
        let mut refs = Vec::new();
        for name in out.stdout.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(commit) = self.rev_parse(name)? {
                refs.push((name.to_string(), commit));
            }
        }
        refs.sort();
        Ok(refs)
    }

    /// `ostree fsck`: every object rehashed against its name.
    pub fn fsck(&self) -> anyhow::Result<()> {
        self.cmd("fsck").timeout(LONG).run()?;
        Ok(())
    }

    fn cmd(&self, verb: &str) -> Cmd {
        ostree().arg(verb).arg(format!("--repo={}", self.path.display()))
    }
}

/// A system root being prepared for deployment (`ostree admin`), such as a
/// guest disk's contents before mkfs.
#[derive(Debug, Clone)]
pub struct Sysroot {
    pub path: PathBuf,
}

impl Sysroot {
    /// `ostree admin init-fs` + `os-init`: an empty sysroot for `os`.
    pub fn init(path: impl Into<PathBuf>, os: &str) -> anyhow::Result<Sysroot> {
        let sysroot = Sysroot { path: path.into() };
        std::fs::create_dir_all(&sysroot.path).with_context(|| format!("creating {}", sysroot.path.display()))?;
        ostree().args(["admin", "init-fs"]).arg(&sysroot.path).run()?;
        ostree().args(["admin", "os-init"]).arg(sysroot.flag()).arg(os).run()?;
        Ok(sysroot)
    }

    /// The sysroot's own repo (`ostree/repo`).
    pub fn repo(&self) -> Repo {
        Repo::at(self.path.join("ostree/repo"))
    }

    /// Adds a remote without GPG verification (the lab signs nothing).
    pub fn add_remote(&self, name: &str, url: &str) -> anyhow::Result<()> {
        ostree()
            .args(["remote", "add", "--force", "--no-gpg-verify"])
            .arg(format!("--repo={}", self.repo().path.display()))
            .args([name, url])
            .run()?;
        Ok(())
    }

    /// Pulls `rev` (`REF`, or `REF@COMMIT` for an older commit) from `remote`.
    pub fn pull(&self, remote: &str, rev: &str) -> anyhow::Result<()> {
        ostree()
            .arg("pull")
            .arg(format!("--repo={}", self.repo().path.display()))
            .args([remote, rev])
            .timeout(LONG)
            .run()?;
        Ok(())
    }

    /// `ostree admin deploy`: a new deployment of `revision` for `os`.
    pub fn deploy(&self, os: &str, revision: &str, kernel_args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = ostree().args(["admin", "deploy"]).arg(self.flag()).arg(format!("--os={os}"));
        for karg in kernel_args {
            cmd = cmd.arg(format!("--karg={karg}"));
        }
        cmd.arg(revision).timeout(LONG).run()?;
        Ok(())
    }

    /// `ostree admin status`.
    pub fn status(&self) -> anyhow::Result<String> {
        Ok(ostree().args(["admin", "status"]).arg(self.flag()).run()?.stdout)
    }

    fn flag(&self) -> String {
        format!("--sysroot={}", self.path.display())
    }
}

fn ostree() -> Cmd {
    Cmd::new("ostree")
}

/// The folder under `deltas/` of delta `name`, as libostree names it: the
/// commits in modified base64 (`/` as `_`), the first two characters of
/// the first one as a folder (`_ostree_get_relative_static_delta_path`).
fn delta_dir(name: &str) -> anyhow::Result<String> {
    let encode = |commit: &str| -> anyhow::Result<String> {
        let bytes = hex::decode(commit).with_context(|| format!("`{commit}` in delta `{name}` is not a commit id"))?;
        if bytes.len() != 32 {
            bail!("`{commit}` in delta `{name}` is not a commit id");
        }
        Ok(base64_unpadded(&bytes).replace('/', "_"))
    };
    let joined = match name.split_once('-') {
        Some((from, to)) => format!("{}-{}", encode(from)?, encode(to)?),
        None => encode(name)?,
    };
    Ok(format!("{}/{}", &joined[..2], &joined[2..]))
}

fn base64_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn parse_commit_table(text: &str) -> anyhow::Result<CommitStats> {
    let mut stats = CommitStats::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        let number = || value.parse::<u64>().unwrap_or(0);
        match key.trim() {
            "Commit" => stats.commit = value.to_string(),
            "Metadata Total" => stats.metadata_total = number(),
            "Metadata Written" => stats.metadata_written = number(),
            "Content Total" => stats.content_total = number(),
            "Content Written" => stats.content_written = number(),
            "Content Cache Hits" => stats.cache_hits = number(),
            "Content Bytes Written" => stats.content_bytes_written = number(),
            _ => {}
        }
    }
    if stats.commit.len() != 64 {
        bail!("ostree commit printed no commit id:\n{text}");
    }
    Ok(stats)
}

// Plain functions for one-off repositories (the serve benchmark's test repo).
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

/// `2026-11-27 11:36:50 +0000` -> seconds since the epoch (UTC only: that
/// is what ostree prints).
fn parse_utc_date(text: &str) -> Option<i64> {
    let mut words = text.split_whitespace();
    let (day, time) = (words.next()?, words.next()?);
    if words.next().is_some_and(|zone| zone != "+0000") {
        return None;
    }
    let numbers = |text: &str, sep: char| -> Option<Vec<i64>> { text.split(sep).map(|n| n.parse().ok()).collect() };
    let (ymd, hms) = (numbers(day, '-')?, numbers(time, ':')?);
    let [year, month, day] = <[i64; 3]>::try_from(ymd).ok()?;
    let [hour, minute, second] = <[i64; 3]>::try_from(hms).ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_delta_folders_as_libostree_does() {
        // Seen on disk: `ostree static-delta generate --empty` and `--from`.
        let (from, to) = (
            "3843f20eea767d526fb0086ba6cab76e3883de6ce2083c4d0472755b7bd3ebfd",
            "eed1008fb8b1c4027cdf74b1402cdb7e8349ed854e885f57157c7230159429f4",
        );
        assert_eq!(delta_dir(from).unwrap(), "OE/PyDup2fVJvsAhrpsq3bjiD3mziCDxNBHJ1W3vT6_0");
        assert_eq!(
            delta_dir(&format!("{from}-{to}")).unwrap(),
            "OE/PyDup2fVJvsAhrpsq3bjiD3mziCDxNBHJ1W3vT6_0-7tEAj7ixxAJ833SxQCzbfoNJ7YVOiF9XFXxyMBWUKfQ"
        );
        assert!(delta_dir("nothex").is_err());
    }

    #[test]
    fn reads_ostree_dates() {
        assert_eq!(parse_utc_date("1970-01-01 00:00:00 +0000"), Some(0));
        assert_eq!(parse_utc_date("2024-01-01 00:00:00 +0000"), Some(1_704_067_200));
        assert_eq!(parse_utc_date("2026-11-27 11:36:50 +0000"), Some(1_795_779_410));
        assert_eq!(parse_utc_date("2024-02-29 23:59:59"), Some(1_709_251_199));
        assert_eq!(parse_utc_date("2024-01-01 00:00:00 +0100"), None);
        assert_eq!(parse_utc_date("yesterday"), None);
    }

    #[test]
    fn parses_commit_table() {
        let stats = parse_commit_table(
            "Commit: cba327dd38424752356f82a6382bf8d6555b3b4a9af7926549c663bf1515b9ba\nMetadata Total: 7\n\
             Metadata Written: 5\nContent Total: 1\nContent Written: 1\nContent Cache Hits: 0\nContent Bytes Written: 3\n",
        )
        .unwrap();
        assert_eq!(stats.metadata_total, 7);
        assert_eq!(stats.content_bytes_written, 3);
        assert!(parse_commit_table("error").is_err());
    }
}
