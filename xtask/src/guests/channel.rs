//! How a scenario step or `guest exec` reaches a guest: one interface, a
//! root shell line in, its output and exit status out, with one
//! implementation per world. Local guests answer on their serial check shell
//! (`guests::shell`: no network, no key). libvirt guests answer over ssh as
//! root with the lab's own key: an ed25519 pair edgelab makes once per
//! store (`run/ssh/lab_ed25519`, mode 0600, never in an artifact) and the
//! kickstart installs as root's only authorized key (`sshkey --username=root`;
//! root's password stays locked). Host keys are pinned in the store's
//! `run/ssh/known_hosts` on first contact; a changed one is refused.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

use super::shell::{self, Output};
use crate::{
    lab::{Auto, Lab},
    store::Store,
    tools::{
        ssh::{self, Target},
        virsh::Virsh,
    },
};

/// A root shell line in a guest.
pub trait GuestChannel {
    /// Runs `command` as root in `guest`, waiting at most `timeout`.
    fn run(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<Output>;
}

/// The channel for the lab's world.
pub fn for_lab<'a>(lab: &'a Lab, store: &'a Store) -> anyhow::Result<Box<dyn GuestChannel + 'a>> {
    crate::world::guests(lab).channel(lab, store)
}

/// Local guests' serial check shell.
pub struct CheckShell<'a> {
    pub store: &'a Store,
}

impl GuestChannel for CheckShell<'_> {
    fn run(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<Output> {
        shell::run(self.store, guest, command, timeout)
    }
}

/// The lab's key pair.
#[derive(Debug, Clone)]
pub struct LabKey {
    pub private: PathBuf,
    /// `ssh-ed25519 AAAA... edgelab LAB`.
    pub public: String,
    pub public_file: PathBuf,
}

/// The store's lab key, made on first use.
pub fn lab_key(store: &Store, lab_name: &str) -> anyhow::Result<LabKey> {
    let dir = store.run_dir("ssh")?;
    let private = dir.join("lab_ed25519");
    let public_file = dir.join("lab_ed25519.pub");
    if !private.exists() || !public_file.exists() {
        std::fs::remove_file(&private).ok();
        std::fs::remove_file(&public_file).ok();
        ssh::keygen(&private, &format!("edgelab {lab_name}"))?;
    }
    let public = std::fs::read_to_string(&public_file)
        .with_context(|| format!("reading {}", public_file.display()))?
        .trim()
        .to_string();
    Ok(LabKey { private, public, public_file })
}

/// Finds a guest's address by its name.
pub type AddressOf<'a> = Box<dyn Fn(&str) -> anyhow::Result<String> + 'a>;

/// ssh as root with the lab's key; `address_of` finds a guest's address.
pub struct SshChannel<'a> {
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub port: u16,
    pub address_of: AddressOf<'a>,
}

impl<'a> SshChannel<'a> {
    /// libvirt guests: the address lab.kdl gives, else the one libvirt's
    /// DHCP lease shows (`virsh domifaddr`).
    pub fn for_libvirt(lab: &'a Lab, store: &'a Store) -> anyhow::Result<SshChannel<'a>> {
        let key = lab_key(store, &lab.name)?;
        let known_hosts = store.run_dir("ssh")?.join("known_hosts");
        let address_of = move |guest: &str| -> anyhow::Result<String> {
            let given = lab.guest(guest).map(|it| it.address);
            match given {
                None => bail!("no guest `{guest}` in the lab"),
                Some(Auto::Given(address)) => Ok(address.to_string()),
                Some(Auto::Auto) => Virsh::new(&lab.libvirt_uri).domifaddr(guest)?.with_context(|| {
                    format!("guest {guest} has no address yet (libvirt shows no DHCP lease; is it booted?)")
                }),
            }
        };
        Ok(SshChannel { key: key.private, known_hosts, port: 22, address_of: Box::new(address_of) })
    }

    fn target(&self, guest: &str) -> anyhow::Result<Target> {
        Ok(Target { host: (self.address_of)(guest)?, port: self.port, user: "root".into() })
    }
}

impl GuestChannel for SshChannel<'_> {
    fn run(&self, guest: &str, command: &str, timeout: Duration) -> anyhow::Result<Output> {
        let target = self.target(guest)?;
        let out = ssh::run(&target, &self.key, &self.known_hosts, command, timeout)
            .with_context(|| format!("running `{command}` in guest {guest}"))?;
        let text = format!("{}{}", out.stdout, out.stderr);
        let status = out.status.code().unwrap_or(-1);
        if status == 255 {
            bail!("{}", ssh_failure(guest, &target, &self.known_hosts, &out.stderr));
        }
        Ok(Output { status, text })
    }
}

/// ssh's own failure (exit 255), with what to do about it.
fn ssh_failure(guest: &str, target: &Target, known_hosts: &Path, stderr: &str) -> String {
    let said = stderr.trim();
    let hint =
        if said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || said.contains("Host key verification failed") {
            format!(
                "guest {guest}'s host key is not the one first seen at {}: if it was reinstalled, remove its line \
             from {} (`ssh-keygen -R {} -f {}`)",
                target.host,
                known_hosts.display(),
                target.host,
                known_hosts.display()
            )
        } else if said.contains("Permission denied") {
            format!(
                "guest {guest} refused the lab's key: it was installed with another one; reinstall it \
             (`cargo xtask lab up --reinstall {guest}`)"
            )
        } else {
            format!("could not reach guest {guest} at {}:{}", target.host, target.port)
        };
    format!("{hint}\nssh said: {said}")
}
