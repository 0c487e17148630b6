//! Guests in the RHEL world: libvirt domains installed by virt-install from
//! each guest's remastered boot ISO (the `iso <guest>` stage's artifact) and
//! then driven with virsh.
//!
//! A domain is named after its guest in lab.kdl (`edge-device-1`), never
//! found by counting `virsh list`. edgelab records the UUID of every domain
//! it defined (`run/libvirt/<name>.json`); a domain with a guest's name but
//! another UUID belongs to someone else and is never touched.
//!
//! An install is virt-install with `--noautoconsole --noreboot`: it returns
//! at once, the installer runs the kickstart, and the domain powers off when
//! it is done. `up` polls `virsh domstate` until `shut off` (bounded, with
//! progress), then boots the installed system with `virsh start`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::{
    current::Current,
    graph::{StageId, StageKind},
    lab::{Guest, Lab},
    store::Store,
    tools::{
        virsh::{DomState, Virsh},
        virt_install::{self, Install},
    },
};

/// How `up` waits for an install to finish.
#[derive(Debug, Clone)]
pub struct InstallWait {
    /// Time between two `virsh domstate` polls.
    pub poll: Duration,
    /// The longest an install may take before `up` gives up on it.
    pub limit: Duration,
}

impl Default for InstallWait {
    fn default() -> InstallWait {
        // An anaconda install of an edge commit takes 5-20 minutes.
        InstallWait { poll: Duration::from_secs(5), limit: Duration::from_secs(60 * 60) }
    }
}

/// What `up` did to one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpAction {
    /// Installed from its ISO, then started.
    Installed,
    /// Its old domain and disks removed, installed again, started.
    Reinstalled,
    /// Already installed; started.
    Started,
    /// Already installed and running; left alone.
    AlreadyRunning,
}

/// `run/libvirt/<name>.json`: the domain edgelab defined for a guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DomainRecord {
    pub uuid: String,
    /// The libvirt connection it lives on (records from before lab.kdl
    /// named one have none: `qemu:///system`).
    #[serde(default)]
    pub uri: String,
    pub iso: PathBuf,
    /// False while the installer runs; true once the domain powered off
    /// after it.
    pub installed: bool,
}

impl DomainRecord {
    fn uri(&self) -> &str {
        if self.uri.is_empty() { "qemu:///system" } else { &self.uri }
    }
}

/// virt-install's flags for `guest`, installing from `iso`.
pub fn install_spec<'a>(lab: &'a Lab, guest: &'a Guest, iso: &'a Path) -> Install<'a> {
    Install {
        connect: &lab.libvirt_uri,
        name: &guest.name,
        memory_mib: guest.memory_mib,
        vcpus: guest.vcpus,
        disk_gib: guest.disk_gib,
        os_variant: &guest.os_variant,
        bridge: &lab.network.bridge,
        cdrom: iso,
    }
}

/// The guest's remastered ISO: the current artifact of its `iso` stage.
pub fn iso_for(store: &Store, current: &Current, name: &str) -> anyhow::Result<PathBuf> {
    let manifest = current
        .manifest(store, &StageId::new(StageKind::Iso, name))
        .with_context(|| format!("guest {name} has no remastered ISO for the lab as it is"))?;
    let file = manifest.extra.get("iso").and_then(|it| it.as_str()).map(String::from).unwrap_or(format!("{name}.iso"));
    Ok(store.artifact_out(&manifest.key).join(file))
}

/// Installs the guest when it has no domain yet (or `reinstall`), waits for
/// the install to finish, and starts it. `note` receives progress lines.
pub fn up(
    lab: &Lab,
    store: &Store,
    name: &str,
    iso: &Path,
    reinstall: bool,
    wait: &InstallWait,
    note: &dyn Fn(&str),
) -> anyhow::Result<UpAction> {
    let guest = lab.guest(name).with_context(|| format!("no guest `{name}` in the lab"))?;
    let virsh = Virsh::new(&lab.libvirt_uri);
    let record = owned_record(virsh, store, name)?;
    let action = match (&record, reinstall) {
        (None, _) => UpAction::Installed,
        (Some(_), true) => {
            remove(virsh, name)?;
            UpAction::Reinstalled
        }
        (Some(record), false) if !record.installed => {
            note(&format!("guest {name}: its install was interrupted; waiting for it"));
            wait_for_install(virsh, name, wait, note)?;
            mark_installed(store, name, record)?;
            virsh.start(name).with_context(|| format!("guest {name}: starting it after its install"))?;
            return Ok(UpAction::Installed);
        }
        (Some(_), false) => {
            return match virsh.domstate(name)? {
                Some(DomState::Running) => Ok(UpAction::AlreadyRunning),
                _ => {
                    virsh.start(name).with_context(|| format!("guest {name}: starting it"))?;
                    Ok(UpAction::Started)
                }
            };
        }
    };
    let spec = install_spec(lab, guest, iso);
    note(&format!("guest {name}: {}", virt_install::command_line(&spec)));
    virt_install::install(&spec)?;
    let uuid = virsh
        .domuuid(name)?
        .with_context(|| format!("guest {name}: virt-install succeeded but libvirt has no domain `{name}`"))?;
    let record = DomainRecord { uuid, uri: lab.libvirt_uri.clone(), iso: iso.to_path_buf(), installed: false };
    save_record(store, name, &record)?;
    wait_for_install(virsh, name, wait, note)?;
    mark_installed(store, name, &record)?;
    virsh.start(name).with_context(|| format!("guest {name}: starting it after its install"))?;
    Ok(action)
}

/// `guest start NAME`: boots an installed guest. False when it was running.
pub fn start(lab: &Lab, store: &Store, name: &str) -> anyhow::Result<bool> {
    let virsh = Virsh::new(&lab.libvirt_uri);
    require_owned(virsh, store, name)?;
    if virsh.domstate(name)? == Some(DomState::Running) {
        return Ok(false);
    }
    virsh.start(name)?;
    Ok(true)
}

/// `guest destroy NAME`: powers the guest off at once. False when it was
/// not running.
pub fn destroy(lab: &Lab, store: &Store, name: &str) -> anyhow::Result<bool> {
    let virsh = Virsh::new(&lab.libvirt_uri);
    if owned_record(virsh, store, name)?.is_none() {
        return Ok(false);
    }
    if virsh.domstate(name)? != Some(DomState::Running) {
        return Ok(false);
    }
    virsh.destroy(name)?;
    Ok(true)
}

/// One guest's line for `lab status`: its domain's state on the lab's
/// connection.
pub fn status_line(lab: &Lab, store: &Store, name: &str) -> String {
    let virsh = Virsh::new(&lab.libvirt_uri);
    let state = match owned_record(virsh, store, name) {
        Err(err) => return format!("guest {name}: {err:#}"),
        Ok(None) => return format!("guest {name}: not installed on {}", virsh.uri),
        Ok(Some(record)) if !record.installed => "installing".to_string(),
        Ok(Some(_)) => match virsh.domstate(name) {
            Ok(Some(DomState::Running)) => "running".to_string(),
            Ok(Some(DomState::ShutOff)) => "shut off".to_string(),
            Ok(Some(DomState::Other(other))) => other,
            Ok(None) => "gone".to_string(),
            Err(err) => format!("state unknown ({err:#})"),
        },
    };
    format!("guest {name}: {state} on {}", virsh.uri)
}

/// `guest console NAME`: virsh's console on this terminal.
pub fn console(lab: &Lab, store: &Store, name: &str) -> anyhow::Result<()> {
    let virsh = Virsh::new(&lab.libvirt_uri);
    require_owned(virsh, store, name)?;
    virsh.console(name)
}

/// The record of the domain edgelab defined for `name`, checked against
/// libvirt: `None` when libvirt has no such domain (a stale record is
/// dropped), an error when the domain exists but is not the one edgelab made.
fn owned_record(virsh: Virsh, store: &Store, name: &str) -> anyhow::Result<Option<DomainRecord>> {
    let record: Option<DomainRecord> =
        store.load_state(&record_name(name)).and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let Some(uuid) = virsh.domuuid(name)? else {
        return Ok(None);
    };
    match record {
        Some(record) if record.uuid == uuid && record.uri() == virsh.uri => Ok(Some(record)),
        _ => bail!(
            "a libvirt domain named `{name}` already exists on {} (uuid {uuid}) and edgelab did not define \
             it there; edgelab leaves it alone: remove it (`virsh --connect {} undefine {name} \
             --remove-all-storage`) or rename the guest in lab.kdl",
            virsh.uri,
            virsh.uri
        ),
    }
}

fn require_owned(virsh: Virsh, store: &Store, name: &str) -> anyhow::Result<DomainRecord> {
    owned_record(virsh, store, name)?
        .with_context(|| format!("guest {name} is not installed in libvirt: run `cargo xtask lab up`"))
}

/// Destroys (when running) and undefines the domain with its disks.
fn remove(virsh: Virsh, name: &str) -> anyhow::Result<()> {
    if virsh.domstate(name)? == Some(DomState::Running) {
        virsh.destroy(name).with_context(|| format!("guest {name}: stopping it before reinstalling"))?;
    }
    virsh.undefine_with_storage(name).with_context(|| format!("guest {name}: removing it before reinstalling"))
}

fn wait_for_install(virsh: Virsh, name: &str, wait: &InstallWait, note: &dyn Fn(&str)) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_note = Instant::now();
    loop {
        match virsh.domstate(name)? {
            Some(DomState::ShutOff) => {
                note(&format!("guest {name}: installed in {:.0?}", started.elapsed()));
                return Ok(());
            }
            None => bail!("guest {name}: its domain disappeared while installing"),
            Some(_) => {}
        }
        if started.elapsed() >= wait.limit {
            bail!(
                "guest {name}: the install did not finish within {:?} (the domain is still running; \
                 watch it with `cargo xtask guest console {name}`)",
                wait.limit
            );
        }
        if last_note.elapsed() >= Duration::from_secs(30) {
            note(&format!("guest {name}: installing ({:.0?} so far)", started.elapsed()));
            last_note = Instant::now();
        }
        std::thread::sleep(wait.poll);
    }
}

fn mark_installed(store: &Store, name: &str, record: &DomainRecord) -> anyhow::Result<()> {
    save_record(store, name, &DomainRecord { installed: true, ..record.clone() })
}

fn save_record(store: &Store, name: &str, record: &DomainRecord) -> anyhow::Result<()> {
    Ok(store.save_state(&record_name(name), &serde_json::to_vec_pretty(record)?)?)
}

fn record_name(name: &str) -> String {
    format!("libvirt/{name}.json")
}
