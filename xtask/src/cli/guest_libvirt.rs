//! The RHEL world's guests (`LibvirtGuests`, see `guests::libvirt`): their
//! part of `lab up`, `lab down`, `lab status` and `guest
//! console|destroy|start|exec NAME`.

use anyhow::bail;

use super::Session;
use crate::{
    guests::{
        channel::{GuestChannel, SshChannel},
        libvirt::{self, InstallWait, UpAction},
    },
    lab::Lab,
    store::Store,
};

/// The RHEL world's guests: libvirt domains installed by Anaconda.
pub struct LibvirtGuests;

impl crate::world::Guests for LibvirtGuests {
    fn programs(&self) -> &'static [&'static str] {
        &["virt-install", "virsh"]
    }

    /// Each guest with a remastered ISO is installed when libvirt has no
    /// domain for it (or `reinstall` names it), then started. Guests without
    /// an ISO yet are reported, not installed.
    fn up(&self, session: &Session, reinstall: &[String]) -> anyhow::Result<()> {
        super::guest::check_reinstall(session, reinstall)?;
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
            let action = libvirt::up(&session.lab, &session.store, name, &iso, wants_reinstall, &wait, &|line| {
                println!("{line}")
            })?;
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

    fn start(&self, session: &Session, name: &str) -> anyhow::Result<bool> {
        libvirt::start(&session.lab, &session.store, name)
    }

    /// Its domain and disk are kept.
    fn destroy(&self, session: &Session, name: &str) -> anyhow::Result<bool> {
        libvirt::destroy(&session.lab, &session.store, name)
    }

    fn console(&self, session: &Session, name: &str) -> anyhow::Result<()> {
        libvirt::console(&session.lab, &session.store, name)
    }

    fn status(&self, session: &Session) -> anyhow::Result<Vec<String>> {
        let mut lines = vec![format!("libvirt {}", session.lab.libvirt_uri)];
        for guest in &session.lab.guests {
            lines.push(libvirt::status_line(&session.lab, &session.store, &guest.name));
        }
        Ok(lines)
    }

    fn channel<'a>(&self, lab: &'a Lab, store: &'a Store) -> anyhow::Result<Box<dyn GuestChannel + 'a>> {
        Ok(Box::new(SshChannel::for_libvirt(lab, store)?))
    }

    fn supports(&self, what: &str) -> anyhow::Result<()> {
        bail!(
            "{what} runs against the local world's guests; this lab's guests are libvirt guests \
             (set `guests \"local\"` in lab.kdl's `backends` block)"
        )
    }
}
