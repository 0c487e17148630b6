//! firewall-cmd: opening the lab's ports on a RHEL host's firewalld
//! (`host setup`). Changes are permanent, then loaded with `--reload`, as
//! the original setup scripts did.

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "firewall-cmd",
    debian: Some("firewalld"),
    rhel: Some("firewalld"),
    pip: None,
    version_args: &["--version"],
}];

/// What one `firewall-cmd` call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `--permanent --add-port=5000/tcp`
    AddPort(String),
    /// `--permanent --add-service=cockpit`
    AddService(String),
    /// `--reload`: the permanent configuration becomes the running one.
    Reload,
}

/// The command line, as a user could paste it.
pub fn line(change: &Change) -> String {
    command("firewall-cmd", change).display()
}

pub fn apply(change: &Change) -> anyhow::Result<()> {
    command(&super::require("firewall-cmd")?.to_string_lossy(), change).run().map(drop)
}

fn command(program: &str, change: &Change) -> Cmd {
    let cmd = Cmd::new(program);
    match change {
        Change::AddPort(port) => cmd.arg("--permanent").arg(format!("--add-port={port}")),
        Change::AddService(service) => cmd.arg("--permanent").arg(format!("--add-service={service}")),
        Change::Reload => cmd.arg("--reload"),
    }
}
