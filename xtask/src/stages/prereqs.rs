//! The `prereqs` stage: the host programs the lab's backends need, checked
//! and, when run as root, installed with the host's package manager after
//! saying what will be installed. Without root it prints the exact command.

use std::collections::BTreeSet;

use anyhow::bail;
use serde_json::json;

use super::{StageCtx, StageOutput};
use crate::{
    lab::{Backend, Lab},
    tools::{self, packages},
};

/// The programs `lab` needs on this host, for its resolved backends.
pub fn required_programs(lab: &Lab) -> BTreeSet<&'static str> {
    let mut programs = BTreeSet::new();
    if !lab.containers.is_empty() {
        programs.insert("podman");
        if lab.backends.for_registry() != Backend::Rhel {
            programs.insert("docker-registry");
        }
    }
    if !lab.images.is_empty() {
        programs.insert("ostree");
        if lab.backends.for_compose() != Backend::Rhel {
            programs.insert("mmdebstrap");
        }
    }
    match lab.backends.for_guests() {
        _ if lab.guests.is_empty() => {}
        Backend::Rhel => {
            programs.extend(["virt-install", "virsh", "xorriso", "mcopy"]);
        }
        Backend::Local | Backend::Auto => {
            programs.extend(["qemu-system-x86_64", "qemu-img", "mkfs.ext4", "debugfs", "ip"]);
        }
    }
    programs
}

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let programs = required_programs(ctx.lab);
    let missing: Vec<&str> = programs.iter().copied().filter(|program| tools::which(program).is_none()).collect();
    if !missing.is_empty() {
        install(&missing, ctx)?;
    }
    let found: Vec<String> = programs
        .iter()
        .map(|program| {
            format!("{program}={}", tools::which(program).map(|p| p.display().to_string()).unwrap_or_default())
        })
        .collect();
    std::fs::write(ctx.out.join("programs.txt"), found.join("\n") + "\n")?;
    Ok(StageOutput { output_digest: super::digest_out(&ctx.out)?, extra: json!({ "programs": found }) })
}

/// Still all there? (Someone may have removed a package since.)
pub fn check_live(ctx: &StageCtx, _output_digest: &str) -> Result<(), String> {
    let missing: Vec<&str> =
        required_programs(ctx.lab).into_iter().filter(|program| tools::which(program).is_none()).collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(format!("no longer installed: {}", missing.join(", "))),
    }
}

fn install(missing: &[&str], ctx: &StageCtx) -> anyhow::Result<()> {
    let manager = tools::apt::PackageManager::detect();
    let names: BTreeSet<&str> = missing
        .iter()
        .filter_map(|program| match manager {
            Some(tools::apt::PackageManager::Dnf) => packages::rhel_package(program),
            _ => packages::debian_package(program),
        })
        .collect();
    let unpackaged: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|program| match manager {
            Some(tools::apt::PackageManager::Dnf) => packages::rhel_package(program).is_none(),
            _ => packages::debian_package(program).is_none(),
        })
        .collect();
    if !unpackaged.is_empty() {
        bail!(
            "missing programs with no package on this host: {} (pin another backend in lab.kdl's `backends`)",
            unpackaged.join(", ")
        );
    }
    let names: Vec<&str> = names.into_iter().collect();
    let Some(manager) = manager else {
        bail!("missing programs: {}; no apt-get or dnf here to install them", missing.join(", "));
    };
    let command = manager.install_command(&names);
    if !tools::apt::is_root() {
        bail!("missing programs: {}; install them with:\n  sudo {command}", missing.join(", "));
    }
    ctx.progress.note(&format!("installing {} (missing: {})", names.join(" "), missing.join(", ")));
    eprintln!("edgelab will install: {}  ({command})", names.join(" "));
    manager.install(&names)
}
