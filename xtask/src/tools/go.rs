//! `go` (Debian golang-go): builds and runs the benchmark's baseline, the
//! original demo's counting Go file server (bench/servers/go/main.go).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "go", debian: Some("golang-go"), rhel: Some("golang"), pip: None, version_args: &["version"] }];

/// Builds the single-file, dependency-free program `source` into
/// `work_dir/NAME`, offline, with Go's caches inside `work_dir`.
pub fn build(source: &Path, work_dir: &Path) -> anyhow::Result<PathBuf> {
    super::require("go")?;
    let name = source.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_else(|| "main".into());
    let binary = work_dir.join(name);
    Cmd::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(source)
        .env("GOCACHE", work_dir.join("go-cache"))
        .env("GOPATH", work_dir.join("go-path"))
        // No module, no dependency: nothing to download.
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .timeout(Duration::from_secs(600))
        .run()
        .with_context(|| format!("building {}", source.display()))?;
    Ok(binary)
}

/// Runs the built counting server on `root`, logging its request lines to
/// `request_log` and its other output to `log`.
pub fn spawn_counting_server(
    binary: &Path,
    root: &Path,
    listen: SocketAddr,
    request_log: &Path,
    log: &Path,
) -> anyhow::Result<Child> {
    Cmd::new(binary)
        .arg("-root")
        .arg(root)
        .arg("-address")
        .arg(listen.ip().to_string())
        .arg("-port")
        .arg(listen.port().to_string())
        .arg("-log")
        .arg(request_log)
        .spawn_logged(log)
}

/// `go version go1.19.8 linux/amd64`.
pub fn version() -> anyhow::Result<String> {
    Ok(Cmd::new("go").arg("version").run()?.stdout.trim().to_string())
}
