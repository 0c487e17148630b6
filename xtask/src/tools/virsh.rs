//! virsh: the life of a libvirt guest after virt-install defined it
//! (RHEL world): its state, start, console, destroy and undefine.
//!
//! Every call names the domain; nothing here lists domains, so a guest is
//! always the one lab.kdl names, never "the first one `virsh list` shows".

use super::{Cmd, Output, Program, virt_install::CONNECT};

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

/// The domain's state, or `None` when no domain has that name.
pub fn domstate(name: &str) -> anyhow::Result<Option<DomState>> {
    let Some(out) = query(&["domstate", name])? else {
        return Ok(None);
    };
    Ok(Some(match out.stdout.trim() {
        "running" => DomState::Running,
        "shut off" => DomState::ShutOff,
        other => DomState::Other(other.to_string()),
    }))
}

/// The domain's UUID, or `None` when no domain has that name.
pub fn domuuid(name: &str) -> anyhow::Result<Option<String>> {
    Ok(query(&["domuuid", name])?.map(|out| out.stdout.trim().to_string()))
}

/// `virsh start NAME`.
pub fn start(name: &str) -> anyhow::Result<()> {
    command()?.args(["start", name]).run()?;
    Ok(())
}

/// `virsh destroy NAME`: powers the guest off at once, like pulling the plug.
pub fn destroy(name: &str) -> anyhow::Result<()> {
    command()?.args(["destroy", name]).run()?;
    Ok(())
}

/// `virsh undefine NAME --remove-all-storage`: the domain and its disks go.
pub fn undefine_with_storage(name: &str) -> anyhow::Result<()> {
    command()?.args(["undefine", name, "--remove-all-storage"]).run()?;
    Ok(())
}

/// `virsh console NAME` on the user's terminal (Ctrl-] leaves).
pub fn console(name: &str) -> anyhow::Result<()> {
    let status = command()?.args(["console", name]).run_inherit()?;
    if !status.success() {
        anyhow::bail!("`virsh --connect {CONNECT} console {name}` failed ({status})");
    }
    Ok(())
}

fn command() -> anyhow::Result<Cmd> {
    Ok(Cmd::new(super::require("virsh")?).args(["--connect", CONNECT]))
}

/// Runs a query about one domain; `None` when virsh says there is no such
/// domain ("failed to get domain"), an error for anything else.
fn query(args: &[&str]) -> anyhow::Result<Option<Output>> {
    let cmd = command()?.args(args);
    let out = cmd.run_unchecked()?;
    if out.status.success() {
        return Ok(Some(out));
    }
    if out.stderr.contains("failed to get domain") || out.stderr.contains("Domain not found") {
        return Ok(None);
    }
    anyhow::bail!("{}", super::failure_message(&cmd.display(), &out))
}
