//! Processes edgelab leaves running (guest launchers) and ends by pid:
//! starting this program again detached, checking a pid, killing it hard.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;

use super::Cmd;

/// Starts this program with `args` in the background (own process group,
/// output to `log`) and returns its pid. A thread reaps it if it ends
/// while this process still runs, so it never lingers as a zombie.
pub fn spawn_self_detached(args: &[String], log: &Path) -> anyhow::Result<u32> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    // Rebuilt while running (`cargo xtask` in another terminal): Linux names
    // the old binary "PATH (deleted)"; the new one at PATH is this program.
    let exe = match exe.to_str().and_then(|path| path.strip_suffix(" (deleted)")) {
        Some(path) if Path::new(path).exists() => PathBuf::from(path),
        _ => exe,
    };
    let mut child = Cmd::new(exe).args(args).spawn_logged(log)?;
    let pid = child.id();
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

/// Whether `pid` is a live process (a zombie is not).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(false),
        Err(_) => false,
    }
}

/// SIGKILL, like `virsh destroy` pulling the plug.
pub fn kill_hard(pid: u32) -> anyhow::Result<()> {
    // SAFETY: kill(2) with a pid and a signal number has no memory effects.
    let res = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    if res != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            anyhow::bail!("killing pid {pid}: {err}");
        }
    }
    Ok(())
}

/// Waits until `pid` is gone, at most `limit`.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !is_alive(pid)
}
