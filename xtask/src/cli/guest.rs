//! `cargo xtask guest console|destroy|start NAME`, `lab shell`, `lab exec`,
//! and the guests' part of `lab up` and `lab down` (local world).

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
};

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::{
    graph::{StageId, StageKind},
    guests::{self, DiskAction, netns},
    lab::Backend,
    tools::ip,
};

/// The guests' part of `lab up`: the lab network, each guest's disk, and
/// its launcher. Guests without an install artifact are reported, not started.
pub fn up(session: &Session, reinstall: &[String]) -> anyhow::Result<()> {
    if session.lab.backends.for_guests() == Backend::Rhel {
        return super::guest_libvirt::up(session, reinstall);
    }
    for name in reinstall {
        if session.lab.guest(name).is_none() {
            bail!("--reinstall {name}: no such guest in the lab");
        }
    }
    let current = session.current()?;
    let installed: Vec<&str> = session
        .lab
        .guests
        .iter()
        .map(|guest| guest.name.as_str())
        .filter(|name| current.is_built(&session.store, &StageId::new(StageKind::Install, *name)))
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

/// The guests' part of `lab down`: every guest destroyed.
pub fn destroy_all(session: &Session) -> anyhow::Result<()> {
    if session.lab.backends.for_guests() == Backend::Rhel {
        return super::guest_libvirt::down(session);
    }
    for guest in &session.lab.guests {
        if guests::destroy(&session.store, &guest.name)? {
            println!("guest {}: destroyed", guest.name);
        }
    }
    Ok(())
}

/// The end of `lab down`: the lab network removed (after the services in it).
pub fn network_down(session: &Session) -> anyhow::Result<()> {
    if let Some(netns) = netns::down(&session.store)? {
        println!("network namespace {netns}: removed");
    }
    Ok(())
}

pub fn start(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    if session.lab.backends.for_guests() == Backend::Rhel {
        return super::guest_libvirt::start(&session, name);
    }
    let segment = netns::segment(&session.lab);
    netns::up(&session.store, &segment)?;
    guests::prepare(&session.lab, &session.store, &session.current()?, name, false)?;
    if guests::start(&session.store, name, &launcher_args(&session, name))? {
        println!("guest {name}: started");
    } else {
        println!("guest {name}: already running");
    }
    Ok(())
}

pub fn destroy(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    if session.lab.backends.for_guests() == Backend::Rhel {
        return super::guest_libvirt::destroy(&session, name);
    }
    if guests::destroy(&session.store, name)? {
        println!("guest {name}: destroyed");
    } else {
        println!("guest {name}: not running");
    }
    Ok(())
}

/// Shows the console's recent output, then connects to it; Ctrl-] leaves.
pub fn console(global: &Global, name: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    known_guest(&session, name)?;
    if session.lab.backends.for_guests() == Backend::Rhel {
        return super::guest_libvirt::console(&session, name);
    }
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
    saved: Option<libc::termios>,
}

impl RawTerminal {
    fn enter() -> RawTerminal {
        // SAFETY: tcgetattr/tcsetattr on stdin with a valid termios struct.
        unsafe {
            let mut term: libc::termios = std::mem::zeroed();
            if libc::isatty(0) == 0 || libc::tcgetattr(0, &mut term) != 0 {
                return RawTerminal { saved: None };
            }
            let saved = term;
            libc::cfmakeraw(&mut term);
            libc::tcsetattr(0, libc::TCSANOW, &term);
            RawTerminal { saved: Some(saved) }
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restores the attributes read in `enter`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}
