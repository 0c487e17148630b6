//! `bash -n`: parses a script without running it.

use std::path::Path;

use super::Cmd;

pub fn syntax_check(script: &Path) -> anyhow::Result<()> {
    super::require("bash")?;
    Cmd::new("bash").arg("-n").arg(script).run()?;
    Ok(())
}
