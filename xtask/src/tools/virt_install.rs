//! virt-install: defining a libvirt guest and starting its install from the
//! guest's remastered boot ISO (RHEL world).
//!
//! The kickstart is already inside the ISO's boot entries (the `iso` stage put
//! it there), so the ISO goes in with `--cdrom` and needs no `--extra-args`.
//! With `--noautoconsole` virt-install starts the install and returns; with
//! `--noreboot` the guest powers off when the installer finishes instead of
//! booting the installed system, which is how the caller knows it is done.

use std::path::Path;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "virt-install",
    debian: Some("virtinst"),
    rhel: Some("virt-install"),
    pip: None,
    version_args: &["--version"],
}];

/// One guest's install: the flags virt-install gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install<'a> {
    /// The libvirt connection (lab.kdl's `libvirt uri=...`).
    pub connect: &'a str,
    pub name: &'a str,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub disk_gib: u64,
    pub os_variant: &'a str,
    pub bridge: &'a str,
    pub cdrom: &'a Path,
}

/// The command line, as a user could paste it.
pub fn command_line(install: &Install) -> String {
    command("virt-install", install).display()
}

/// Runs virt-install; it returns once the install has started.
pub fn install(install: &Install) -> anyhow::Result<()> {
    use anyhow::Context;
    let program = super::require("virt-install")?;
    command(&program.to_string_lossy(), install)
        .timeout(std::time::Duration::from_secs(300))
        .run()
        .with_context(|| format!("guest {}: starting its install from {}", install.name, install.cdrom.display()))?;
    Ok(())
}

fn command(program: &str, install: &Install) -> Cmd {
    Cmd::new(program)
        .args(["--connect", install.connect])
        .args(["--name", install.name])
        .args(["--memory", &install.memory_mib.to_string()])
        .args(["--vcpus", &install.vcpus.to_string()])
        .args(["--disk", &format!("size={}", install.disk_gib)])
        .args(["--os-variant", install.os_variant])
        .args(["--network", &format!("bridge={}", install.bridge)])
        .arg("--cdrom")
        .arg(install.cdrom)
        .args(["--noautoconsole", "--noreboot"])
}
