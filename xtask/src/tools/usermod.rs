//! usermod: adding a user to a supplementary group (`host setup` puts the
//! user in `weldr`, so composer-cli works without root).

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "usermod", debian: Some("passwd"), rhel: Some("shadow-utils"), pip: None, version_args: &[] }];

/// `usermod -aG GROUP USER`, as a user could paste it.
pub fn add_to_group_line(user: &str, group: &str) -> String {
    add_to_group_cmd("usermod", user, group).display()
}

pub fn add_to_group(user: &str, group: &str) -> anyhow::Result<()> {
    add_to_group_cmd(&super::require("usermod")?.to_string_lossy(), user, group).run().map(drop)
}

fn add_to_group_cmd(program: &str, user: &str, group: &str) -> Cmd {
    Cmd::new(program).args(["-aG", group, user])
}
