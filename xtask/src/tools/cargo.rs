//! cargo itself: `cargo xtask test`, static builds of the demo app's server,
//! and release builds of the workspace's own programs (the file server).

use std::{
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "cargo", debian: Some("cargo"), rhel: Some("cargo"), pip: None, version_args: &["--version"] }];

/// `cargo test --workspace [ARGS]` with output passed through.
pub fn test_workspace(extra_args: &[String]) -> anyhow::Result<ExitStatus> {
    let root = crate::cli::project_root();
    Cmd::new(cargo_program()).args(["test", "--workspace"]).args(extra_args).cwd(root).run_inherit()
}

/// Builds binary `bin` of the package at `manifest` statically linked
/// (glibc with `crt-static`: enough for a std-only program, and needs no
/// extra target installed), stripped, into `target_dir`; returns its path.
pub fn build_static_binary(manifest: &Path, bin: &str, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let target = "x86_64-unknown-linux-gnu";
    Cmd::new(cargo_program())
        .args(["build", "--release", "--quiet", "--bin", bin, "--target", target, "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .timeout(Duration::from_secs(600))
        .run()
        .with_context(|| format!("building `{bin}` from {}", manifest.display()))?;
    Ok(target_dir.join(target).join("release").join(bin))
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
