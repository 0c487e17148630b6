//! The distribution registry binary (Debian `docker-registry`): the local
//! world's lab registry. Knows its config file format and how to start it.

use std::{net::SocketAddr, path::Path, process::Child};

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "docker-registry",
    debian: Some("docker-registry"),
    rhel: None,
    pip: None,
    version_args: &["--version"],
}];

/// The registry's config: filesystem storage under `storage`, deletes
/// allowed (so a lost-data repair can be tested), listening on `listen`.
pub fn render_config(storage: &Path, listen: SocketAddr) -> String {
    format!(
        "# Written by edgelab; regenerated from lab.kdl on every `lab up`.\n\
         version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {listen}\n",
        storage.display()
    )
}

/// Starts `docker-registry serve CONFIG` in the background, logging to `log`.
pub fn spawn(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let program = super::require("docker-registry")?;
    Cmd::new(program).arg("serve").arg(config).spawn_logged(log)
}
