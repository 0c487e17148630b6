//! cowsay: the tux saying the demo app's v2 message. Debian installs it in
//! /usr/games, which `tools::which` searches.

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "cowsay", debian: Some("cowsay"), rhel: Some("cowsay"), pip: None, version_args: &[] }];

/// `cowsay -f FIGURE TEXT`.
pub fn say(figure: &str, text: &str) -> anyhow::Result<String> {
    let program = super::require("cowsay")?;
    Ok(Cmd::new(program).args(["-f", figure]).arg(text).run()?.stdout)
}
