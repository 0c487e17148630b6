//! dnf: installing RHEL packages (`cargo xtask host setup`).

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "dnf", debian: None, rhel: Some("dnf"), pip: None, version_args: &["--version"] }];

/// `dnf -y install PACKAGES...`, as a user could paste it.
pub fn install_line(packages: &[String]) -> String {
    install_cmd("dnf", packages).display()
}

/// Installs `packages` (already installed ones are left as they are).
pub fn install(packages: &[String]) -> anyhow::Result<()> {
    install_cmd(&super::require("dnf")?.to_string_lossy(), packages).run().map(drop)
}

fn install_cmd(program: &str, packages: &[String]) -> Cmd {
    Cmd::new(program).args(["-y", "install"]).args(packages)
}
