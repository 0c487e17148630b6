//! `qemu-system-x86_64` and `qemu-img`: the local world's guests.
//!
//! Guests boot their kernel directly (`-kernel`/`-initrd`, taken out of the
//! guest's disk by the launcher) with `-no-reboot`, so a reboot inside the
//! guest ends the qemu process and the launcher, acting as the bootloader,
//! decides what boots next. The serial console is a unix socket a person can
//! attach to, and qemu also logs everything it prints to a file.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "qemu-system-x86_64",
        debian: Some("qemu-system-x86"),
        rhel: Some("qemu-kvm"),
        pip: None,
        version_args: &["--version"],
    },
    Program {
        name: "qemu-img",
        debian: Some("qemu-utils"),
        rhel: Some("qemu-img"),
        pip: None,
        version_args: &["--version"],
    },
];

/// How qemu runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

/// A tap the guest's virtio NIC uses, with the guest's MAC address.
#[derive(Debug, Clone)]
pub struct Nic {
    pub tap: String,
    pub mac: String,
}

/// One boot of a guest.
#[derive(Debug, Clone)]
pub struct Machine {
    pub accel: Accel,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    /// A raw disk image, the guest's /dev/vda.
    pub disk: PathBuf,
    pub nic: Option<Nic>,
    /// The serial console's unix socket (server side; one client at a time).
    pub console_socket: PathBuf,
    /// Everything the serial console prints, appended.
    pub console_log: PathBuf,
    /// Run inside this network namespace (where the tap lives).
    pub netns: Option<String>,
    /// A unix socket (server side) wired to the guest's virtio serial port
    /// `edgelab.shell`, where the guest runs a root shell for the lab's checks.
    pub shell_socket: Option<PathBuf>,
}

/// The name of the guest's virtio serial port carrying the lab shell
/// (`/dev/virtio-ports/edgelab.shell` in the guest).
pub const SHELL_PORT: &str = "edgelab.shell";

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Starts qemu for one boot, its own output going to `log`. The child is in
/// its own process group; killing it is `virsh destroy`.
pub fn spawn(machine: &Machine, log: &Path) -> anyhow::Result<Child> {
    super::require("qemu-system-x86_64")?;
    let mut args: Vec<String> = vec![
        "-name".into(),
        "edgelab-guest".into(),
        "-accel".into(),
        machine.accel.as_str().into(),
        "-cpu".into(),
        match machine.accel {
            Accel::Kvm => "host".into(),
            Accel::Tcg => "max".into(),
        },
        "-m".into(),
        machine.memory_mib.to_string(),
        "-smp".into(),
        machine.vcpus.to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        path_arg(&machine.kernel),
        "-initrd".into(),
        path_arg(&machine.initrd),
        "-append".into(),
        machine.append.clone(),
        "-drive".into(),
        format!("file={},if=virtio,format=raw,cache=unsafe", path_arg(&machine.disk)),
        "-device".into(),
        "virtio-rng-pci".into(),
        "-chardev".into(),
        format!(
            "socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
            path_arg(&machine.console_socket),
            path_arg(&machine.console_log)
        ),
        "-serial".into(),
        "chardev:console".into(),
    ];
    if let Some(socket) = &machine.shell_socket {
        args.push("-device".into());
        args.push("virtio-serial-pci".into());
        args.push("-chardev".into());
        args.push(format!("socket,id=shell,path={},server=on,wait=off", path_arg(socket)));
        args.push("-device".into());
        args.push(format!("virtserialport,chardev=shell,name={SHELL_PORT}"));
    }
    if let Some(nic) = &machine.nic {
        args.push("-netdev".into());
        args.push(format!("tap,id=net0,ifname={},script=no,downscript=no", nic.tap));
        args.push("-device".into());
        args.push(format!("virtio-net-pci,netdev=net0,mac={}", nic.mac));
    }
    let cmd = match &machine.netns {
        Some(netns) => super::ip::netns_exec(netns, "qemu-system-x86_64").args(&args),
        None => Cmd::new("qemu-system-x86_64").args(&args),
    };
    cmd.spawn_logged(log).with_context(|| format!("starting qemu for {}", machine.disk.display()))
}

/// What qemu prints (on stderr, which the launcher keeps in `qemu.log`)
/// when the host's accelerator fails under a guest, from qemu's
/// `accel/kvm/kvm-all.c`: `kvm_handle_internal_error` prints "KVM internal
/// error. Suberror: %d" (then "emulation failure" for suberror 1) and stops
/// the VM in the `internal-error` run state, paused, with no console output;
/// `kvm_init` fails with "Could not access KVM kernel module: %m" and
/// "failed to initialize kvm: %s" and qemu exits; `kvm_cpu_exec` ends with
/// "error: kvm run failed %s". From `target/i386/kvm/kvm.c`: a vCPU whose
/// MSRs the host refuses prints "error: failed to set MSR 0x%x to 0x%x" and
/// qemu aborts on the assertion in `kvm_buf_set_msrs` (seen here: the first
/// vCPU reset of a real guest, 0.3 s in, after the probe passed).
pub const ACCEL_FAULTS: [&str; 7] = [
    "KVM internal error",
    "emulation failure",
    "failed to initialize kvm",
    "Could not access KVM kernel module",
    "kvm run failed",
    "failed to set MSR",
    "kvm_buf_set_msrs",
];

/// The first line of qemu's own output that says its accelerator failed.
pub fn accel_fault(qemu_output: &str) -> Option<String> {
    qemu_output
        .lines()
        .find(|line| ACCEL_FAULTS.iter().any(|fault| line.contains(fault)))
        .map(|line| line.trim().to_string())
}

/// Whether KVM really runs guest code here: a 512-byte boot sector that
/// writes to qemu's debug-exit port must end qemu with its code within a few
/// seconds. `/dev/kvm` alone proves nothing: without nested virtualisation
/// it opens, but the vCPU never runs. `workdir` holds the probe image.
pub fn probe_accel(workdir: &Path) -> anyhow::Result<Accel> {
    super::require("qemu-system-x86_64")?;
    if !Path::new("/dev/kvm").exists() {
        return Ok(Accel::Tcg);
    }
    let image = workdir.join("kvm-probe.img");
    std::fs::write(&image, probe_boot_sector()).with_context(|| format!("writing {}", image.display()))?;
    let out = Cmd::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-nodefaults", "-display", "none", "-m", "16"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-boot", "a", "-drive"])
        .arg(format!("file={},format=raw,if=floppy", path_arg(&image)))
        .timeout(Duration::from_secs(8))
        .run_unchecked();
    // The port write exits with (value << 1) | 1 = 99.
    Ok(match out {
        Ok(out) if out.status.code() == Some(PROBE_EXIT_CODE) => Accel::Kvm,
        _ => Accel::Tcg,
    })
}

/// Copies a disk image as a qcow2 overlay on `base` (which must not change
/// while the overlay lives).
pub fn create_overlay(base: &Path, overlay: &Path) -> anyhow::Result<()> {
    super::require("qemu-img")?;
    Cmd::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(overlay)
        .run()
        .with_context(|| format!("creating overlay {} on {}", overlay.display(), base.display()))?;
    Ok(())
}

const PROBE_EXIT_CODE: i32 = (0x31 << 1) | 1;

/// `mov al, 0x31; out 0xf4, al; hlt; jmp $-1`, padded, with the boot signature.
fn probe_boot_sector() -> Vec<u8> {
    let mut sector = vec![0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD];
    sector.resize(510, 0);
    sector.extend([0x55, 0xAA]);
    sector
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemus_accelerator_faults_are_recognised() {
        let internal = "KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\nemulation failure\nRAX=0";
        assert_eq!(accel_fault(internal).as_deref(), Some("KVM internal error. Suberror: 1"));
        let init = "Could not access KVM kernel module: No such file or directory\n\
                    qemu-system-x86_64: failed to initialize kvm: No such file or directory";
        assert_eq!(accel_fault(init).as_deref(), Some("Could not access KVM kernel module: No such file or directory"));
        // This machine's: qemu aborts on its first vCPU reset under KVM.
        let msr = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n\
                   qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion \
                   `ret == cpu->kvm_msr_buf->nmsrs' failed.";
        assert_eq!(accel_fault(msr).as_deref(), Some("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"));
        assert!(accel_fault("error: kvm run failed Bad address").is_some());
        assert_eq!(accel_fault("qemu-system-x86_64: terminating on signal 15 from pid 1"), None);
    }
}
