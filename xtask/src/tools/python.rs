//! `python3 -m http.server`, the folder server everyone has, for
//! `cargo xtask bench serve`.

use std::{net::SocketAddr, path::Path, process::Child};

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "python3",
    debian: Some("python3"),
    rhel: Some("python3"),
    pip: None,
    version_args: &["--version"],
}];

/// Serves `root` on `listen`; it logs every request on stderr, into `log`.
pub fn spawn_http_server(root: &Path, listen: SocketAddr, log: &Path) -> anyhow::Result<Child> {
    super::require("python3")?;
    Cmd::new("python3")
        .args(["-u", "-m", "http.server"])
        .arg(listen.port().to_string())
        .arg("--bind")
        .arg(listen.ip().to_string())
        .arg("--directory")
        .arg(root)
        .spawn_logged(log)
}

/// `Python 3.x.y`.
pub fn version() -> anyhow::Result<String> {
    let output = Cmd::new("python3").arg("--version").run()?;
    Ok(output.stdout.trim().to_string())
}
