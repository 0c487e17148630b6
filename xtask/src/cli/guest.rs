//! `cargo xtask guest console|destroy|start|exec|upgrade NAME`, `lab shell`, `lab
//! exec`, and the local world's guests (`LocalGuests`: their part of `lab
//! up`, `lab down` and `lab status`).

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
};

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::{
    graph::{StageId, StageKind},
    guests::{
        self, DiskAction,
        channel::{CheckShell, GuestChannel},
        netns,
    },
    lab::Lab,
    store::Store,
    tools::ip,
};

/// The local world's guests: qemu under edgelab's launcher, in the lab's
/// network namespace.
pub struct LocalGuests;

impl crate::world::Guests for LocalGuests {
    fn programs(&self) -> &'static [&'static str] {
        &["qemu-system-x86_64", "debugfs", "e2fsck", "ip", "unshare"]
    }

    /// The lab network, each guest's disk, and its launcher. Guests with
    /// neither a disk nor a current install artifact are not started (a
    /// guest whose install went stale, as after a channel promotion, keeps
    /// its disk and starts from it).
    fn up(&self, session: &Session, reinstall: &[String]) -> anyhow::Result<()> {
        check_reinstall(session, reinstall)?;
        let current = session.current()?;
        let installed: Vec<&str> = session
            .lab
            .guests
            .iter()
            .map(|guest| guest.name.as_str())
            .filter(|name| {
                current.is_built(&session.store, &StageId::new(StageKind::Install, *name))
                    || guests::guest_dir(&session.store, name).is_ok_and(|dir| dir.join("disk.img").exists())
            })
            .collect();
        if installed.is_empty() {
            return Ok(());
        }
        let segment = netns::segment(&session.lab);
        netns::up(&session.store, &segment)?;
        for name in installed {
            let wants_reinstall = reinstall.iter().any(|it| it == name);
            if wants_reinstall {
                guests::destroy(&session.store, name)?;
            }
            match guests::prepare(&session.lab, &session.store, &current, name, wants_reinstall)? {
                DiskAction::Created => println!("guest {name}: disk created from its install"),
                DiskAction::Reinstalled => println!("guest {name}: reinstalled"),
                DiskAction::KeptStale => println!(
                    "guest {name}: its install changed; keeping its disk (`lab up --reinstall {name}` replaces it)"
                ),
                DiskAction::Kept => {}
            }
            if guests::start(&session.store, name, &launcher_args(session, name))? {
                println!("guest {name}: started (console: cargo xtask guest console {name})");
            }
        }
        Ok(())
    }

    fn start(&self, session: &Session, name: &str) -> anyhow::Result<bool> {
        let segment = netns::segment(&session.lab);
        netns::up(&session.store, &segment)?;
        guests::prepare(&session.lab, &session.store, &session.current()?, name, false)?;
        guests::start(&session.store, name, &launcher_args(session, name))
    }

    fn destroy(&self, session: &Session, name: &str) -> anyhow::Result<bool> {
        guests::destroy(&session.store, name)
    }

    fn console(&self, session: &Session, name: &str) -> anyhow::Result<()> {
        local_console(session, name)
    }

    fn status(&self, session: &Session) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        if let Some(state) = guests::load_accel_state(&session.store) {
            lines.push(format!("accelerator for accel \"auto\": {} ({})", state.accel.as_str(), state.reason));
        }
        for guest in &session.lab.guests {
            lines.extend(local_status(session, &guest.name)?);
        }
        Ok(lines)
    }

    fn channel<'a>(&self, _lab: &'a Lab, store: &'a Store) -> anyhow::Result<Box<dyn GuestChannel + 'a>> {
        Ok(Box::new(CheckShell { store }))
    }

    fn supports(&self, _what: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// `--reinstall NAME` names a guest of the lab.
pub fn check_reinstall(session: &Session, reinstall: &[String]) -> anyhow::Result<()> {
    for name in reinstall {
        if session.lab.guest(name).is_none() {
            bail!("--reinstall {name}: no such guest in the lab");
        }
    }
    Ok(())
}

/// A local guest's `lab status` lines: running or stopped, its last boot's
/// verdict and accelerator, host faults that stopped boots.
fn local_status(session: &Session, name: &str) -> anyhow::Result<Vec<String>> {
    let dir = guests::guest_dir(&session.store, name)?;
    let state = guests::load_state(&dir);
    let running = state.as_ref().is_some_and(guests::is_running);
    let boots = guests::boots(&dir);
    let last = boots.iter().rev().find(|boot| boot.host_fault.is_none()).map(|boot| {
        let verdict = match (boot.healthy, boot.verdict_seen) {
            (true, _) => "healthy",
            (false, true) => "red",
            (false, false) => "without a verdict",
        };
        format!(", last boot {verdict} after {:.0}s under {} ({})", boot.seconds, boot.accel.as_str(), boot.reason)
    });
    let faults = match boots.iter().filter(|boot| boot.host_fault.is_some()).count() {
        0 => String::new(),
        n => format!(", {n} boot(s) stopped by a host fault (not counted)"),
    };
    let what = if running { "running" } else { "stopped" };
    let mut lines = vec![format!("guest {name}: {what}{}{faults}", last.unwrap_or_default())];
    if let Some(state) = state.filter(|_| running)
        && let Some(accel) = state.accel
    {
        lines.push(format!("  accelerator {} ({})", accel.as_str(), state.accel_reason.unwrap_or_default()));
    }
    Ok(lines)
}

/// The end of `lab down`: the lab network removed (after the services in it).
pub fn network_down(session: &Session) -> anyhow::Result<()> {
    if let Some(netns) = netns::down(&session.store)? {
        println!("network namespace {netns}: removed");
    }
    Ok(())
}

/// `guest start NAME`.
pub fn start(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    match crate::world::guests(&session.lab).start(&session, name)? {
        true => println!("guest {name}: started"),
        false => println!("guest {name}: already running"),
    }
    Ok(())
}

/// `guest destroy NAME`.
pub fn destroy(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    match crate::world::guests(&session.lab).destroy(&session, name)? {
        true => println!("guest {name}: destroyed"),
        false => println!("guest {name}: not running"),
    }
    Ok(())
}

/// `guest console NAME`.
pub fn console(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    crate::world::guests(&session.lab).console(&session, name)
}

/// Shows a local guest's recent console output, then connects to it;
/// Ctrl-] leaves.
fn local_console(session: &Session, name: &str) -> anyhow::Result<()> {
    let dir = guests::guest_dir(&session.store, name)?;
    let log = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines[lines.len().saturating_sub(25)..] {
        println!("{line}");
    }
    let socket = dir.join("console.sock");
    let mut stream = UnixStream::connect(&socket)
        .with_context(|| format!("guest {name} is not running (no console at {})", socket.display()))?;
    eprintln!("-- connected to {name}'s serial console; Ctrl-] leaves --");
    let raw = RawTerminal::enter();
    let mut reader = stream.try_clone()?;
    let printer = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdout = std::io::stdout();
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let mut stdin = std::io::stdin();
    loop {
        let n = stdin.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(pos) = buf[..n].iter().position(|byte| *byte == 0x1d) {
            stream.write_all(&buf[..pos]).ok();
            break;
        }
        if stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    drop(raw);
    stream.shutdown(std::net::Shutdown::Both).ok();
    printer.join().ok();
    eprintln!("\n-- left {name}'s console --");
    Ok(())
}

/// `guest upgrade NAME...|--all [--json]`: each guest, in parallel, stages
/// its channel's commit as published, reboots into it and waits for
/// greenboot's verdict (`guests::upgrade`); a rollback exits 1.
pub fn upgrade(global: &Global, names: &[String], all: bool, json: bool) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    crate::world::guests(&session.lab).supports("`guest upgrade`")?;
    let names: Vec<String> = match all {
        true => {
            let (running, stopped): (Vec<String>, Vec<String>) = session
                .lab
                .guests
                .iter()
                .map(|guest| guest.name.clone())
                .partition(|name| guests::runs(&session.store, name));
            for name in &stopped {
                eprintln!("guest {name}: not running, left as it is");
            }
            running
        }
        false => names.to_vec(),
    };
    for name in &names {
        known_guest(&session, name)?;
        if !guests::runs(&session.store, name) {
            bail!("guest {name} is not running: start it with `cargo xtask guest start {name}`");
        }
    }
    if names.is_empty() {
        bail!("no guest of the lab is running: `cargo xtask lab up` starts them");
    }
    if crate::services::running_pid(&session.store, crate::services::file_server::NAME).is_none() {
        bail!("the lab's file server is not running, so no guest could fetch its update: run `cargo xtask lab up`");
    }
    let target = channel_target(&session)?;
    let reports = finish_upgrades(upgrade_guests(&session, &names, &target, global.quiet), json)?;
    if reports.iter().any(|report| report.verdict == guests::upgrade::Verdict::RolledBack) {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints the reports (text, or JSON on stdout); fails naming each guest
/// whose upgrade did not finish.
pub fn finish_upgrades(
    results: Vec<(String, anyhow::Result<guests::upgrade::Report>)>,
    json: bool,
) -> anyhow::Result<Vec<guests::upgrade::Report>> {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (name, result) in results {
        match result {
            Ok(report) => reports.push(report),
            Err(err) => failures.push(format!("{name}: {err:#}")),
        }
    }
    match json {
        true => println!("{}", serde_json::to_string_pretty(&reports)?),
        false => reports.iter().for_each(|report| print!("{}", guests::upgrade::render(report))),
    }
    if !failures.is_empty() {
        bail!("the upgrade did not finish:\n{}", failures.join("\n"));
    }
    Ok(reports)
}

/// Upgrades `names` to `target` in parallel, a progress line per phase on
/// stderr (prefixed with the guest's name) unless `quiet`.
pub fn upgrade_guests(
    session: &Session,
    names: &[String],
    target: &guests::upgrade::Target,
    quiet: bool,
) -> Vec<(String, anyhow::Result<guests::upgrade::Report>)> {
    let ops = guests::upgrade::GuestOps { lab: &session.lab, store: &session.store };
    std::thread::scope(|scope| {
        let running: Vec<_> = names
            .iter()
            .map(|name| {
                let ops = &ops;
                let say = move |line: &str| {
                    if !quiet {
                        eprintln!("{name}: {line}");
                    }
                };
                (name.clone(), scope.spawn(move || ops.upgrade(name, target, &say)))
            })
            .collect();
        running
            .into_iter()
            .map(|(name, handle)| {
                let result = handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the upgrade of {name} panicked")));
                (name, result)
            })
            .collect()
    })
}

/// The commit guests follow: the channel the kickstart installs from, as
/// the current publish has it.
pub fn channel_target(session: &Session) -> anyhow::Result<guests::upgrade::Target> {
    let channel =
        session.lab.install_channel().context("the kickstart installs from no channel, so guests follow none")?;
    let stage = StageId::new(StageKind::Publish, "served");
    let manifest = session.current()?.manifest(&session.store, &stage).with_context(|| {
        format!("channel `{}` is not published as the lab stands: run `cargo xtask lab up`", channel.name)
    })?;
    let published = crate::stages::publish::published_channel(&manifest.extra, &channel.name)?;
    Ok(guests::upgrade::Target { channel: published.name, image: published.image, commit: published.commit })
}

/// `guest exec NAME -- CMD`: a command as root in the guest, through its
/// check shell; exits with the command's status.
pub fn guest_exec(global: &Global, name: &str, timeout: u64, command: &[String]) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    // Each word quoted: the guest's shell runs exactly this argv.
    let line = crate::tools::shell_line(command);
    // Local guests: the check shell; libvirt guests: ssh as root with the lab's key.
    let channel = guests::channel::for_lab(&session.lab, &session.store)?;
    let output = channel.run(name, &line, std::time::Duration::from_secs(timeout))?;
    print!("{}", output.text);
    if output.status != 0 {
        std::process::exit(output.status.clamp(1, 255));
    }
    Ok(())
}

/// The hidden `guest run-launcher NAME`: the guest's bootloader loop.
pub fn run_launcher(global: &Global, name: &str, accel: Option<&str>) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    let dir = guests::guest_dir(&session.store, name)?;
    let accel = match accel {
        Some(word) => {
            let setting = crate::lab::AccelSetting::from_word(word)
                .with_context(|| format!("--accel {word}: expected auto, kvm or tcg"))?;
            guests::accel_for(setting, &format!("--accel {word}"), &session.store)?
        }
        None => guests::accel(&session.lab, &session.store)?,
    };
    guests::launcher::run(&dir, &session.store, accel)
}

/// `lab shell`: a shell inside the lab's network namespace.
pub fn shell(global: &Global) -> anyhow::Result<()> {
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
    exec(global, &[shell])
}

/// `lab exec -- CMD`: a command inside the lab's network namespace.
pub fn exec(global: &Global, command: &[String]) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let segment = netns::segment(&session.lab);
    if !ip::netns_exists(&segment.netns) {
        bail!("the lab network (namespace {}) is not up: run `cargo xtask lab up`", segment.netns);
    }
    let (program, args) = command.split_first().context("lab exec: say which command to run")?;
    let status = ip::netns_exec(&segment.netns, program).args(args).run_inherit()?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn launcher_args(session: &Session, name: &str) -> Vec<String> {
    guests::launcher_args(&session.lab, &session.store, name)
}

fn known_guest(session: &Session, name: &str) -> anyhow::Result<()> {
    if session.lab.guest(name).is_none() {
        let names: Vec<&str> = session.lab.guests.iter().map(|guest| guest.name.as_str()).collect();
        bail!("no guest `{name}` in the lab; guests are: {}", names.join(", "));
    }
    Ok(())
}

/// The terminal in raw mode while it lives (keys go to the guest as typed).
struct RawTerminal {
    saved: Option<rustix::termios::Termios>,
}

impl RawTerminal {
    fn enter() -> RawTerminal {
        let stdin = std::io::stdin();
        if !rustix::termios::isatty(&stdin) {
            return RawTerminal { saved: None };
        }
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return RawTerminal { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        match rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw) {
            Ok(()) => RawTerminal { saved: Some(saved) },
            Err(_) => RawTerminal { saved: None },
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, saved).ok();
        }
    }
}
