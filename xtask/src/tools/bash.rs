//! `bash -n`: parses a script without running it.

use std::path::Path;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "bash", debian: Some("bash"), rhel: Some("bash"), pip: None, version_args: &["--version"] }];

pub fn syntax_check(script: &Path) -> anyhow::Result<()> {
    super::require("bash")?;
    Cmd::new("bash").arg("-n").arg(script).run()?;
    Ok(())
}
