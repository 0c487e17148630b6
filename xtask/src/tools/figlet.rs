//! figlet: the banner on the demo app's page.

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "figlet", debian: Some("figlet"), rhel: Some("figlet"), pip: None, version_args: &["-v"] }];

/// `text` drawn in figlet's standard font.
pub fn banner(text: &str) -> anyhow::Result<String> {
    super::require("figlet")?;
    Ok(Cmd::new("figlet").args(["-f", "standard", "-w", "120"]).arg(text).run()?.stdout)
}
