//! pykickstart's `ksvalidator`: checks a kickstart against a distribution's
//! kickstart syntax. It comes from PyPI (`pip install pykickstart`); Debian
//! does not package it.

use std::path::Path;

use anyhow::bail;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "ksvalidator",
    debian: None,
    rhel: Some("pykickstart"),
    pip: Some("pykickstart"),
    version_args: &[],
}];

/// The syntax version edgelab's kickstarts are written for.
pub const SYNTAX: &str = "RHEL8";

pub const INSTALL_HINT: &str =
    "`ksvalidator` not found: pip install pykickstart (PyPI) or dnf install pykickstart (RHEL)";

pub fn available() -> bool {
    super::which("ksvalidator").is_some()
}

/// Fails with ksvalidator's report when `kickstart` has errors or warnings.
pub fn validate(kickstart: &Path) -> anyhow::Result<()> {
    if !available() {
        bail!("{INSTALL_HINT}");
    }
    let cmd = Cmd::new("ksvalidator").args(["-v", SYNTAX]).arg(kickstart);
    let output = cmd.run_unchecked()?;
    // Besides its "Checking kickstart file" banner, anything ksvalidator says
    // is a finding, even when it exits 0.
    let report: String = format!("{}{}", output.stdout, output.stderr)
        .lines()
        .filter(|line| !line.starts_with("Checking kickstart file"))
        .map(|line| format!("{line}\n"))
        .collect();
    if !output.status.success() || !report.trim().is_empty() {
        bail!("{}", super::failure_message(&cmd.display(), &super::Output { stderr: report, ..output }));
    }
    Ok(())
}
