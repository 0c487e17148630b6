//! OpenSSH's client and key generator: how the RHEL world's scenario steps
//! reach a libvirt guest (`guests::channel`), as root with the lab's own
//! key, never a password.
//!
//! Every call is non-interactive (`BatchMode=yes`: a missing key is an
//! error, never a prompt), pins the guest's host key in the lab's own
//! `known_hosts` on first contact (`StrictHostKeyChecking=accept-new`) and
//! refuses a changed one afterwards, and reads no user configuration
//! (`-F none`).

use std::{path::Path, time::Duration};

use anyhow::Context;

use super::{Cmd, Output, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "ssh",
        debian: Some("openssh-client"),
        rhel: Some("openssh-clients"),
        pip: None,
        version_args: &["-V"],
    },
    Program { name: "ssh-keygen", debian: Some("openssh-client"), rhel: Some("openssh"), pip: None, version_args: &[] },
];

/// Where `run` goes: a host, its port, the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
}

/// Makes an ed25519 key pair at `key` (and `key.pub`), without a passphrase.
pub fn keygen(key: &Path, comment: &str) -> anyhow::Result<()> {
    Cmd::new(super::require("ssh-keygen")?)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(key)
        .run()
        .with_context(|| format!("making the key {}", key.display()))?;
    Ok(())
}

/// Runs `command` (a shell line) on `target`; its output and exit status.
/// ssh's own failures (no route, refused key, changed host key) exit 255.
pub fn run(
    target: &Target,
    key: &Path,
    known_hosts: &Path,
    command: &str,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let connect_timeout = timeout.as_secs().clamp(1, 30).to_string();
    Cmd::new(super::require("ssh")?)
        .args(["-F", "none", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", &format!("ConnectTimeout={connect_timeout}")])
        .arg("-i")
        .arg(key)
        .args(["-p", &target.port.to_string(), "-l", &target.user, &target.host, "--", command])
        .timeout(timeout)
        .run_unchecked()
}
