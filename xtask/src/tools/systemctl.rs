//! systemctl: starting and stopping the RHEL world's services as units.

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "systemctl",
    debian: Some("systemd"),
    rhel: Some("systemd"),
    pip: None,
    version_args: &["--version"],
}];

/// `systemctl daemon-reload`, so a written unit is seen.
pub fn daemon_reload() -> anyhow::Result<()> {
    Cmd::new(super::require("systemctl")?).arg("daemon-reload").run()?;
    Ok(())
}

/// `systemctl start UNIT`.
pub fn start(unit: &str) -> anyhow::Result<()> {
    Cmd::new(super::require("systemctl")?).args(["start", unit]).run()?;
    Ok(())
}

/// `systemctl stop UNIT`.
pub fn stop(unit: &str) -> anyhow::Result<()> {
    Cmd::new(super::require("systemctl")?).args(["stop", unit]).run()?;
    Ok(())
}

/// Whether UNIT is active.
pub fn is_active(unit: &str) -> bool {
    Cmd::new("systemctl").args(["is-active", "--quiet", unit]).run_unchecked().is_ok_and(|out| out.status.success())
}

/// Enables `units` inside `root` without booting it (`systemctl --root`),
/// exactly as `systemctl enable` would inside the guest, following each
/// unit's `[Install]` section.
pub fn enable_offline(root: &std::path::Path, units: &[String]) -> anyhow::Result<()> {
    use anyhow::Context;
    if units.is_empty() {
        return Ok(());
    }
    Cmd::new(super::require("systemctl")?)
        .arg(format!("--root={}", root.display()))
        .arg("enable")
        .args(units)
        .timeout(std::time::Duration::from_secs(60))
        .run()
        .with_context(|| format!("enabling {} in {}", units.join(", "), root.display()))?;
    Ok(())
}

/// `systemctl enable --now UNIT`, as a user could paste it.
pub fn enable_now_line(unit: &str) -> String {
    Cmd::new("systemctl").args(["enable", "--now", unit]).display()
}

/// Enables UNIT and starts it now (`host setup`).
pub fn enable_now(unit: &str) -> anyhow::Result<()> {
    Cmd::new(super::require("systemctl")?).args(["enable", "--now", unit]).run()?;
    Ok(())
}
