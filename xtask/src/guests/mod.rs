//! Guests in the local world: qemu VMs installed by edgelab and launched
//! from the artifact graph.
//!
//! Each guest's run state lives in the store's `run/guests/<name>/`: its own
//! copy of the pristine disk (`disk.img`, kept across reboots and `lab up`s),
//! `guest.json` (which install it came from, pids, accelerator), the boot
//! counter (`boot.json`, the launcher's grubenv), a line per boot
//! (`boots.jsonl`), the serial console (`console.sock`, `console.log`) and
//! the launcher's log. A guest runs under a launcher process
//! (`cargo xtask guest run-launcher NAME`, started detached) that acts as
//! its bootloader; see `launcher.rs`.

pub mod boot;
pub mod installer;
pub mod launcher;
pub mod libvirt;
pub mod netns;
pub mod pull_server;
pub mod shell;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::{
    graph::{StageId, StageKind},
    lab::Lab,
    store::Store,
    tools::{self, qemu::Accel},
};

/// `guest.json`: a guest's run state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuestState {
    pub name: String,
    /// The install artifact `disk.img` was copied from.
    pub install_key: Option<String>,
    pub commit: Option<String>,
    pub launcher_pid: Option<u32>,
    pub qemu_pid: Option<u32>,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub netns: Option<String>,
    pub tap: Option<String>,
    pub mac: Option<String>,
    /// Seconds a boot may take to print a health verdict before it counts
    /// as failed and qemu is stopped.
    pub boot_timeout_s: u64,
}

/// One line of `boots.jsonl`, per boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootRecord {
    pub started_unix: u64,
    pub entry: String,
    pub deployment: String,
    pub fallback: bool,
    pub healthy: bool,
    /// The guest printed a health verdict (false: it hung, or rebooted
    /// before its health check ran).
    #[serde(default)]
    pub verdict_seen: bool,
    /// Seconds from qemu's start to the verdict (or to the end of a boot
    /// that gave none).
    pub seconds: f64,
    pub accel: Accel,
    pub reason: String,
}

/// Default seconds a boot gets to report its health (TCG boots take 30-40 s).
pub const DEFAULT_BOOT_TIMEOUT_S: u64 = 600;

/// A guest's run folder.
pub fn guest_dir(store: &Store, name: &str) -> anyhow::Result<PathBuf> {
    Ok(store.run_dir(&format!("guests/{name}"))?)
}

pub fn load_state(dir: &Path) -> Option<GuestState> {
    std::fs::read(dir.join("guest.json")).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

pub fn save_state(dir: &Path, state: &GuestState) -> anyhow::Result<()> {
    write_atomic(&dir.join("guest.json"), &serde_json::to_vec_pretty(state)?)
}

/// The boots a guest's launcher recorded, oldest first.
pub fn boots(dir: &Path) -> Vec<BootRecord> {
    std::fs::read_to_string(dir.join("boots.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The accelerator, probed once and kept in run state.
pub fn accel(store: &Store) -> anyhow::Result<Accel> {
    if let Some(accel) = store.load_state("accel.json").and_then(|bytes| serde_json::from_slice(&bytes).ok()) {
        return Ok(accel);
    }
    let accel = tools::qemu::probe_accel(&store.run_dir("probe")?)?;
    store.save_state("accel.json", &serde_json::to_vec(&accel)?)?;
    Ok(accel)
}

/// What `prepare` did to a guest's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskAction {
    Created,
    Kept,
    /// The install artifact changed but the user did not ask to reinstall.
    KeptStale,
    Reinstalled,
}

/// Gives the guest its own copy of its current install artifact's disk:
/// made when missing, replaced only when the artifact changed and `reinstall`.
pub fn prepare(
    lab: &Lab,
    store: &Store,
    current: &crate::current::Current,
    name: &str,
    reinstall: bool,
) -> anyhow::Result<DiskAction> {
    let guest = lab.guest(name).with_context(|| format!("no guest `{name}` in the lab"))?;
    let manifest = current
        .manifest(store, &StageId::new(StageKind::Install, name))
        .with_context(|| format!("guest {name} has no install for the lab as it is"))?;
    let dir = guest_dir(store, name)?;
    let mut state = load_state(&dir).unwrap_or_default();
    let disk = dir.join("disk.img");
    let changed = state.install_key.as_deref() != Some(manifest.key.0.as_str());
    let action = match (disk.exists(), changed, reinstall) {
        (true, false, _) => DiskAction::Kept,
        (true, true, false) => DiskAction::KeptStale,
        (true, true, true) => DiskAction::Reinstalled,
        (false, _, _) => DiskAction::Created,
    };
    if matches!(action, DiskAction::Created | DiskAction::Reinstalled) {
        if is_running(&state) {
            bail!("guest {name} is running: `cargo xtask guest destroy {name}` before reinstalling it");
        }
        installer::copy_sparse(&store.artifact_out(&manifest.key).join("disk.img"), &disk)?;
        for stale in ["boot.json", "boots.jsonl"] {
            std::fs::remove_file(dir.join(stale)).ok();
        }
        state.install_key = Some(manifest.key.0.clone());
        state.commit = manifest.extra.get("commit").and_then(|it| it.as_str()).map(String::from);
    }
    let segment = netns::segment(lab);
    let port = segment.port(name);
    state.name = name.to_string();
    state.memory_mib = guest.memory_mib;
    state.vcpus = guest.vcpus;
    state.netns = Some(segment.netns.clone());
    state.tap = port.map(|port| port.tap.clone());
    state.mac = port.map(|port| port.mac.clone());
    if state.boot_timeout_s == 0 {
        state.boot_timeout_s = DEFAULT_BOOT_TIMEOUT_S;
    }
    save_state(&dir, &state)?;
    Ok(action)
}

/// Whether the guest's launcher (and so the guest) is running.
pub fn is_running(state: &GuestState) -> bool {
    state.launcher_pid.is_some_and(tools::process::is_alive)
}

/// How this program runs `guest run-launcher NAME` for `lab` and `store`.
pub fn launcher_args(lab: &Lab, store: &Store, name: &str) -> Vec<String> {
    vec![
        "--lab".into(),
        lab.file.display().to_string(),
        "--store".into(),
        store.root().display().to_string(),
        "guest".into(),
        "run-launcher".into(),
        name.into(),
    ]
}

/// Starts the guest's launcher in the background unless it runs already.
/// `launcher_args` is how to run `guest run-launcher NAME` (this program
/// and its global options).
pub fn start(store: &Store, name: &str, launcher_args: &[String]) -> anyhow::Result<bool> {
    let dir = guest_dir(store, name)?;
    let mut state = load_state(&dir).with_context(|| format!("guest {name} is not installed: run `lab up`"))?;
    if is_running(&state) {
        return Ok(false);
    }
    let pid = tools::process::spawn_self_detached(launcher_args, &dir.join("launcher.log"))?;
    state.launcher_pid = Some(pid);
    save_state(&dir, &state)?;
    Ok(true)
}

/// Kills the guest as hard as `virsh destroy`: the launcher first (so it
/// does not boot the guest again), then qemu, both with SIGKILL.
pub fn destroy(store: &Store, name: &str) -> anyhow::Result<bool> {
    let dir = guest_dir(store, name)?;
    let Some(mut state) = load_state(&dir) else {
        return Ok(false);
    };
    let mut killed = false;
    for pid in [state.launcher_pid, state.qemu_pid].into_iter().flatten() {
        if tools::process::is_alive(pid) {
            tools::process::kill_hard(pid)?;
            killed = true;
        }
    }
    // The launcher may have started a qemu after we read its pid.
    if let Some(state_now) = load_state(&dir)
        && let Some(pid) = state_now.qemu_pid
        && tools::process::is_alive(pid)
    {
        tools::process::kill_hard(pid)?;
        killed = true;
    }
    for pid in [state.launcher_pid, state.qemu_pid].into_iter().flatten() {
        tools::process::wait_gone(pid, Duration::from_secs(10));
    }
    state.launcher_pid = None;
    state.qemu_pid = None;
    save_state(&dir, &state)?;
    Ok(killed)
}

/// Removes a stopped guest's disk and boot records, so the next `prepare`
/// copies its install artifact's pristine disk again. `Ok(false)` when
/// there was no disk.
pub fn forget_disk(store: &Store, name: &str) -> anyhow::Result<bool> {
    let dir = guest_dir(store, name)?;
    if load_state(&dir).is_some_and(|state| is_running(&state)) {
        bail!("guest {name} is running: `cargo xtask guest destroy {name}` first");
    }
    for stale in ["boot.json", "boots.jsonl"] {
        std::fs::remove_file(dir.join(stale)).ok();
    }
    match std::fs::remove_file(dir.join("disk.img")) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("removing guest {name}'s disk")),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}
