//! `cargo xtask host setup`: prepares a RHEL host for the RHEL world, doing
//! what the original demo's setup scripts did (02-config-image-builder.sh,
//! 03-config-registry.sh, and the README's libvirt steps): packages,
//! services, the `weldr` group, firewall ports and the guests' bridge.
//!
//! It changes the host only when asked: it always prints the plan (every
//! step with the exact command it runs) first, and applies it only with
//! `--yes` or after a "yes" typed at a terminal. Without either it is a dry
//! run. Each step runs through its tool's wrapper in `tools/`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};

use super::Global;
use crate::{
    lab::{self, Lab},
    tools::{dnf, firewall_cmd, nmcli, systemctl, usermod},
};

/// The packages the RHEL world uses: image builder (02), container tools
/// (03), and libvirt with virt-install for the guests (README).
const PACKAGES: &[&str] = &[
    "osbuild-composer",
    "composer-cli",
    "cockpit-composer",
    "bash-completion",
    "jq",
    "container-tools",
    "libvirt",
    "virt-install",
    "qemu-kvm",
    "isomd5sum",
    "xorriso",
];

/// The services the original enabled with `systemctl enable --now`, and
/// libvirt's daemon for the guests.
const SERVICES: &[&str] = &["osbuild-composer.socket", "cockpit.socket", "libvirtd"];

/// The group that may talk to osbuild-composer without root.
const COMPOSER_GROUP: &str = "weldr";

/// How `host setup` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct HostSetupOptions {
    /// Apply without asking.
    pub yes: bool,
    /// Only print the plan, even at a terminal.
    pub dry_run: bool,
    /// The host interface to attach to the bridge (its uplink); without it
    /// the bridge is created alone.
    pub bridge_port: Option<String>,
}

/// One change to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Packages(Vec<String>),
    EnableService(String),
    AddToGroup { user: String, group: String },
    Firewall(firewall_cmd::Change),
    Bridge { name: String, port: Option<String> },
}

pub fn run(global: &Global, options: &HostSetupOptions) -> anyhow::Result<()> {
    let lab_file = global.lab.clone().unwrap_or_else(|| super::project_root().join("lab.kdl"));
    let lab = lab::parse_lab_file(&lab_file).map_err(|err| anyhow::anyhow!("{:?}", miette::Report::new(err)))?;
    let user = std::env::var("SUDO_USER").ok().filter(|user| !user.is_empty() && user != "root");
    let steps = plan(&lab, user.as_deref(), options.bridge_port.as_deref());
    println!("host setup: {} changes to this host", steps.len());
    for (idx, step) in steps.iter().enumerate() {
        println!("{:>3}. {}", idx + 1, describe(step));
        for line in command_lines(step) {
            println!("       $ {line}");
        }
    }
    if user.is_none() {
        println!("note: no SUDO_USER, so no user is added to the `{COMPOSER_GROUP}` group (run with sudo)");
    }
    if !should_apply(options)? {
        println!("dry run: nothing changed (`cargo xtask host setup --yes` applies these changes)");
        return Ok(());
    }
    for (idx, step) in steps.iter().enumerate() {
        println!("[{}/{}] {}", idx + 1, steps.len(), describe(step));
        apply(step).with_context(|| format!("host setup step {}: {}", idx + 1, describe(step)))?;
    }
    println!("host setup: done");
    Ok(())
}

/// The changes, in the order the original scripts made them.
pub fn plan(lab: &Lab, user: Option<&str>, bridge_port: Option<&str>) -> Vec<Step> {
    let mut steps = vec![Step::Packages(PACKAGES.iter().map(|it| it.to_string()).collect())];
    steps.extend(SERVICES.iter().map(|unit| Step::EnableService(unit.to_string())));
    if let Some(user) = user {
        steps.push(Step::AddToGroup { user: user.to_string(), group: COMPOSER_GROUP.into() });
    }
    for port in [lab.registry.port, lab.file_server.port] {
        steps.push(Step::Firewall(firewall_cmd::Change::AddPort(format!("{port}/tcp"))));
    }
    steps.push(Step::Firewall(firewall_cmd::Change::AddService("cockpit".into())));
    steps.push(Step::Firewall(firewall_cmd::Change::Reload));
    steps.push(Step::Bridge { name: lab.network.bridge.clone(), port: bridge_port.map(String::from) });
    steps
}

fn describe(step: &Step) -> String {
    match step {
        Step::Packages(packages) => format!("install packages {}", packages.join(" ")),
        Step::EnableService(unit) => format!("enable and start {unit}"),
        Step::AddToGroup { user, group } => format!("add user {user} to group {group}"),
        Step::Firewall(firewall_cmd::Change::AddPort(port)) => format!("open firewall port {port}"),
        Step::Firewall(firewall_cmd::Change::AddService(service)) => format!("open firewall service {service}"),
        Step::Firewall(firewall_cmd::Change::Reload) => "reload the firewall".into(),
        Step::Bridge { name, port: Some(port) } => format!("create bridge {name} with uplink {port}"),
        Step::Bridge { name, port: None } => {
            format!("create bridge {name} (no uplink: pass --bridge-port IFACE to share the host's segment)")
        }
    }
}

fn command_lines(step: &Step) -> Vec<String> {
    match step {
        Step::Packages(packages) => vec![dnf::install_line(packages)],
        Step::EnableService(unit) => vec![systemctl::enable_now_line(unit)],
        Step::AddToGroup { user, group } => vec![usermod::add_to_group_line(user, group)],
        Step::Firewall(change) => vec![firewall_cmd::line(change)],
        Step::Bridge { name, port } => std::iter::once(nmcli::add_bridge_line(name))
            .chain(port.iter().map(|port| nmcli::add_bridge_port_line(name, port)))
            .collect(),
    }
}

fn apply(step: &Step) -> anyhow::Result<()> {
    match step {
        Step::Packages(packages) => dnf::install(packages),
        Step::EnableService(unit) => systemctl::enable_now(unit),
        Step::AddToGroup { user, group } => usermod::add_to_group(user, group),
        Step::Firewall(change) => firewall_cmd::apply(change),
        Step::Bridge { name, port } => {
            nmcli::add_bridge(name)?;
            match port {
                Some(port) => nmcli::add_bridge_port(name, port),
                None => Ok(()),
            }
        }
    }
}

/// `--yes` applies, `--dry-run` never does; otherwise ask at a terminal.
fn should_apply(options: &HostSetupOptions) -> anyhow::Result<bool> {
    if options.dry_run {
        if options.yes {
            bail!("--dry-run and --yes contradict each other");
        }
        return Ok(false);
    }
    if options.yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("apply these changes? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
