//! `cargo xtask test`: installs what the tests need (only what is missing)
//! and runs tiers 1 and 2 (`cargo test --workspace`).
//!
//! What the tests need is derived, not listed: every program the demo lab
//! needs in the local world (`stages::prereqs::required_programs`, from the
//! stages' declared tools), the RHEL world's boot-media tools (the ISO
//! tests remaster a synthetic ISO here), the benchmarks' and file-server
//! tests' clients, and the programs only tests run (`packages::TEST_ONLY`).

use std::collections::BTreeSet;

use anyhow::Context;

use crate::{
    graph,
    progress::Progress,
    stages::prereqs,
    tools::{self, packages},
};

/// Programs the tests run beyond the demo lab's own: the ISO stage's (the
/// RHEL world's boot media, tested with a synthetic ISO), graphviz for
/// `graph --format svg`, wrk for the file server's load tests, the ssh
/// client the RHEL world's guest channel uses (tested against a real sshd).
const TESTED_BEYOND_THE_LAB: &[&str] =
    &["xorriso", "mcopy", "mtype", "mformat", "implantisomd5", "checkisomd5", "dot", "wrk", "ssh", "ssh-keygen"];

/// Every program the tier 1 and 2 tests run for real.
pub fn test_programs() -> anyhow::Result<BTreeSet<&'static str>> {
    let lab_file = super::project_root().join("lab.kdl");
    let lab = crate::lab::parse_lab_file(&lab_file).map_err(|err| anyhow::anyhow!("{}", err.to_plain()))?;
    let lab = graph::resolve_backends(&lab, false);
    let lab = graph::resolve_network(&lab, None).map_err(|err| anyhow::anyhow!("{}: {err}", lab_file.display()))?;
    let mut programs = prereqs::required_programs(&lab);
    programs.extend(TESTED_BEYOND_THE_LAB);
    programs.extend(packages::TEST_ONLY.iter().map(|program| program.name));
    Ok(programs)
}

pub fn run(extra_args: &[String]) -> anyhow::Result<()> {
    let programs = test_programs()?;
    prereqs::ensure_programs(&programs, &Progress::new(false)).context("installing what the tests need")?;
    let status = tools::cargo::test_workspace(extra_args)?;
    if !status.success() {
        anyhow::bail!("tests failed");
    }
    Ok(())
}
