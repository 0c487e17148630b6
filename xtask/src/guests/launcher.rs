//! The local launcher: a guest's bootloader and power supply.
//!
//! Before every boot it reads the BLS entries from the guest's disk (with
//! debugfs, after replaying the journal; ostree flips /boot/loader between
//! loader.0 and loader.1 on every deploy, so nothing is cached), picks one
//! with greenboot's boot counting (`boot.rs`), takes that entry's kernel and
//! initramfs out of the disk and boots them with qemu `-no-reboot`. A reboot
//! inside the guest ends qemu and the loop boots again; a power-off ends the
//! launcher. The guest's health verdict comes from its serial console.

use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};

use super::{
    AccelChoice, BootRecord, GuestState,
    boot::{self, BootCounter, BootEntry, Outcome, Verdict},
    load_state, save_state,
};
use crate::{
    store::Store,
    tools::{
        debugfs,
        qemu::{self, Accel, Machine, Nic},
    },
};

/// Boots that end within this long without printing anything are qemu
/// failing to start, not the guest rebooting.
const BROKEN_BOOT: Duration = Duration::from_secs(3);

/// What this bootloader adds to every entry's options, for boots that spend
/// their time on what the lab shows. Measured under TCG with
/// `systemd-analyze blame` and `critical-chain` on 2 shared cores
/// (126 s to a verdict before, 50 s after, the initramfs aside):
/// getty-static (VGA gettys; the guests have no display) sat on the critical
/// chain for 14 s; utmp records, the journal's flush to disk (the journal
/// stays in /run: `journalctl -b` still shows the boot), e2scrub (LVM only),
/// dracut's shutdown copy of the initramfs, debugfs/tracefs and device-mapper,
/// loop and pstore modules cost 2-17 s each and nothing here uses them;
/// udev loaded modules for the PC machine's IDE controller and the CPU's
/// virtualisation, crypto and frequency features (each load verifies a
/// signature under emulation) that a guest with a virtio disk never uses;
/// three unused UARTs; and the kernel's speculation mitigations (page table
/// isolation flushes TLBs on every system call, which TCG pays dearly for;
/// these are lab guests, alone on their segment).
///
/// Debian's podman package also enables system-wide units RHEL does not:
/// `podman-restart.service`, `podman-auto-update.service` (wanted by the
/// default target, so it runs in every boot, besides its daily timer) and the
/// root API service and socket. Root runs no containers in the lab (the app
/// is the lab user's, and so is the auto-update timer the demo shows), yet
/// the first two took 29 and 38 s of CPU in every boot and slowed the health
/// check itself from 0.8 to 20 s. DRM (no display) and configfs are unused.
const BOOT_ARGS: &[&str] = &[
    "systemd.show_status=false",
    "mitigations=off",
    "8250.nr_uarts=1",
    "systemd.mask=getty-static.service",
    "systemd.mask=systemd-update-utmp.service",
    "systemd.mask=systemd-update-utmp-runlevel.service",
    "systemd.mask=systemd-journal-flush.service",
    "systemd.mask=e2scrub_reap.service",
    "systemd.mask=dracut-shutdown.service",
    "systemd.mask=sys-kernel-debug.mount",
    "systemd.mask=sys-kernel-tracing.mount",
    "systemd.mask=modprobe@dm_mod.service",
    "systemd.mask=modprobe@loop.service",
    "systemd.mask=modprobe@efi_pstore.service",
    "systemd.mask=modprobe@drm.service",
    "systemd.mask=modprobe@configfs.service",
    "systemd.mask=sys-kernel-config.mount",
    "systemd.mask=podman-restart.service",
    "systemd.mask=podman-auto-update.timer",
    "systemd.mask=podman-auto-update.service",
    "systemd.mask=podman.service",
    "systemd.mask=podman.socket",
    "modprobe.blacklist=ata_piix,ata_generic,pata_acpi,floppy,pcspkr,kvm,kvm_amd,kvm_intel,powernow_k8,\
     aesni_intel,crc32_pclmul,sha256_ssse3,serio_raw,efi_pstore,qemu_fw_cfg,crct10dif_pclmul,crc32c_intel,\
     ghash_clmulni_intel,cryptd,sha512_ssse3,sha1_ssse3",
];

/// Runs the guest in `dir` until it powers off or the launcher is killed,
/// starting with `accel`. A boot under which qemu reports that KVM failed
/// is no attempt of the deployment: it is stopped at once, `store`'s run
/// state puts the host on TCG, and the same entry boots again under TCG.
pub fn run(dir: &Path, store: &Store, accel: AccelChoice) -> anyhow::Result<()> {
    let mut accel = accel;
    let mut n_broken = 0;
    log(&format!("accelerator {} ({})", accel.accel.as_str(), accel.reason));
    loop {
        let mut state = load_state(dir).context("the guest's guest.json is missing")?;
        state.launcher_pid = Some(std::process::id());
        state.accel = Some(accel.accel);
        state.accel_reason = Some(accel.reason.clone());
        save_state(dir, &state)?;
        let disk = dir.join("disk.img");
        let entries = read_entries(&disk)?;
        let mut counter = load_counter(dir);
        let choice = boot::choose(&entries, &mut counter).context("the guest's disk has no boot entries")?;
        save_counter(dir, &counter)?;
        log(&format!("booting {} ({}) with {}", choice.entry.title, choice.reason, accel.accel.as_str()));

        let kernel = dir.join("boot/vmlinuz");
        let initrd = dir.join("boot/initrd.img");
        std::fs::create_dir_all(dir.join("boot"))?;
        debugfs::dump(&disk, &boot_path(&disk, &choice.entry.linux)?, &kernel)?;
        debugfs::dump(&disk, &boot_path(&disk, &choice.entry.initrd)?, &initrd)?;
        // The kernel's messages stay on (no `quiet`): a boot that hangs
        // shows where, and its silence is what the hang watchdog sees.
        let mut append = format!("{} {}", choice.entry.options, BOOT_ARGS.join(" "));
        if choice.fallback {
            append.push_str(" edgelab.fallback=1");
        } else if let Some(left) = choice.boot_counter {
            append.push_str(&format!(" edgelab.boot_counter={left}"));
        }

        let console_log = dir.join("console.log");
        let qemu_log = dir.join("qemu.log");
        let console_start = file_len(&console_log);
        let qemu_log_start = file_len(&qemu_log);
        let machine = Machine {
            accel: accel.accel,
            memory_mib: state.memory_mib,
            vcpus: state.vcpus,
            kernel,
            initrd,
            append,
            disk: disk.clone(),
            nic: state.tap.clone().zip(state.mac.clone()).map(|(tap, mac)| Nic { tap, mac }),
            console_socket: dir.join("console.sock"),
            console_log: console_log.clone(),
            netns: state.netns.clone().filter(|_| state.tap.is_some()),
            shell_socket: Some(dir.join(super::shell::SOCKET)),
        };
        let started = Instant::now();
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut child = qemu::spawn(&machine, &qemu_log)?;
        set_qemu_pid(dir, Some(child.id()))?;

        let timeout = Duration::from_secs(state.boot_timeout_s.max(1));
        let mut seconds_to_verdict = None;
        let mut console_len = console_start;
        let mut qemu_log_len = qemu_log_start;
        let mut host_fault = None;
        let mut last_output = Instant::now();
        let status = loop {
            let exited = child.try_wait()?;
            // qemu's own output is read whenever it grew, before and after
            // a verdict: a KVM fault pauses the guest for good.
            let len = file_len(&qemu_log);
            if len != qemu_log_len || exited.is_some() {
                qemu_log_len = len;
                host_fault = qemu::accel_fault(&read_from(&qemu_log, qemu_log_start));
                if host_fault.is_some() {
                    if exited.is_none() {
                        child.kill().ok();
                        child.wait().ok();
                    }
                    break exited;
                }
            }
            if let Some(status) = exited {
                break Some(status);
            }
            if seconds_to_verdict.is_none() {
                let len = file_len(&console_log).max(console_len);
                let printed = len != console_len;
                if printed {
                    console_len = len;
                    last_output = Instant::now();
                }
                // A KVM that stalls the vCPU prints nothing (seen here: 101 s
                // of silence, then "KVM internal error"): the host's fault.
                if let Some(fault) = kvm_stalled(accel.accel, started.elapsed(), console_len > console_start) {
                    child.kill().ok();
                    child.wait().ok();
                    host_fault = Some(fault);
                    break None;
                }
                // The console is read again only when it grew.
                let console = if printed { read_from(&console_log, console_start) } else { String::new() };
                if let Some(verdict) = boot::verdict(&console) {
                    // Recorded at once, as greenboot writes grubenv during
                    // the boot: a guest destroyed later keeps its verdict.
                    let seconds = started.elapsed().as_secs_f64();
                    seconds_to_verdict = Some(seconds);
                    boot::record(&choice, Outcome::Os(verdict), &mut counter);
                    save_counter(dir, &counter)?;
                    let record = boot_record(&choice, Some(verdict), &console, started_unix, seconds, accel.accel);
                    append_boot(dir, &record)?;
                } else if let Some(why) =
                    no_verdict_yet(started.elapsed(), timeout, console_len > console_start, last_output.elapsed())
                {
                    log(&format!("{why}: stopping the guest"));
                    child.kill().ok();
                    child.wait().ok();
                    break None;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        set_qemu_pid(dir, None)?;
        let seconds = started.elapsed().as_secs_f64();

        if let Some(fault) = host_fault {
            log(&format!(
                "{} faulted after {seconds:.1}s: \"{fault}\" (see {}); the host's, not the guest's: \
                 this boot is no attempt of {}",
                accel.accel.as_str(),
                qemu_log.display(),
                choice.deployment
            ));
            if seconds_to_verdict.is_none() {
                boot::record(&choice, Outcome::HostFault, &mut counter);
                save_counter(dir, &counter)?;
                let mut record = boot_record(&choice, None, "", started_unix, seconds, accel.accel);
                record.host_fault = Some(fault.clone());
                append_boot(dir, &record)?;
            }
            if accel.accel == Accel::Tcg {
                bail!("qemu reported an accelerator fault under TCG: \"{fault}\"; see {}", qemu_log.display());
            }
            let reason = super::record_host_fault(store, &fault)?;
            accel = AccelChoice { accel: Accel::Tcg, reason };
            log(&format!("switching to tcg ({}); booting the same entry again", accel.reason));
            continue;
        }

        let console = read_from(&console_log, console_start);
        let verdict = boot::verdict(&console);
        if seconds_to_verdict.is_none() {
            boot::record(&choice, Outcome::Os(verdict.unwrap_or(Verdict::Unhealthy)), &mut counter);
            save_counter(dir, &counter)?;
            append_boot(dir, &boot_record(&choice, verdict, &console, started_unix, seconds, accel.accel))?;
        }
        let verdict = verdict.map_or("no verdict".to_string(), |verdict| format!("{verdict:?}"));
        log(&format!("boot ended after {seconds:.1}s ({verdict}, qemu {status:?})"));

        if console.contains(boot::POWER_OFF_MARK) {
            log("the guest powered off");
            return Ok(());
        }
        if started.elapsed() < BROKEN_BOOT && console.is_empty() {
            n_broken += 1;
            if n_broken >= 3 {
                bail!("qemu failed to start three times in a row; see {}", qemu_log.display());
            }
        } else {
            n_broken = 0;
        }
    }
}

/// The disk's BLS entries, each with the deployment (`<commit>.<serial>`)
/// its `ostree=` argument leads to.
pub fn read_entries(disk: &Path) -> anyhow::Result<Vec<(BootEntry, String)>> {
    debugfs::replay_journal(disk)?;
    let mut entries = Vec::new();
    for file in debugfs::list_dir(disk, "/boot/loader/entries")? {
        if !file.name.ends_with(".conf") {
            continue;
        }
        let text = debugfs::cat(disk, &format!("/boot/loader/entries/{}", file.name))?;
        let Some(entry) = boot::parse_entry(&file.name, &text) else {
            continue;
        };
        let deployment = match boot::ostree_arg(&entry) {
            Some(path) => debugfs::read_link(disk, path)?
                .and_then(|target| target.rsplit('/').next().map(String::from))
                .unwrap_or_else(|| path.to_string()),
            None => entry.file.clone(),
        };
        entries.push((entry, deployment));
    }
    Ok(entries)
}

/// BLS paths are relative to the partition holding /boot; here /boot is a
/// folder of the root file system, so `/ostree/...` may mean `/boot/ostree/...`.
fn boot_path(disk: &Path, path: &str) -> anyhow::Result<String> {
    if path.starts_with("/boot/") {
        return Ok(path.to_string());
    }
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let in_boot = format!("/boot{dir}");
    if debugfs::list_dir(disk, &in_boot).map(|entries| entries.iter().any(|it| it.name == name)).unwrap_or(false) {
        return Ok(format!("/boot{path}"));
    }
    Ok(path.to_string())
}

fn load_counter(dir: &Path) -> BootCounter {
    std::fs::read(dir.join("boot.json")).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

fn save_counter(dir: &Path, counter: &BootCounter) -> anyhow::Result<()> {
    let path = dir.join("boot.json");
    crate::store::write_atomic(&path, &serde_json::to_vec_pretty(counter)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn set_qemu_pid(dir: &Path, pid: Option<u32>) -> anyhow::Result<()> {
    let mut state: GuestState = load_state(dir).unwrap_or_default();
    state.qemu_pid = pid;
    save_state(dir, &state)
}

/// A boot that printed nothing at all this long after qemu started hangs
/// before or in the kernel (seen under TCG: about one boot in thirty).
const SILENT_START: Duration = Duration::from_secs(120);
/// A boot whose console stayed silent this long before a verdict hangs.
const SILENT_GAP: Duration = Duration::from_secs(300);

/// Under KVM the kernel prints its banner within a second or two of
/// qemu's start, even on a loaded host; a console still empty after this
/// long is a stalled accelerator, not a slow guest.
const KVM_SILENT_START: Duration = Duration::from_secs(15);

/// The host fault a silent boot under `accel` shows, if it does: KVM
/// with nothing on the console `KVM_SILENT_START` after qemu started.
/// (Under TCG a silent start is the guest's hang: `no_verdict_yet`.)
fn kvm_stalled(accel: Accel, running: Duration, printed: bool) -> Option<String> {
    (accel == Accel::Kvm && !printed && running > KVM_SILENT_START)
        .then(|| format!("nothing on the console {}s after qemu started under KVM", KVM_SILENT_START.as_secs()))
}

/// Why a boot without a health verdict yet is stopped, if it is: it ran
/// past `timeout`, or it hangs (silent), as a hardware watchdog would reset it.
fn no_verdict_yet(running: Duration, timeout: Duration, printed: bool, silent: Duration) -> Option<String> {
    if running > timeout {
        return Some(format!("no health verdict within {timeout:?}"));
    }
    if !printed && running > SILENT_START {
        return Some(format!("hung: nothing on the console {}s after the start", running.as_secs()));
    }
    (silent > SILENT_GAP).then(|| format!("hung: the console has been silent for {}s", silent.as_secs()))
}

/// The record of a boot; `verdict` is `None` when the guest printed none
/// (it hung, or rebooted before its health check); `console` is what the
/// boot printed (the failed checks' names and output come from it).
fn boot_record(
    choice: &boot::Choice,
    verdict: Option<Verdict>,
    console: &str,
    started_unix: u64,
    seconds: f64,
    accel: Accel,
) -> BootRecord {
    BootRecord {
        started_unix,
        entry: choice.entry.file.clone(),
        deployment: choice.deployment.clone(),
        fallback: choice.fallback,
        healthy: verdict == Some(Verdict::Healthy),
        verdict_seen: verdict.is_some(),
        seconds,
        accel,
        reason: choice.reason.clone(),
        host_fault: None,
        failed_checks: boot::failed_checks(console),
    }
}

fn append_boot(dir: &Path, record: &BootRecord) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("boots.jsonl"))?;
    writeln!(file, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0)
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        file.read_to_end(&mut bytes).ok();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log(message: &str) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    eprintln!("[{now}] launcher: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_or_overlong_boot_is_stopped() {
        let secs = Duration::from_secs;
        let timeout = secs(600);
        assert_eq!(kvm_stalled(Accel::Kvm, secs(10), false), None);
        assert_eq!(kvm_stalled(Accel::Kvm, secs(60), true), None);
        assert_eq!(kvm_stalled(Accel::Tcg, secs(60), false), None);
        assert!(kvm_stalled(Accel::Kvm, secs(16), false).unwrap().contains("under KVM"));
        assert_eq!(no_verdict_yet(secs(60), timeout, false, secs(60)), None);
        assert!(no_verdict_yet(secs(121), timeout, false, secs(121)).unwrap().contains("nothing on the console"));
        assert_eq!(no_verdict_yet(secs(280), timeout, true, secs(200)), None);
        assert!(no_verdict_yet(secs(500), timeout, true, secs(301)).unwrap().contains("silent for 301s"));
        assert!(no_verdict_yet(secs(601), timeout, true, secs(10)).unwrap().contains("no health verdict within"));
    }
}
