//! isomd5sum's `implantisomd5`: the checksum Anaconda's "Test this media"
//! entry verifies (`rd.live.check`). A remastered image needs a new one.

use std::path::Path;

use super::Cmd;

pub fn available() -> bool {
    super::which("implantisomd5").is_some()
}

/// Implants the MD5 of `iso` into it, replacing any earlier one.
pub fn implant(iso: &Path) -> anyhow::Result<()> {
    super::require("implantisomd5")?;
    Cmd::new("implantisomd5").arg("--force").arg(iso).run()?;
    Ok(())
}
