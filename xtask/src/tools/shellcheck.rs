//! `shellcheck`: lints the shell scripts edgelab puts on guests.

use std::path::PathBuf;

use super::Cmd;

/// Lints `scripts` as bash; fails with shellcheck's findings.
pub fn check(scripts: &[PathBuf]) -> anyhow::Result<()> {
    super::require("shellcheck")?;
    if scripts.is_empty() {
        return Ok(());
    }
    Cmd::new("shellcheck").args(["--shell=bash", "--format=gcc"]).args(scripts).run()?;
    Ok(())
}
