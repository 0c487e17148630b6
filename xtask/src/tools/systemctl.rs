//! `systemctl --root`: enables units in an offline root (a guest's
//! deployment), exactly as `systemctl enable` would inside the guest,
//! following each unit's `[Install]` section.

use std::{path::Path, time::Duration};

use anyhow::Context;

use super::Cmd;

/// Enables `units` inside `root` without booting it.
pub fn enable_offline(root: &Path, units: &[String]) -> anyhow::Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    super::require("systemctl")?;
    Cmd::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .arg("enable")
        .args(units)
        .timeout(Duration::from_secs(60))
        .run()
        .with_context(|| format!("enabling {} in {}", units.join(", "), root.display()))?;
    Ok(())
}
