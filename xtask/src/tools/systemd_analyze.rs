//! `systemd-analyze verify`: loads unit files the way systemd would and
//! reports what it would ignore or refuse (unknown keys, bad values, missing
//! executables). It exits 0 on many of those, so any line it prints about
//! the verified files counts as a failure.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "systemd-analyze",
    debian: Some("systemd"),
    rhel: Some("systemd"),
    pip: None,
    version_args: &["--version"],
}];

/// Which manager the units are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    System,
    User,
}

/// Verifies `units` for `manager`. `runtime_dir` is a private folder to use
/// as XDG_RUNTIME_DIR, which the user manager needs even to verify.
pub fn verify(units: &[PathBuf], manager: Manager, runtime_dir: &Path) -> anyhow::Result<()> {
    super::require("systemd-analyze")?;
    if units.is_empty() {
        return Ok(());
    }
    let mut cmd = Cmd::new("systemd-analyze").arg("verify").arg("--man=no");
    if manager == Manager::User {
        cmd = cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime_dir);
    }
    let cmd = cmd.args(units);
    let output = cmd.run_unchecked()?;
    let names: Vec<String> =
        units.iter().filter_map(|unit| unit.file_name()).map(|name| name.to_string_lossy().into_owned()).collect();
    let findings: Vec<&str> =
        output.stderr.lines().filter(|line| names.iter().any(|name| line.contains(name.as_str()))).collect();
    if !output.status.success() || !findings.is_empty() {
        let stderr = if findings.is_empty() { output.stderr.clone() } else { findings.join("\n") };
        bail!("{}", super::failure_message(&cmd.display(), &super::Output { stderr, ..output }));
    }
    Ok(())
}
