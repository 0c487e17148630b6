//! The host's package manager: apt-get on Debian, dnf on RHEL.

#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use super::Cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Apt,
    Dnf,
}

impl PackageManager {
    pub fn detect() -> Option<PackageManager> {
        if super::which("apt-get").is_some() {
            Some(PackageManager::Apt)
        } else if super::which("dnf").is_some() {
            Some(PackageManager::Dnf)
        } else {
            None
        }
    }

    /// The command a user without root would run.
    pub fn install_command(self, packages: &[&str]) -> String {
        match self {
            PackageManager::Apt => format!("apt-get update && apt-get install -y {}", packages.join(" ")),
            PackageManager::Dnf => format!("dnf install -y {}", packages.join(" ")),
        }
    }

    /// Installs `packages`, refreshing the package lists first on apt.
    pub fn install(self, packages: &[&str]) -> anyhow::Result<()> {
        let limit = Duration::from_secs(1800);
        match self {
            PackageManager::Apt => {
                Cmd::new("apt-get").args(["update", "-q"]).timeout(limit).run()?;
                Cmd::new("apt-get")
                    .args(["install", "-y", "-q"])
                    .args(packages)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .timeout(limit)
                    .run()?;
            }
            PackageManager::Dnf => {
                Cmd::new("dnf").args(["install", "-y"]).args(packages).timeout(limit).run()?;
            }
        }
        Ok(())
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
