//! isomd5sum's `implantisomd5`: the checksum Anaconda's "Test this media"
//! entry verifies (`rd.live.check`). A remastered image needs a new one.

use std::path::Path;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[
    Program { name: "implantisomd5", debian: Some("isomd5sum"), rhel: Some("isomd5sum"), pip: None, version_args: &[] },
    Program { name: "checkisomd5", debian: Some("isomd5sum"), rhel: Some("isomd5sum"), pip: None, version_args: &[] },
];

pub fn available() -> bool {
    super::which("implantisomd5").is_some()
}

/// Implants the MD5 of `iso` into it, replacing any earlier one.
pub fn implant(iso: &Path) -> anyhow::Result<()> {
    super::require("implantisomd5")?;
    Cmd::new("implantisomd5").arg("--force").arg(iso).run()?;
    Ok(())
}
