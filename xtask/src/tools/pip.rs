//! pip, for the Python programs edgelab validates with (pykickstart's
//! `ksvalidator` is on PyPI and not in Debian bookworm).

use super::Cmd;

/// `python3 -m pip install PACKAGES`, then refreshes pyenv's shims when
/// pyenv manages python3 (otherwise the new script is not on PATH).
pub fn install(packages: &[&str]) -> anyhow::Result<()> {
    super::require("python3")?;
    Cmd::new("python3").args(["-m", "pip", "install", "-q"]).args(packages).run()?;
    if super::which("pyenv").is_some() {
        Cmd::new("pyenv").arg("rehash").run_unchecked().ok();
    }
    Ok(())
}
