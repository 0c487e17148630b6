//! figlet: the banner on the demo app's page.

use super::Cmd;

/// `text` drawn in figlet's standard font.
pub fn banner(text: &str) -> anyhow::Result<String> {
    super::require("figlet")?;
    Ok(Cmd::new("figlet").args(["-f", "standard", "-w", "120"]).arg(text).run()?.stdout)
}
