//! mtools: reads and writes files inside a FAT image (the boot ISO's
//! `images/efiboot.img`) without mounting it.

use std::path::Path;

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[
    Program { name: "mcopy", debian: Some("mtools"), rhel: Some("mtools"), pip: None, version_args: &["--version"] },
    Program { name: "mtype", debian: Some("mtools"), rhel: Some("mtools"), pip: None, version_args: &["--version"] },
    Program { name: "mformat", debian: Some("mtools"), rhel: Some("mtools"), pip: None, version_args: &["--version"] },
];

/// The text of `path` (`::/EFI/BOOT/grub.cfg` style, without the `::`) in `image`.
pub fn read_text(image: &Path, path: &str) -> anyhow::Result<String> {
    super::require("mtype")?;
    let output = Cmd::new("mtype")
        .arg("-i")
        .arg(image)
        .arg(format!("::{path}"))
        .env("MTOOLS_SKIP_CHECK", "1")
        .run()
        .with_context(|| format!("reading {path} inside {}", image.display()))?;
    Ok(output.stdout)
}

/// Replaces `path` inside `image` with the file `local`.
pub fn write_file(image: &Path, local: &Path, path: &str) -> anyhow::Result<()> {
    super::require("mcopy")?;
    Cmd::new("mcopy")
        .args(["-o", "-i"])
        .arg(image)
        .arg(local)
        .arg(format!("::{path}"))
        .env("MTOOLS_SKIP_CHECK", "1")
        .run()
        .with_context(|| format!("writing {path} inside {}", image.display()))?;
    Ok(())
}
