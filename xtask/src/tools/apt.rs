//! The host's package manager: apt-get on Debian, dnf on RHEL.
//!
//! On Debian, an install is simulated first. When apt would remove an
//! installed package to make room (or refuses because one `Breaks` what is
//! asked for), and that package was installed from outside this host's apt
//! sources (a backport, a local .deb: seen on fresh machines whose
//! qemu-utils 10 from bookworm-backports breaks bookworm's qemu-system-x86),
//! the same transaction installs the archive's version of it instead, after
//! saying so. Nothing is removed behind the user's back.

use std::time::Duration;

use anyhow::bail;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[
    Program { name: "apt-get", debian: Some("apt"), rhel: None, pip: None, version_args: &["--version"] },
    Program { name: "apt-cache", debian: Some("apt"), rhel: None, pip: None, version_args: &["--version"] },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Apt,
    Dnf,
}

/// An installed package apt would have to remove or break, and the
/// archive's version that fits instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realignment {
    pub package: String,
    pub installed: String,
    pub archive: String,
}

const LIMIT: Duration = Duration::from_secs(1800);

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

    /// Installs `packages` in one transaction, refreshing the package lists
    /// first on apt. Returns the installed packages it realigned.
    pub fn install(self, packages: &[&str]) -> anyhow::Result<Vec<Realignment>> {
        match self {
            PackageManager::Apt => {
                Cmd::new("apt-get").args(["update", "-q"]).timeout(LIMIT).run()?;
                let realigned = realignments(packages)?;
                let mut args: Vec<String> = packages.iter().map(|it| it.to_string()).collect();
                for it in &realigned {
                    eprintln!(
                        "edgelab: {} {} is not from this host's apt sources and conflicts with what the lab \
                         needs; installing the archive's {} {} in the same transaction",
                        it.package, it.installed, it.package, it.archive
                    );
                    args.push(format!("{}={}", it.package, it.archive));
                }
                let mut cmd = Cmd::new("apt-get").args(["install", "-y", "-q"]);
                if !realigned.is_empty() {
                    cmd = cmd.arg("--allow-downgrades");
                }
                cmd.args(&args).env("DEBIAN_FRONTEND", "noninteractive").timeout(LIMIT).run()?;
                Ok(realigned)
            }
            PackageManager::Dnf => {
                Cmd::new("dnf").args(["install", "-y"]).args(packages).timeout(LIMIT).run()?;
                Ok(Vec::new())
            }
        }
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// What apt's simulation says must change besides installing `packages`.
fn realignments(packages: &[&str]) -> anyhow::Result<Vec<Realignment>> {
    let simulated = Cmd::new("apt-get")
        .args(["install", "-s", "-y", "-q"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .timeout(LIMIT)
        .run_unchecked()?;
    let text = format!("{}{}", simulated.stdout, simulated.stderr);
    let mut found = Vec::new();
    for package in conflicting_installed(&text) {
        let policy = Cmd::new("apt-cache").args(["policy", &package]).run()?.stdout;
        let (Some(installed), Some(archive)) = (installed_version(&policy), archive_version(&policy)) else {
            bail!(
                "installing {} would remove or break {package}, which no apt source provides; remove it or \
                 install the packages by hand:\n{}",
                packages.join(" "),
                text.trim()
            );
        };
        if installed != archive {
            found.push(Realignment { package, installed, archive });
        }
    }
    Ok(found)
}

/// Installed packages that apt's (simulated) install would remove
/// (`Remv NAME [VERSION]`) or that break what is asked for
/// (` NAME : Breaks: OTHER (< VERSION) but ... is to be installed`).
pub fn conflicting_installed(apt_output: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in apt_output.lines() {
        let name = match line.strip_prefix("Remv ") {
            Some(rest) => rest.split_whitespace().next(),
            None => line.split_once(" : Breaks:").map(|(name, _)| name.trim()).filter(|name| !name.contains(' ')),
        };
        if let Some(name) = name
            && !names.iter().any(|it| it == name)
        {
            names.push(name.to_string());
        }
    }
    names
}

/// `Installed:` of `apt-cache policy NAME`.
pub fn installed_version(policy: &str) -> Option<String> {
    let version = policy.lines().find_map(|line| line.trim().strip_prefix("Installed:"))?.trim();
    (version != "(none)").then(|| version.to_string())
}

/// The newest version in `apt-cache policy NAME`'s table that some apt
/// source provides (not only `/var/lib/dpkg/status`).
pub fn archive_version(policy: &str) -> Option<String> {
    let mut current: Option<&str> = None;
    for line in policy.lines().skip_while(|line| !line.trim_start().starts_with("Version table:")).skip(1) {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent <= 5 {
            // A version line: ` *** VERSION PRIO` or `     VERSION PRIO`.
            current = trimmed.trim_start_matches("*** ").split_whitespace().next();
        } else if let Some(version) = current
            && !trimmed.contains("/var/lib/dpkg/status")
        {
            return Some(version.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// apt-get's answer on a fresh machine of this kind, whose image came
    /// with qemu-utils from bookworm-backports (no backports source).
    const BREAKS: &str = "Some packages could not be installed. This may mean that you have
requested an impossible situation or if you are using the unstable
distribution that some required packages have not yet been created
or been moved out of Incoming.
The following information may help to resolve the situation:

The following packages have unmet dependencies:
 qemu-utils : Breaks: qemu-system-common (< 1:8.0+dfsg-5~) but 1:7.2+dfsg-7+deb12u18+b3 is to be installed
              Recommends: qemu-block-extra (= 1:10.0.2+ds-2+deb13u1~bpo12+1) but 1:7.2+dfsg-7+deb12u18+b3 is to be installed
E: Unable to correct problems, you have held broken packages.
";

    const POLICY: &str = "qemu-utils:
  Installed: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1
  Version table:
 *** 1:10.0.2+ds-2+deb13u1~bpo12+1 100
        100 /var/lib/dpkg/status
     1:7.2+dfsg-7+deb12u18+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
     1:7.2+dfsg-7+deb12u15 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
";

    #[test]
    fn finds_the_installed_package_that_breaks_the_install() {
        assert_eq!(conflicting_installed(BREAKS), vec!["qemu-utils"]);
        let removal = "Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.12/stable [amd64])\n\
                       Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n";
        assert_eq!(conflicting_installed(removal), vec!["qemu-utils"]);
        assert!(conflicting_installed("Inst figlet (2.2.5-3+b1 Debian:12.12/stable [amd64])\n").is_empty());
    }

    #[test]
    fn picks_the_archive_version_over_the_local_one() {
        assert_eq!(installed_version(POLICY).as_deref(), Some("1:10.0.2+ds-2+deb13u1~bpo12+1"));
        assert_eq!(archive_version(POLICY).as_deref(), Some("1:7.2+dfsg-7+deb12u18+b3"));
        let local_only = "foo:\n  Installed: 1.0\n  Candidate: 1.0\n  Version table:\n *** 1.0 100\n        100 /var/lib/dpkg/status\n";
        assert_eq!(archive_version(local_only), None);
        assert_eq!(installed_version("foo:\n  Installed: (none)\n"), None);
    }
}
