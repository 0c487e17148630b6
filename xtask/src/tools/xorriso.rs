//! `xorriso`: reads and rewrites ISO 9660 images without mounting them. The
//! boot ISO is remastered by loading it (`-indev`), replacing or adding files
//! (`-map`) and writing a new image (`-outdev`) with the El Torito boot
//! records and the hybrid MBR/GPT replayed from the original
//! (`-boot_image any replay`), as Lorax's `mkksiso` does, but without root.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "xorriso",
    debian: Some("xorriso"),
    rhel: Some("xorriso"),
    pip: None,
    version_args: &["--version"],
}];

/// One file to put into the new image: `local` lands at `iso_path`.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub local: PathBuf,
    pub iso_path: String,
}

/// What a remaster writes.
#[derive(Debug, Clone)]
pub struct Remaster<'a> {
    pub base: &'a Path,
    pub output: &'a Path,
    pub volume_id: &'a str,
    pub mappings: &'a [Mapping],
}

/// The volume id from the primary volume descriptor; `None` when the image
/// has none (or is no ISO 9660 image at all).
pub fn volume_id(iso: &Path) -> anyhow::Result<Option<String>> {
    super::require("xorriso")?;
    let output = Cmd::new("xorriso").arg("-indev").arg(iso).arg("-pvd_info").run()?;
    // On a file that holds no ISO 9660 image, xorriso reports a blank image
    // with its own default volume id (`ISOIMAGE`).
    if output.stderr.contains("No ISO 9660 image") {
        return Ok(None);
    }
    let id = output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("Volume Id"))
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty());
    Ok(id)
}

/// Which of `paths` (absolute, inside the image) exist in `iso`.
pub fn existing(iso: &Path, paths: &[&str]) -> anyhow::Result<Vec<String>> {
    super::require("xorriso")?;
    // Missing paths are only warnings to `-ls`; the listing names what exists.
    let output = Cmd::new("xorriso").arg("-indev").arg(iso).arg("-ls").args(paths).run()?;
    let listed: Vec<String> = output.stdout.lines().map(|line| line.trim().trim_matches('\'').to_string()).collect();
    Ok(paths.iter().filter(|path| listed.iter().any(|it| it == *path)).map(|path| path.to_string()).collect())
}

/// Copies `iso_path` out of `iso` to `local`.
pub fn extract(iso: &Path, iso_path: &str, local: &Path) -> anyhow::Result<()> {
    super::require("xorriso")?;
    Cmd::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", iso_path])
        .arg(local)
        .run()
        .with_context(|| format!("extracting {iso_path} from {}", iso.display()))?;
    Ok(())
}

/// The El Torito boot records as `mkisofs` options (`-b`, `-e`, load sizes,
/// the catalog path): what a remaster must keep.
pub fn boot_records(iso: &Path) -> anyhow::Result<String> {
    super::require("xorriso")?;
    Ok(Cmd::new("xorriso").arg("-indev").arg(iso).args(["-report_el_torito", "as_mkisofs"]).run()?.stdout)
}

/// Writes `remaster.output`: the base image with the mappings applied, the
/// volume id set and the boot records replayed.
pub fn remaster(remaster: &Remaster) -> anyhow::Result<()> {
    super::require("xorriso")?;
    if remaster.output.exists() {
        // xorriso would append a session to an existing output instead.
        std::fs::remove_file(remaster.output)
            .with_context(|| format!("removing the old {}", remaster.output.display()))?;
    }
    let mut cmd = Cmd::new("xorriso").arg("-indev").arg(remaster.base).arg("-outdev").arg(remaster.output);
    cmd = cmd.args(["-boot_image", "any", "replay"]);
    for mapping in remaster.mappings {
        cmd = cmd.arg("-map").arg(&mapping.local).arg(&mapping.iso_path);
    }
    cmd = cmd.args(["-volid", remaster.volume_id, "-commit"]);
    let output = cmd.run()?;
    if !remaster.output.exists() {
        bail!("`{}` wrote no image{}", cmd.display(), output.stderr.lines().last().unwrap_or(""));
    }
    Ok(())
}
