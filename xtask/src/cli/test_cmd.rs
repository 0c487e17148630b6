//! `cargo xtask test`: installs what the tests need (only what is missing)
//! and runs tiers 1 and 2 (`cargo test --workspace`).

use crate::tools::{self, apt::PackageManager};

/// Programs the tier 1 and 2 tests run for real.
pub const TEST_PROGRAMS: &[&str] = &[
    "podman",
    "docker-registry",
    "ostree",
    "xorriso",
    "mcopy",
    "mformat",
    "implantisomd5",
    "checkisomd5",
    "qemu-system-x86_64",
    "qemu-img",
    "keepalived",
    "mmdebstrap",
    "mkfs.ext4",
    "debugfs",
    "e2fsck",
    "chattr",
    "unshare",
    "ip",
    "systemd-analyze",
    "shellcheck",
    "figlet",
    "cowsay",
    "dot",
    "curl",
    "wrk",
];

pub fn run(extra_args: &[String]) -> anyhow::Result<()> {
    install_missing(TEST_PROGRAMS)?;
    if tools::which("ksvalidator").is_none() {
        eprintln!("installing pykickstart (ksvalidator) with pip");
        tools::pip::install(&["pykickstart"])?;
    }
    let status = tools::cargo::test_workspace(extra_args)?;
    if !status.success() {
        anyhow::bail!("tests failed");
    }
    Ok(())
}

/// Installs the packages of the programs in `programs` that are missing.
pub fn install_missing(programs: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = programs.iter().copied().filter(|program| tools::which(program).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let Some(manager) = PackageManager::detect() else {
        anyhow::bail!("missing programs {}: no apt-get or dnf here to install them", missing.join(", "));
    };
    let packages: std::collections::BTreeSet<&str> = missing
        .iter()
        .filter_map(|program| match manager {
            PackageManager::Apt => tools::packages::debian_package(program),
            PackageManager::Dnf => tools::packages::rhel_package(program),
        })
        .collect();
    let packages: Vec<&str> = packages.into_iter().collect();
    if !tools::apt::is_root() {
        anyhow::bail!(
            "missing programs {}; install them with:\n  sudo {}",
            missing.join(", "),
            manager.install_command(&packages)
        );
    }
    eprintln!("installing test prerequisites: {}", packages.join(" "));
    manager.install(&packages)
}
