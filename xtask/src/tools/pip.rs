//! pip, for the Python programs edgelab validates with (pykickstart's
//! `ksvalidator` is on PyPI and not in Debian bookworm). They go into a
//! virtual environment of edgelab's own, never into the system's Python:
//! Debian's python3 refuses `pip install` outside one (PEP 668), and a
//! venv keeps the host's packages untouched.

use std::path::PathBuf;

use anyhow::Context;

use super::Cmd;

/// Where edgelab's venv lives: `EDGELAB_VENV`, else under the user's data
/// folder (`$XDG_DATA_HOME/edgelab/venv` or `~/.local/share/edgelab/venv`).
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDGELAB_VENV") {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")));
    data.unwrap_or_else(|| PathBuf::from("/var/lib")).join("edgelab/venv")
}

/// Whether this host's python3 can make a venv with pip in it (Debian
/// splits that into python3-venv).
pub fn venv_ready() -> bool {
    super::which("python3").is_some()
        && Cmd::new("python3")
            .args(["-c", "import ensurepip, venv"])
            .run_unchecked()
            .is_ok_and(|out| out.status.success())
}

/// Installs PyPI `packages` into edgelab's venv (made first when missing);
/// their programs land in `venv_dir()/bin`, which `tools::which` searches.
pub fn install(packages: &[&str]) -> anyhow::Result<()> {
    super::require("python3")?;
    let venv = venv_dir();
    let pip = venv.join("bin/pip");
    if !pip.exists() {
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        Cmd::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .run()
            .with_context(|| format!("making edgelab's Python venv {}", venv.display()))?;
    }
    Cmd::new(&pip)
        .args(["install", "-q", "--disable-pip-version-check"])
        .args(packages)
        .timeout(std::time::Duration::from_secs(900))
        .run()
        .with_context(|| format!("pip install {} into {}", packages.join(" "), venv.display()))?;
    Ok(())
}
