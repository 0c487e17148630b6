//! `edgelab-serve`, the counting file server in host/: built in release
//! mode from this workspace, then run in the background (the lab service,
//! the benchmark) or in the foreground (`cargo xtask serve`).

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ExitStatus},
};

use anyhow::Context;

use super::Cmd;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub root: PathBuf,
    pub listen: SocketAddr,
    /// No per-request lines (the summary is still written).
    pub quiet: bool,
    /// Request lines and summary go to this file instead of stdout.
    pub log: Option<PathBuf>,
}

/// Builds `edgelab-serve` (release) if needed and returns its path.
pub fn binary() -> anyhow::Result<PathBuf> {
    super::cargo::build_release_binary("edgelab-host", "edgelab-serve")
}

/// Starts the server in the background, its stdout and stderr in `output`.
pub fn spawn(binary: &Path, args: &ServeArgs, output: &Path) -> anyhow::Result<Child> {
    command(binary, args).spawn_logged(output)
}

/// Runs the server in the foreground, its request lines on the terminal,
/// until it exits. Ctrl-C reaches the server, which prints its summary and
/// exits; meanwhile this process ignores Ctrl-C, so the summary is printed
/// before the shell prompt comes back.
pub fn run_foreground(binary: &Path, args: &ServeArgs) -> anyhow::Result<ExitStatus> {
    let display = command(binary, args).display();
    let mut cli = std::process::Command::new(binary);
    cli.args(arguments(args));
    let mut child = cli.spawn().with_context(|| format!("starting `{display}`"))?;
    // SAFETY: replacing a signal disposition has no memory-safety
    // preconditions; the previous one is put back below.
    let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = child.wait();
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGINT, previous) };
    status.with_context(|| format!("waiting for `{display}`"))
}

fn command(binary: &Path, args: &ServeArgs) -> Cmd {
    Cmd::new(binary).args(arguments(args))
}

fn arguments(args: &ServeArgs) -> Vec<OsString> {
    let mut arguments: Vec<OsString> = vec![
        "--root".into(),
        args.root.clone().into(),
        "--address".into(),
        args.listen.ip().to_string().into(),
        "--port".into(),
        args.listen.port().to_string().into(),
    ];
    if args.quiet {
        arguments.push("--quiet".into());
    }
    if let Some(log) = &args.log {
        arguments.push("--log".into());
        arguments.push(log.clone().into());
    }
    arguments
}
