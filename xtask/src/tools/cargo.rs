//! cargo itself: `cargo xtask test`, and release builds of the workspace's
//! own programs (the file server).

use std::{
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use anyhow::Context;

use super::Cmd;

/// `cargo test --workspace [ARGS]` with output passed through.
pub fn test_workspace(extra_args: &[String]) -> anyhow::Result<ExitStatus> {
    let root = crate::cli::project_root();
    Cmd::new(cargo_program()).args(["test", "--workspace"]).args(extra_args).cwd(root).run_inherit()
}

/// Builds binary `bin` of workspace package `package` with `--release` and
/// returns its path, in `CARGO_TARGET_DIR` when set (as cargo does).
pub fn build_release_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let root = crate::cli::project_root();
    Cmd::new(cargo_program())
        .args(["build", "--release", "--quiet", "--package", package, "--bin", bin])
        .cwd(&root)
        .timeout(Duration::from_secs(900))
        .run()
        .with_context(|| format!("building `{bin}` (package {package}) in release mode"))?;
    Ok(target_dir(&root).join("release").join(bin))
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
