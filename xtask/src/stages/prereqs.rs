//! The `prereqs` stage: the host programs the lab needs, derived from what
//! runs: every stage's declared tools (from the graph), the programs of the
//! lab's services, and those of its guests and network. Each program's
//! packages come from its wrapper's declaration (`tools::packages`), so there
//! is no second list. What is missing is installed in one package-manager
//! transaction (and PyPI programs into edgelab's venv) after saying what
//! will be installed, when run as root; without root it prints the exact
//! command. `lab up` runs this stage before anything else, network included.
//!
//! No other stage's key depends on this one: the identity of each tool a
//! stage runs is in that stage's own key, and nothing else about the host is.

use std::collections::BTreeSet;

use anyhow::bail;
use serde_json::json;

use super::{StageCtx, StageOutput};
use crate::{
    graph,
    lab::Lab,
    progress::Progress,
    tools::{self, apt::PackageManager, packages, pip},
};

/// The programs `lab` needs on this host, for its resolved backends.
pub fn required_programs(lab: &Lab) -> BTreeSet<&'static str> {
    let mut programs: BTreeSet<&'static str> =
        graph::build(lab).stages.iter().flat_map(|stage| stage.tools.iter().copied()).collect();
    programs.extend(crate::services::programs(lab));
    programs.extend(crate::guests::programs(lab));
    programs
}

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let programs = required_programs(ctx.lab);
    let installed = ensure_programs(&programs, ctx.progress)?;
    let found: Vec<String> = programs
        .iter()
        .map(|program| {
            format!("{program}={}", tools::which(program).map(|p| p.display().to_string()).unwrap_or_default())
        })
        .collect();
    std::fs::write(ctx.out.join("programs.txt"), found.join("\n") + "\n")?;
    Ok(StageOutput {
        output_digest: super::digest_out(&ctx.out)?,
        extra: json!({ "programs": found, "installed": installed }),
    })
}

/// Still all there? (Someone may have removed a package since.)
pub fn check_live(ctx: &StageCtx, _output_digest: &str) -> Result<(), String> {
    let missing = missing(&required_programs(ctx.lab));
    match missing.is_empty() {
        true => Ok(()),
        false => Err(format!("no longer installed: {}", missing.join(", "))),
    }
}

/// Installs what is missing of `programs`: their distribution packages in
/// one transaction, then their PyPI packages into edgelab's venv. Returns
/// the packages installed; fails with the exact command when not root.
pub fn ensure_programs(programs: &BTreeSet<&str>, progress: &Progress) -> anyhow::Result<Vec<String>> {
    let missing = missing(programs);
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let manager = PackageManager::detect();
    let mut distro: BTreeSet<&str> = BTreeSet::new();
    let mut from_pip: BTreeSet<&str> = BTreeSet::new();
    let mut unavailable = Vec::new();
    for program in &missing {
        let package = match manager {
            Some(PackageManager::Apt) => packages::debian_package(program),
            Some(PackageManager::Dnf) => packages::rhel_package(program),
            None => None,
        };
        match (package, packages::pip_package(program)) {
            (Some(package), _) => {
                distro.insert(package);
            }
            (None, Some(package)) => {
                from_pip.insert(package);
            }
            (None, None) => unavailable.push(*program),
        }
    }
    if !unavailable.is_empty() {
        bail!(
            "missing programs with no package on this host: {} (pin another backend in lab.kdl's `backends`)",
            unavailable.iter().map(|program| packages::missing_message(program)).collect::<Vec<_>>().join("; ")
        );
    }
    let Some(manager) = manager else {
        bail!("missing programs: {}; no apt-get or dnf here to install them", missing.join(", "));
    };
    if !from_pip.is_empty() && !pip::venv_ready() {
        // Debian keeps venv (with ensurepip) out of python3 itself.
        distro.insert(match manager {
            PackageManager::Apt => "python3-venv",
            PackageManager::Dnf => "python3",
        });
    }
    let distro: Vec<&str> = distro.into_iter().collect();
    let from_pip: Vec<&str> = from_pip.into_iter().collect();
    if !tools::apt::is_root() {
        let mut how = vec![format!("sudo {}", manager.install_command(&distro))];
        if !from_pip.is_empty() {
            how.push(format!("{}/bin/pip install {}", pip::venv_dir().display(), from_pip.join(" ")));
        }
        bail!("missing programs: {}; install them with:\n  {}", missing.join(", "), how.join("\n  "));
    }
    let mut installed: Vec<String> = Vec::new();
    if !distro.is_empty() {
        progress.keep(&format!(
            "installing {} for {} (`{}`)",
            distro.join(" "),
            missing.join(", "),
            manager.install_command(&distro)
        ));
        for realigned in manager.install(&distro)? {
            progress.keep(&format!(
                "replaced {} {} (not from this host's apt sources) with the archive's {}",
                realigned.package, realigned.installed, realigned.archive
            ));
        }
        installed.extend(distro.iter().map(|it| it.to_string()));
    }
    if !from_pip.is_empty() {
        progress.keep(&format!("installing {} from PyPI into {}", from_pip.join(" "), pip::venv_dir().display()));
        pip::install(&from_pip)?;
        installed.extend(from_pip.iter().map(|it| format!("pip:{it}")));
    }
    let still = self::missing(programs);
    if !still.is_empty() {
        bail!("installed {} but still not found: {}", installed.join(" "), still.join(", "));
    }
    Ok(installed)
}

fn missing<'a>(programs: &BTreeSet<&'a str>) -> Vec<&'a str> {
    programs.iter().copied().filter(|program| tools::which(program).is_none()).collect()
}
