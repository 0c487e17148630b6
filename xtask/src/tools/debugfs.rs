//! `debugfs` (e2fsprogs): reads files out of an ext4 disk image without
//! mounting it. The local launcher uses it as a bootloader would: to list the
//! BLS entries in a guest's disk and take out the kernel and initramfs.
//! `e2fsck -E journal_only` replays a journal a killed guest left behind, so
//! what debugfs reads is what the guest last wrote.

use std::path::Path;

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[
    Program { name: "debugfs", debian: Some("e2fsprogs"), rhel: Some("e2fsprogs"), pip: None, version_args: &["-V"] },
    Program { name: "e2fsck", debian: Some("e2fsprogs"), rhel: Some("e2fsprogs"), pip: None, version_args: &["-V"] },
];

/// One directory entry, from `ls -p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    /// The mode in octal, as debugfs prints it (`100644`, `40755`, `120777`).
    pub mode: u32,
    pub size: u64,
}

/// The entries of `dir` in `image` (`.` and `..` left out); symlinks in the
/// middle of the path are followed, as the kernel would.
pub fn list_dir(image: &Path, dir: &str) -> anyhow::Result<Vec<DirEntry>> {
    let out = request(image, &format!("ls -p {dir}"))?;
    // `ls -p` prints `/inode/mode/uid/gid/name/size/` per entry.
    let entries = out
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim().trim_matches('/').split('/').collect();
            let [_inode, mode, _uid, _gid, name, size] = fields.as_slice() else {
                return None;
            };
            Some(DirEntry {
                name: name.to_string(),
                mode: u32::from_str_radix(mode, 8).ok()?,
                size: size.parse().unwrap_or(0),
            })
        })
        .filter(|entry| entry.name != "." && entry.name != "..")
        .collect();
    Ok(entries)
}

/// The contents of a (text) file in `image`.
pub fn cat(image: &Path, path: &str) -> anyhow::Result<String> {
    request(image, &format!("cat {path}"))
}

/// Copies `path` out of `image` into `dest`.
pub fn dump(image: &Path, path: &str, dest: &Path) -> anyhow::Result<()> {
    if dest.exists() {
        std::fs::remove_file(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    request(image, &format!("dump {path} {}", dest.display()))?;
    if !dest.exists() {
        anyhow::bail!("debugfs could not dump {path} from {}", image.display());
    }
    Ok(())
}

/// Where the symlink `path` in `image` points, or `None` if it is not a symlink.
pub fn read_link(image: &Path, path: &str) -> anyhow::Result<Option<String>> {
    let out = request(image, &format!("stat {path}"))?;
    // Short targets live in the inode ("Fast link dest"); long ones in a block.
    if let Some(rest) = out.lines().find_map(|line| line.trim().strip_prefix("Fast link dest: ")) {
        return Ok(Some(rest.trim().trim_matches('"').to_string()));
    }
    if out.contains("Type: symlink") {
        return Ok(Some(cat(image, path)?.trim().to_string()));
    }
    Ok(None)
}

/// Replays the ext4 journal of `image` if it needs it (a guest killed or
/// powered off without unmounting leaves one), changing nothing else.
pub fn replay_journal(image: &Path) -> anyhow::Result<()> {
    super::require("e2fsck")?;
    let out = Cmd::new("e2fsck")
        .args(["-E", "journal_only", "-p"])
        .arg(image)
        .timeout(std::time::Duration::from_secs(120))
        .run_unchecked()?;
    // 0: clean, 1: errors corrected (the journal was replayed).
    match out.status.code() {
        Some(0 | 1) => Ok(()),
        _ => {
            anyhow::bail!("{}", super::failure_message(&format!("e2fsck -E journal_only -p {}", image.display()), &out))
        }
    }
}

/// Runs one debugfs request read-only. debugfs exits 0 even when the request
/// fails; the failure is the first stderr line after its version banner.
fn request(image: &Path, req: &str) -> anyhow::Result<String> {
    super::require("debugfs")?;
    let out = Cmd::new("debugfs")
        .args(["-R", req])
        .arg(image)
        .timeout(std::time::Duration::from_secs(60))
        .run()
        .with_context(|| format!("reading {} with debugfs", image.display()))?;
    let complaint = out.stderr.lines().find(|line| !line.starts_with("debugfs ") && !line.trim().is_empty());
    if let Some(complaint) = complaint {
        anyhow::bail!("debugfs `{req}` on {}: {}", image.display(), complaint.trim());
    }
    Ok(out.stdout)
}
