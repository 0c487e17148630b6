//! `mkfs.ext4` (e2fsprogs): writes an ext4 disk image filled from a folder
//! (`-d`), so a guest disk is made without loop devices or mounting.

use std::{path::Path, time::Duration};

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "mkfs.ext4",
    debian: Some("e2fsprogs"),
    rhel: Some("e2fsprogs"),
    pip: None,
    version_args: &["-V"],
}];

/// Creates `image` as a sparse file of `size_bytes` holding an ext4 file
/// system labelled `label` with the contents of `root`.
pub fn ext4_from_dir(image: &Path, size_bytes: u64, label: &str, root: &Path) -> anyhow::Result<()> {
    super::require("mkfs.ext4")?;
    let file = std::fs::File::create(image).with_context(|| format!("creating {}", image.display()))?;
    file.set_len(size_bytes).with_context(|| format!("sizing {}", image.display()))?;
    drop(file);
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-d"])
        .arg(root)
        .arg(image)
        .timeout(Duration::from_secs(600))
        .run()
        .with_context(|| format!("writing the disk image {} from {}", image.display(), root.display()))?;
    Ok(())
}
