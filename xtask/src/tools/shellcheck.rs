//! `shellcheck`: lints the shell scripts edgelab puts on guests.

use std::path::PathBuf;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "shellcheck",
    debian: Some("shellcheck"),
    rhel: Some("ShellCheck"),
    pip: None,
    version_args: &["--version"],
}];

/// Lints `scripts` as bash; fails with shellcheck's findings.
pub fn check(scripts: &[PathBuf]) -> anyhow::Result<()> {
    super::require("shellcheck")?;
    if scripts.is_empty() {
        return Ok(());
    }
    Cmd::new("shellcheck").args(["--shell=bash", "--format=gcc"]).args(scripts).run()?;
    Ok(())
}
