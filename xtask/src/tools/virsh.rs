//! virsh: the life of a libvirt guest after virt-install defined it
//! (RHEL world): its state, start, console, destroy and undefine.
//!
//! Every call names the domain; nothing here lists domains, so a guest is
//! always the one lab.kdl names, never "the first one `virsh list` shows".
//! Every call names the lab's connection too (`--connect`, lab.kdl's
//! `libvirt uri=...`), so a remote host's guests are driven the same way.

use super::{Cmd, Output, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "virsh",
    debian: Some("libvirt-clients"),
    rhel: Some("libvirt-client"),
    pip: None,
    version_args: &["--version"],
}];

/// A domain's state as `virsh domstate` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomState {
    Running,
    ShutOff,
    /// Any other state (`paused`, `in shutdown`, `crashed`, `pmsuspended`...).
    Other(String),
}

/// virsh on one libvirt connection.
#[derive(Debug, Clone, Copy)]
pub struct Virsh<'a> {
    pub uri: &'a str,
}

impl<'a> Virsh<'a> {
    pub fn new(uri: &'a str) -> Virsh<'a> {
        Virsh { uri }
    }

    /// The domain's state, or `None` when no domain has that name.
    pub fn domstate(&self, name: &str) -> anyhow::Result<Option<DomState>> {
        let Some(out) = self.query(&["domstate", name])? else {
            return Ok(None);
        };
        Ok(Some(match out.stdout.trim() {
            "running" => DomState::Running,
            "shut off" => DomState::ShutOff,
            other => DomState::Other(other.to_string()),
        }))
    }

    /// The domain's UUID, or `None` when no domain has that name.
    pub fn domuuid(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self.query(&["domuuid", name])?.map(|out| out.stdout.trim().to_string()))
    }

    /// The guest's IPv4 address from libvirt's DHCP lease (`virsh
    /// domifaddr NAME`), or `None` while it has none.
    pub fn domifaddr(&self, name: &str) -> anyhow::Result<Option<String>> {
        let Some(out) = self.query(&["domifaddr", name])? else {
            anyhow::bail!("libvirt has no domain `{name}`");
        };
        // ` vnet0  52:54:00:6b:3c:58  ipv4  192.168.122.11/24` under a header.
        Ok(out.stdout.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, "ipv4", address] => address.split('/').next().map(str::to_string),
                _ => None,
            }
        }))
    }

    /// `virsh start NAME`.
    pub fn start(&self, name: &str) -> anyhow::Result<()> {
        self.command()?.args(["start", name]).run()?;
        Ok(())
    }

    /// `virsh destroy NAME`: powers the guest off at once, like pulling the plug.
    pub fn destroy(&self, name: &str) -> anyhow::Result<()> {
        self.command()?.args(["destroy", name]).run()?;
        Ok(())
    }

    /// `virsh undefine NAME --remove-all-storage`: the domain and its disks go.
    pub fn undefine_with_storage(&self, name: &str) -> anyhow::Result<()> {
        self.command()?.args(["undefine", name, "--remove-all-storage"]).run()?;
        Ok(())
    }

    /// `virsh console NAME` on the user's terminal (Ctrl-] leaves).
    pub fn console(&self, name: &str) -> anyhow::Result<()> {
        let status = self.command()?.args(["console", name]).run_inherit()?;
        if !status.success() {
            anyhow::bail!("`virsh --connect {} console {name}` failed ({status})", self.uri);
        }
        Ok(())
    }

    fn command(&self) -> anyhow::Result<Cmd> {
        Ok(Cmd::new(super::require("virsh")?).args(["--connect", self.uri]))
    }

    /// Runs a query about one domain; `None` when virsh says there is no such
    /// domain ("failed to get domain"), an error for anything else.
    fn query(&self, args: &[&str]) -> anyhow::Result<Option<Output>> {
        let cmd = self.command()?.args(args);
        let out = cmd.run_unchecked()?;
        if out.status.success() {
            return Ok(Some(out));
        }
        if out.stderr.contains("failed to get domain") || out.stderr.contains("Domain not found") {
            return Ok(None);
        }
        anyhow::bail!("{}", super::failure_message(&cmd.display(), &out))
    }
}
