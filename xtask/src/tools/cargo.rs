//! cargo itself, for `cargo xtask test`.

use std::process::ExitStatus;

use super::Cmd;

/// `cargo test --workspace [ARGS]` with output passed through.
pub fn test_workspace(extra_args: &[String]) -> anyhow::Result<ExitStatus> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = crate::cli::project_root();
    Cmd::new(cargo).args(["test", "--workspace"]).args(extra_args).cwd(root).run_inherit()
}
