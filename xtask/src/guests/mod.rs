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
pub mod channel;
pub mod installer;
pub mod launcher;
pub mod libvirt;
pub mod netns;
pub mod pull_server;
pub mod shell;
pub mod upgrade;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::{
    graph::{StageId, StageKind},
    lab::{AccelSetting, Lab},
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
    /// The accelerator the launcher boots the guest with now, and why
    /// (written by the launcher at every boot, shown by `lab status`).
    #[serde(default)]
    pub accel: Option<Accel>,
    #[serde(default)]
    pub accel_reason: Option<String>,
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
    /// The host's accelerator failed under this boot (qemu's own message):
    /// it was stopped and is no attempt of the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_fault: Option<String>,
    /// The required health checks that failed in this boot, with their
    /// output, as the guest printed them on its console before its verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<boot::FailedCheck>,
}

/// `accel.json` in the store's run state: the accelerator this host gives
/// the lab's guests when the lab says `accel "auto"`, and why. The first
/// KVM fault of a real boot rewrites it to TCG, which then stays until the
/// user asks again (`accel "kvm"`, `EDGELAB_ACCEL=kvm`, or removing the
/// file to probe again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelState {
    pub accel: Accel,
    pub reason: String,
    /// qemu's message, when a fault put this host on TCG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_fault: Option<String>,
    #[serde(default)]
    pub since_unix: u64,
}

/// The accelerator a launcher starts with, and why (for its log and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

/// Overrides the lab's `accel` (auto, kvm or tcg); CI sets it.
pub const ACCEL_ENV: &str = "EDGELAB_ACCEL";

/// Default seconds a boot gets to report its health (TCG boots take 30-40 s).
pub const DEFAULT_BOOT_TIMEOUT_S: u64 = 600;

/// The programs the lab's guests and their network run (for the prereqs
/// stage): qemu with debugfs and e2fsck for the launcher, ip for the lab's
/// namespace, bridge and taps; virt-install and virsh in the RHEL world.
pub fn programs(lab: &Lab) -> Vec<&'static str> {
    if lab.guests.is_empty() {
        return Vec::new();
    }
    crate::world::guests(lab).programs().to_vec()
}

/// A guest's run folder.
pub fn guest_dir(store: &Store, name: &str) -> anyhow::Result<PathBuf> {
    Ok(store.run_dir(&format!("guests/{name}"))?)
}

pub fn load_state(dir: &Path) -> Option<GuestState> {
    std::fs::read(dir.join("guest.json")).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

pub fn save_state(dir: &Path, state: &GuestState) -> anyhow::Result<()> {
    let path = dir.join("guest.json");
    crate::store::write_atomic(&path, &serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The boots a guest's launcher recorded, oldest first.
pub fn boots(dir: &Path) -> Vec<BootRecord> {
    std::fs::read_to_string(dir.join("boots.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The accelerator the lab's guests start with: `EDGELAB_ACCEL`, else the
/// lab's `accel`; `auto` takes run state's `accel.json`, probing KVM once
/// when it is missing (a boot sector proves little, so a fault of a real
/// boot still switches to TCG, see `record_host_fault`).
pub fn accel(lab: &Lab, store: &Store) -> anyhow::Result<AccelChoice> {
    let (setting, source) = match std::env::var(ACCEL_ENV) {
        Ok(word) if !word.is_empty() => {
            let setting = AccelSetting::from_word(&word)
                .with_context(|| format!("{ACCEL_ENV}={word}: expected one of {}", AccelSetting::WORDS.join(", ")))?;
            (setting, format!("{ACCEL_ENV}={word}"))
        }
        _ => (lab.accel, format!("lab.kdl accel \"{}\"", lab.accel.as_str())),
    };
    accel_for(setting, &source, store)
}

/// The accelerator for `setting`, asked for by `source` (for the reason).
pub fn accel_for(setting: AccelSetting, source: &str, store: &Store) -> anyhow::Result<AccelChoice> {
    let asked = |accel: Accel| AccelChoice { accel, reason: format!("{source} asks for it") };
    match setting {
        AccelSetting::Tcg => return Ok(asked(Accel::Tcg)),
        AccelSetting::Kvm => return Ok(asked(Accel::Kvm)),
        AccelSetting::Auto => {}
    }
    let state = match load_accel_state(store) {
        Some(state) => state,
        None => {
            let accel = tools::qemu::probe_accel(&store.run_dir("probe")?)?;
            let reason = match accel {
                Accel::Kvm => "a boot sector ran under KVM (probe)",
                Accel::Tcg => "KVM did not run a boot sector here (probe), or /dev/kvm is missing",
            };
            let state = AccelState { accel, reason: reason.into(), host_fault: None, since_unix: unix_now() };
            store.save_state(ACCEL_STATE, &serde_json::to_vec_pretty(&state)?)?;
            state
        }
    };
    Ok(AccelChoice { accel: state.accel, reason: format!("{source}: {}", state.reason) })
}

/// What `accel.json` holds, if anything (an older store's bare `"kvm"` too).
pub fn load_accel_state(store: &Store) -> Option<AccelState> {
    let bytes = store.load_state(ACCEL_STATE)?;
    if let Ok(state) = serde_json::from_slice::<AccelState>(&bytes) {
        return Some(state);
    }
    let accel: Accel = serde_json::from_slice(&bytes).ok()?;
    Some(AccelState { accel, reason: "probed by an older edgelab".into(), host_fault: None, since_unix: 0 })
}

/// Puts this host on TCG after qemu reported `fault` under KVM; it stays so
/// until the user asks again. Returns the reason recorded.
pub fn record_host_fault(store: &Store, fault: &str) -> anyhow::Result<String> {
    let reason = format!(
        "KVM faulted under a guest (qemu: \"{fault}\"): TCG on this host until asked again \
         ({ACCEL_ENV}=kvm or accel \"kvm\" in lab.kdl; remove run/{ACCEL_STATE} to probe again)"
    );
    let state = AccelState {
        accel: Accel::Tcg,
        reason: reason.clone(),
        host_fault: Some(fault.to_string()),
        since_unix: unix_now(),
    };
    store.save_state(ACCEL_STATE, &serde_json::to_vec_pretty(&state)?)?;
    Ok(reason)
}

const ACCEL_STATE: &str = "accel.json";

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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
    let dir = guest_dir(store, name)?;
    let mut state = load_state(&dir).unwrap_or_default();
    let disk = dir.join("disk.img");
    let manifest = match current.manifest(store, &StageId::new(StageKind::Install, name)) {
        Ok(manifest) => Some(manifest),
        // A guest with a disk starts from it; only a new disk needs the
        // current install (a channel promotion leaves the install stale
        // until `lab up` installs the channel's new commit).
        Err(_) if disk.exists() && !reinstall => None,
        Err(err) => return Err(err.context(format!("guest {name} has no install for the lab as it is"))),
    };
    let changed = manifest.as_ref().is_none_or(|it| state.install_key.as_deref() != Some(it.key.0.as_str()));
    // `--reinstall` replaces the disk even when its install is unchanged:
    // the guest starts again from the pristine disk, as a reinstall would.
    let action = match (disk.exists(), changed, reinstall) {
        (true, _, true) => DiskAction::Reinstalled,
        (true, false, false) => DiskAction::Kept,
        (true, true, false) => DiskAction::KeptStale,
        (false, _, _) => DiskAction::Created,
    };
    if let (DiskAction::Created | DiskAction::Reinstalled, Some(manifest)) = (&action, &manifest) {
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

/// Whether guest `name` of the store runs (its recorded launcher lives).
pub fn runs(store: &Store, name: &str) -> bool {
    guest_dir(store, name).ok().and_then(|dir| load_state(&dir)).is_some_and(|state| is_running(&state))
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
    let state = load_state(&dir).with_context(|| format!("guest {name} is not installed: run `lab up`"))?;
    if is_running(&state) {
        return Ok(false);
    }
    let log = dir.join("launcher.log");
    let pid = tools::process::spawn_self_detached(launcher_args, &log)?;
    wait_for_launcher(&dir, pid, &log).with_context(|| format!("starting guest {name}"))?;
    Ok(true)
}

/// Waits until the launcher `pid` (logging to `log`) has recorded itself
/// in `dir`'s guest.json. The launcher is the one writer of that file
/// while it runs: a record written by whoever spawned it could clobber the
/// qemu pid the launcher had already written, or lose the launcher's pid
/// (then `destroy` misses the launcher, which boots the guest again). A
/// launcher that ends or takes longer than `LAUNCHER_START` is killed and
/// reported with its log's last lines.
pub fn wait_for_launcher(dir: &Path, pid: u32, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + LAUNCHER_START;
    loop {
        if load_state(dir).is_some_and(|now| now.launcher_pid == Some(pid)) {
            return Ok(());
        }
        if !tools::process::is_alive(pid) || Instant::now() >= deadline {
            tools::process::kill_hard(pid).ok();
            bail!("the launcher did not record its pid within {LAUNCHER_START:?}{}", crate::services::log_tail(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long a launcher may take to record its pid.
const LAUNCHER_START: Duration = Duration::from_secs(30);

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
    // The launcher may have started a qemu after we read its pid, or its
    // record of the pid may have been lost: any process still running on
    // this guest's disk (qemu's `-drive` names it) goes too.
    if let Some(state_now) = load_state(&dir)
        && let Some(pid) = state_now.qemu_pid
        && tools::process::is_alive(pid)
    {
        tools::process::kill_hard(pid)?;
        killed = true;
    }
    let disk = dir.join("disk.img").display().to_string();
    for pid in tools::process::with_arg_containing(&disk) {
        tools::process::kill_hard(pid)?;
        tools::process::wait_gone(pid, Duration::from_secs(10));
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

/// Polls `probe` until it returns `Some`, or fails after `timeout` with the
/// last thing seen.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing yet");
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() >= deadline {
            bail!("not within {timeout:?}; last seen: {last}");
        }
        std::thread::sleep(every);
    }
}
