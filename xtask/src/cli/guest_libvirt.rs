//! The RHEL world's side of `lab up`, `lab down` and `guest
//! console|destroy|start NAME`: libvirt guests (see `guests::libvirt`).

use anyhow::bail;

use super::Session;
use crate::guests::libvirt::{self, InstallWait, UpAction};

/// The guests' part of `lab up`: each guest with a remastered ISO is
/// installed when libvirt has no domain for it (or `reinstall` names it),
/// then started. Guests without an ISO yet are reported, not installed.
pub fn up(session: &Session, reinstall: &[String]) -> anyhow::Result<()> {
    for name in reinstall {
        if session.lab.guest(name).is_none() {
            bail!("--reinstall {name}: no such guest in the lab");
        }
    }
    let wait = InstallWait::default();
    let current = session.current()?;
    for guest in &session.lab.guests {
        let name = guest.name.as_str();
        let iso = match libvirt::iso_for(&session.store, &current, name) {
            Ok(iso) => iso,
            Err(err) => {
                println!("guest {name}: not installed ({err:#})");
                continue;
            }
        };
        let wants_reinstall = reinstall.iter().any(|it| it == name);
        let action =
            libvirt::up(&session.lab, &session.store, name, &iso, wants_reinstall, &wait, &|line| println!("{line}"))?;
        match action {
            UpAction::Installed => {
                println!("guest {name}: installed and started (console: cargo xtask guest console {name})")
            }
            UpAction::Reinstalled => println!("guest {name}: reinstalled and started"),
            UpAction::Started => println!("guest {name}: started"),
            UpAction::AlreadyRunning => {}
        }
    }
    Ok(())
}

/// The guests' part of `lab down`: every running guest destroyed (its domain
/// and disk are kept).
pub fn down(session: &Session) -> anyhow::Result<()> {
    for guest in &session.lab.guests {
        if libvirt::destroy(&session.lab, &session.store, &guest.name)? {
            println!("guest {}: destroyed", guest.name);
        }
    }
    Ok(())
}

pub fn start(session: &Session, name: &str) -> anyhow::Result<()> {
    if libvirt::start(&session.lab, &session.store, name)? {
        println!("guest {name}: started");
    } else {
        println!("guest {name}: already running");
    }
    Ok(())
}

pub fn destroy(session: &Session, name: &str) -> anyhow::Result<()> {
    if libvirt::destroy(&session.lab, &session.store, name)? {
        println!("guest {name}: destroyed");
    } else {
        println!("guest {name}: not running");
    }
    Ok(())
}

pub fn console(session: &Session, name: &str) -> anyhow::Result<()> {
    libvirt::console(&session.lab, &session.store, name)
}
