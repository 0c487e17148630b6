//! Processes edgelab leaves running (guest launchers, services) and ends by
//! pid: starting this program again detached, `/proc/PID/stat` read (the one
//! reader of it), liveness, and signals through rustix.

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

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z`, ...
    pub state: char,
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// When it started, in clock ticks after boot (with the pid, its identity).
    pub start_time: u64,
}

/// `/proc/PID/stat` read; `None` when there is no such process.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The fields of a stat line. The command name may hold spaces and
/// parentheses; the fields follow the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok());
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        utime: number(11)?,
        stime: number(12)?,
        start_time: number(19)?,
    })
}

/// Clock ticks per second, the unit of `ProcStat`'s times.
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

impl ProcStat {
    /// Running or sleeping: not a zombie, not dead.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Whether `pid` is a live process (a zombie is not).
pub fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.is_live())
}

/// Live processes other than this one whose `/proc/PID` folder satisfies
/// `test` (the one walk over /proc).
pub fn live_others(test: impl Fn(&Path) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            (pid != me && test(&entry.path()) && is_alive(pid)).then_some(pid)
        })
        .collect()
}

/// Live processes other than this one with an argument that contains
/// `needle` (a path unique to what they work on).
pub fn with_arg_containing(needle: &str) -> Vec<u32> {
    live_others(|proc_dir| {
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        cmdline.split(|byte| *byte == 0).any(|arg| String::from_utf8_lossy(arg).contains(needle))
    })
}

/// Sends `signal` to `pid`; a process already gone is not an error.
fn signal(pid: u32, signal: rustix::process::Signal) -> anyhow::Result<()> {
    let Some(target) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        anyhow::bail!("{pid} is not a process id");
    };
    match rustix::process::kill_process(target, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(err) => anyhow::bail!("signalling pid {pid}: {err}"),
    }
}

/// SIGTERM, for a process that should stop cleanly.
pub fn terminate(pid: u32) -> anyhow::Result<()> {
    signal(pid, rustix::process::Signal::TERM)
}

/// SIGKILL, like `virsh destroy` pulling the plug.
pub fn kill_hard(pid: u32) -> anyhow::Result<()> {
    signal(pid, rustix::process::Signal::KILL)
}

/// SIGTERM, up to `grace` to end, then SIGKILL and a short wait for it to
/// be gone (its sockets close, so a restart can bind them).
pub fn stop(pid: u32, grace: Duration) {
    terminate(pid).ok();
    if wait_gone(pid, grace) {
        return;
    }
    kill_hard(pid).ok();
    wait_gone(pid, Duration::from_secs(2));
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

#[cfg(test)]
mod tests {
    #[test]
    fn stat_lines_with_awkward_names() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 98765 1000 10 0 0";
        let stat = super::parse_stat(line).unwrap();
        assert_eq!((stat.state, stat.utime, stat.stime, stat.start_time), ('S', 7, 3, 98765));
        assert!(super::parse_stat("4242 (short) S 1").is_none());
        let me = super::proc_stat(std::process::id()).unwrap();
        assert!(me.start_time > 0 && super::is_alive(std::process::id()));
        assert!(super::clock_ticks_per_second() > 0);
    }

    #[test]
    fn finds_a_process_by_an_argument() {
        let needle = format!("/tmp/edgelab-with-arg-{}", std::process::id());
        // sh keeps the extra argument as its $0 while it waits for sleep.
        let mut child =
            std::process::Command::new("sh").args(["-c", "sleep 30", &format!("{needle}/disk.img")]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let found = super::with_arg_containing(&needle);
        child.kill().ok();
        child.wait().ok();
        assert_eq!(found, vec![child.id()]);
        assert!(super::with_arg_containing(&format!("{needle}-none")).is_empty());
    }
}
