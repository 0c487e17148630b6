//! The RHEL world's guests (libvirt) and `host setup`, against fakes.
//!
//! libvirtd cannot usefully run here (no systemd to run it, no RHEL boot ISO
//! to install from), so `virt-install` and `virsh` are the one fake in
//! `support/fake_libvirt.sh`, built from their man pages, put first on PATH.
//! `host setup --yes` runs against logging stand-ins for dnf, systemctl,
//! usermod, firewall-cmd and nmcli: it must never touch this machine.

// The tests run the fakes and the `cargo xtask` binary themselves.
#![allow(clippy::disallowed_methods)]

#[path = "support/demo_lab.rs"]
mod demo_lab;
#[path = "support/manifest.rs"]
mod manifest;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use edgelab::{
    cli::{Global, Session},
    graph::{StageId, StageKind},
    guests::libvirt::{self, InstallWait, UpAction},
    lab::{Backend, Lab},
    store::{LockWait, Store},
};
use expect_test::{Expect, expect};

const FAKE: &str = include_str!("support/fake_libvirt.sh");

/// PATH and FAKE_LIBVIRT_DIR are process-wide: tests take turns.
static ENV: Mutex<()> = Mutex::new(());

#[test]
fn installs_each_guest_with_its_own_command_line_then_starts_it() {
    let world = World::new();
    for name in ["edge-device-1", "edge-device-2"] {
        assert_eq!(world.up(name, false).unwrap(), UpAction::Installed);
    }
    world.check_calls(expect![[r#"
        virsh --connect qemu:///system domuuid edge-device-1
        virt-install --connect qemu:///system --name edge-device-1 --memory 2048 --vcpus 2 --disk size=10 --os-variant rhel8.6 --network bridge=edgelab0 --cdrom ISOS/edge-device-1.iso --noautoconsole --noreboot
        virsh --connect qemu:///system domuuid edge-device-1
        virsh --connect qemu:///system domstate edge-device-1
        virsh --connect qemu:///system domstate edge-device-1
        virsh --connect qemu:///system start edge-device-1
        virsh --connect qemu:///system domuuid edge-device-2
        virt-install --connect qemu:///system --name edge-device-2 --memory 2048 --vcpus 2 --disk size=10 --os-variant rhel8.6 --network bridge=edgelab0 --cdrom ISOS/edge-device-2.iso --noautoconsole --noreboot
        virsh --connect qemu:///system domuuid edge-device-2
        virsh --connect qemu:///system domstate edge-device-2
        virsh --connect qemu:///system domstate edge-device-2
        virsh --connect qemu:///system start edge-device-2
    "#]]);
    assert_eq!(world.domstate("edge-device-1"), "running");
}

#[test]
fn waits_for_the_install_to_power_off_before_starting() {
    let world = World::new();
    world.set_install_polls(5);
    assert_eq!(world.up("edge-device-1", false).unwrap(), UpAction::Installed);
    let calls = world.calls();
    let polls = calls.iter().filter(|line| line.contains("domstate")).count();
    assert_eq!(polls, 5, "four polls see `running`, the fifth `shut off`: {calls:#?}");
    let start = calls.iter().position(|line| line.contains(" start ")).unwrap();
    assert!(calls[..start].iter().any(|line| line.starts_with("virt-install")));
    assert_eq!(start, calls.len() - 1, "started last: {calls:#?}");
}

#[test]
fn an_install_that_never_finishes_is_bounded() {
    let world = World::new();
    world.set_install_polls(1000);
    let wait = InstallWait { poll: Duration::from_millis(10), limit: Duration::from_millis(200) };
    let err =
        libvirt::up(&world.lab, &world.store, "edge-device-1", &world.iso("edge-device-1"), false, &wait, &|_| {})
            .unwrap_err();
    assert!(format!("{err:#}").contains("did not finish within"), "{err:#}");
    assert!(!world.calls().iter().any(|line| line.contains(" start ")));
}

#[test]
fn an_interrupted_install_is_waited_for_not_redone() {
    let world = World::new();
    world.set_install_polls(1000);
    let wait = InstallWait { poll: Duration::from_millis(10), limit: Duration::from_millis(100) };
    libvirt::up(&world.lab, &world.store, "edge-device-1", &world.iso("edge-device-1"), false, &wait, &|_| {})
        .unwrap_err();
    // The installer finishes while nobody watches.
    std::fs::write(world.state.join("domains/edge-device-1/polls"), "1").unwrap();
    assert_eq!(world.up("edge-device-1", false).unwrap(), UpAction::Installed);
    assert_eq!(world.calls().iter().filter(|line| line.starts_with("virt-install")).count(), 1);
    assert_eq!(world.domstate("edge-device-1"), "running");
}

#[test]
fn a_second_up_leaves_a_running_guest_alone_and_starts_a_stopped_one() {
    let world = World::new();
    world.up("edge-device-1", false).unwrap();
    assert_eq!(world.up("edge-device-1", false).unwrap(), UpAction::AlreadyRunning);
    assert!(libvirt::destroy(&world.lab, &world.store, "edge-device-1").unwrap());
    assert!(!libvirt::destroy(&world.lab, &world.store, "edge-device-1").unwrap());
    assert_eq!(world.up("edge-device-1", false).unwrap(), UpAction::Started);
    assert_eq!(world.calls().iter().filter(|line| line.starts_with("virt-install")).count(), 1);
}

#[test]
fn reinstall_destroys_and_undefines_first() {
    let world = World::new();
    world.up("edge-device-1", false).unwrap();
    world.clear_calls();
    assert_eq!(world.up("edge-device-1", true).unwrap(), UpAction::Reinstalled);
    world.check_calls(expect![[r#"
        virsh --connect qemu:///system domuuid edge-device-1
        virsh --connect qemu:///system domstate edge-device-1
        virsh --connect qemu:///system destroy edge-device-1
        virsh --connect qemu:///system undefine edge-device-1 --remove-all-storage
        virt-install --connect qemu:///system --name edge-device-1 --memory 2048 --vcpus 2 --disk size=10 --os-variant rhel8.6 --network bridge=edgelab0 --cdrom ISOS/edge-device-1.iso --noautoconsole --noreboot
        virsh --connect qemu:///system domuuid edge-device-1
        virsh --connect qemu:///system domstate edge-device-1
        virsh --connect qemu:///system domstate edge-device-1
        virsh --connect qemu:///system start edge-device-1
    "#]]);
}

#[test]
fn a_domain_with_the_guests_name_that_is_not_ours_is_left_alone() {
    let world = World::new();
    // Someone else's VM, made with the real command line a user would type.
    let status = Command::new(world.bin.join("virt-install"))
        .args(["--name", "edge-device-1", "--memory", "1024", "--disk", "size=5", "--os-variant", "rhel9.0"])
        .args(["--import", "--noautoconsole"])
        .env("FAKE_LIBVIRT_DIR", &world.state)
        .status()
        .unwrap();
    assert!(status.success());
    world.clear_calls();
    for reinstall in [false, true] {
        let err = world.up("edge-device-1", reinstall).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("a libvirt domain named `edge-device-1` already exists"), "{text}");
        assert!(text.contains("edgelab did not define it"), "{text}");
    }
    assert!(libvirt::start(&world.lab, &world.store, "edge-device-1").is_err());
    assert!(libvirt::destroy(&world.lab, &world.store, "edge-device-1").is_err());
    assert!(libvirt::console(&world.lab, &world.store, "edge-device-1").is_err());
    let calls = world.calls();
    assert!(calls.iter().all(|line| line.contains(" domuuid ") || line.contains(" domstate ")), "{calls:#?}");
}

#[test]
fn a_missing_virt_install_says_how_to_install_it() {
    let world = World::new();
    std::fs::remove_file(world.bin.join("virt-install")).unwrap();
    let err = world.up("edge-device-1", false).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("`virt-install` not found"), "{text}");
    assert!(text.contains("dnf install virt-install"), "{text}");
}

#[test]
fn the_fake_rejects_what_the_real_programs_reject() {
    let world = World::new();
    let iso = world.iso("edge-device-1");
    let iso = iso.to_str().unwrap();
    let base = ["--name", "x", "--memory", "1024", "--disk", "size=1", "--os-variant", "rhel8.6"];
    for (args, code, message) in [
        (vec!["--name", "x", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (base.to_vec(), 1, "An install method must be specified"),
        (
            [&base[..], &["--cdrom", iso, "--extra-args", "inst.ks=x"]].concat(),
            1,
            "Kernel arguments are only supported",
        ),
        (
            vec!["--name", "x", "--memory", "1024", "--disk", "size=1", "--cdrom", iso],
            1,
            "--os-variant/--osinfo OS name is required",
        ),
    ] {
        let out = Command::new(world.bin.join("virt-install"))
            .args(&args)
            .env("FAKE_LIBVIRT_DIR", &world.state)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(world.bin.join("virsh"))
        .args(["list", "--all"])
        .env("FAKE_LIBVIRT_DIR", &world.state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn lab_up_installs_the_guests_that_have_an_iso_from_the_iso_stage() {
    let world = World::new();
    world.set_install_polls(1);
    let iso_1 = world.publish_iso("edge-device-1");
    let session = world.session();
    edgelab::world::guests(&session.lab).up(&session, &[]).unwrap();
    let installs: Vec<String> = world.calls().into_iter().filter(|line| line.starts_with("virt-install")).collect();
    assert_eq!(installs.len(), 1, "{installs:#?}");
    assert!(installs[0].contains("--name edge-device-1 "), "{}", installs[0]);
    assert!(installs[0].contains(&format!("--cdrom {} ", iso_1.display())), "{}", installs[0]);
    world.publish_iso("edge-device-2");
    world.clear_calls();
    edgelab::world::guests(&session.lab).up(&world.session(), &[]).unwrap();
    let commands: Vec<String> = world
        .calls()
        .into_iter()
        .filter(|line| !line.contains(" domuuid ") && !line.contains(" domstate "))
        .map(|line| line.split(" --").take(2).collect::<Vec<_>>().join(" --"))
        .collect();
    assert_eq!(
        commands,
        ["virt-install --connect qemu:///system", "virsh --connect qemu:///system start edge-device-2"],
        "edge-device-1 was running and is left alone"
    );
}

#[test]
fn guest_commands_dispatch_to_libvirt_in_the_rhel_world() {
    let world = World::new();
    world.up("edge-device-1", false).unwrap();
    world.clear_calls();
    let destroy = world.xtask(&["guest", "destroy", "edge-device-1"]);
    assert!(destroy.contains("guest edge-device-1: destroyed"), "{destroy}");
    assert_eq!(world.domstate("edge-device-1"), "shut off");
    let start = world.xtask(&["guest", "start", "edge-device-1"]);
    assert!(start.contains("guest edge-device-1: started"), "{start}");
    let console = world.xtask(&["guest", "console", "edge-device-1"]);
    assert!(console.contains("Connected to domain 'edge-device-1'"), "{console}");
    let commands: Vec<String> =
        world.calls().into_iter().filter(|line| !line.contains(" domuuid ") && !line.contains(" domstate ")).collect();
    assert_eq!(
        commands,
        [
            "virsh --connect qemu:///system destroy edge-device-1",
            "virsh --connect qemu:///system start edge-device-1",
            "virsh --connect qemu:///system console edge-device-1",
        ]
    );
}

#[test]
fn a_remote_libvirt_host_is_driven_through_its_uri() {
    let mut world = World::new();
    world.set_libvirt_uri("qemu+ssh://root@edge-host/system");
    // SAFETY: as in `World::new`.
    unsafe { std::env::set_var("FAKE_LIBVIRT_HOSTS", "edge-host") };
    assert_eq!(world.up("edge-device-1", false).unwrap(), UpAction::Installed);
    let calls = world.calls();
    assert!(!calls.is_empty());
    for call in &calls {
        assert!(call.contains(" --connect qemu+ssh://root@edge-host/system "), "{call}");
    }
    // The domain lives on the remote host, not on this one.
    assert!(world.state.join("hosts/edge-host/domains/edge-device-1").is_dir());
    assert!(!world.state.join("domains/edge-device-1").exists());
    let status = world.xtask(&["lab", "status"]);
    assert!(status.contains("libvirt qemu+ssh://root@edge-host/system"), "{status}");
    assert!(status.contains("guest edge-device-1: running on qemu+ssh://root@edge-host/system"), "{status}");
    assert!(status.contains("guest edge-device-2: not installed on qemu+ssh://root@edge-host/system"), "{status}");
    let destroy = world.xtask(&["guest", "destroy", "edge-device-1"]);
    assert!(destroy.contains("guest edge-device-1: destroyed"), "{destroy}");

    // The same guest name on this host's libvirt is another domain: the
    // record names the connection it was made on.
    world.set_libvirt_uri("qemu:///system");
    assert_eq!(world.up("edge-device-1", false).unwrap(), UpAction::Installed);

    // A host libvirt cannot reach: its error, not a guess.
    world.set_libvirt_uri("qemu+ssh://root@nowhere/system");
    let err = format!("{:#}", world.up("edge-device-2", false).unwrap_err());
    assert!(err.contains("Could not resolve hostname nowhere"), "{err}");
    // SAFETY: as in `World::new`.
    unsafe { std::env::remove_var("FAKE_LIBVIRT_HOSTS") };
}

#[test]
fn the_ssh_channel_finds_a_dhcp_guest_by_its_lease() {
    let world = World::new();
    world.up("edge-device-1", false).unwrap();
    let virsh = edgelab::tools::virsh::Virsh::new(&world.lab.libvirt_uri);
    // No lease yet: the channel says so instead of guessing.
    assert_eq!(virsh.domifaddr("edge-device-1").unwrap(), None);
    let channel = edgelab::guests::channel::SshChannel::for_libvirt(&world.lab, &world.store).unwrap();
    let err = edgelab::guests::channel::GuestChannel::run(&channel, "edge-device-1", "true", Duration::from_secs(5))
        .unwrap_err();
    assert!(format!("{err:#}").contains("has no address yet"), "{err:#}");
    std::fs::write(world.state.join("domains/edge-device-1/address"), "192.168.122.57").unwrap();
    assert_eq!(virsh.domifaddr("edge-device-1").unwrap().as_deref(), Some("192.168.122.57"));
    assert!(virsh.domifaddr("edge-device-9").is_err());
    // The lab's key was made for the channel, in the store, and the
    // kickstart gives it to root.
    let key = edgelab::guests::channel::lab_key(&world.store, &world.lab.name).unwrap();
    assert!(key.private.starts_with(world.dir.join("store")));
}

#[test]
fn a_libvirt_uri_that_is_not_qemus_is_refused_in_the_lab_file() {
    let world = World::new();
    let text = std::fs::read_to_string(&world.lab_file).unwrap() + "libvirt uri=\"xen:///system\"\n";
    std::fs::write(&world.lab_file, text).unwrap();
    let err = edgelab::lab::parse_lab_file(&world.lab_file).unwrap_err().to_plain();
    assert!(err.contains("libvirt URI `xen:///system` names the `xen` driver"), "{err}");
}

#[test]
fn host_setup_dry_run_prints_every_step_and_changes_nothing() {
    let world = World::new();
    let out = world.xtask_env(&["host", "setup", "--dry-run", "--bridge-port", "eth9"], &[("SUDO_USER", "tester")]);
    expect![[r#"
        host setup: 10 changes to this host
          1. install packages osbuild-composer composer-cli cockpit-composer bash-completion jq container-tools libvirt virt-install qemu-kvm isomd5sum xorriso
               $ dnf -y install osbuild-composer composer-cli cockpit-composer bash-completion jq container-tools libvirt virt-install qemu-kvm isomd5sum xorriso
          2. enable and start osbuild-composer.socket
               $ systemctl enable --now osbuild-composer.socket
          3. enable and start cockpit.socket
               $ systemctl enable --now cockpit.socket
          4. enable and start libvirtd
               $ systemctl enable --now libvirtd
          5. add user tester to group weldr
               $ usermod -aG weldr tester
          6. open firewall port 5000/tcp
               $ firewall-cmd --permanent --add-port=5000/tcp
          7. open firewall port 8000/tcp
               $ firewall-cmd --permanent --add-port=8000/tcp
          8. open firewall service cockpit
               $ firewall-cmd --permanent --add-service=cockpit
          9. reload the firewall
               $ firewall-cmd --reload
         10. create bridge edgelab0 with uplink eth9
               $ nmcli connection add type bridge ifname edgelab0 con-name edgelab0
               $ nmcli connection add type bridge-slave ifname eth9 master edgelab0
        dry run: nothing changed (`cargo xtask host setup --yes` applies these changes)
    "#]]
    .assert_eq(&out);
    assert_eq!(world.host_calls(), Vec::<String>::new());
    // Without --yes and without a terminal it is a dry run too.
    let out = world.xtask_env(&["host", "setup"], &[("SUDO_USER", "tester")]);
    assert!(out.contains("dry run: nothing changed"), "{out}");
    assert_eq!(world.host_calls(), Vec::<String>::new());
}

#[test]
fn host_setup_yes_runs_each_step_in_order() {
    let world = World::new();
    let out = world.xtask_env(&["host", "setup", "--yes", "--bridge-port", "eth9"], &[("SUDO_USER", "tester")]);
    assert!(out.contains("host setup: done"), "{out}");
    expect![[r#"
        dnf -y install osbuild-composer composer-cli cockpit-composer bash-completion jq container-tools libvirt virt-install qemu-kvm isomd5sum xorriso
        systemctl enable --now osbuild-composer.socket
        systemctl enable --now cockpit.socket
        systemctl enable --now libvirtd
        usermod -aG weldr tester
        firewall-cmd --permanent --add-port=5000/tcp
        firewall-cmd --permanent --add-port=8000/tcp
        firewall-cmd --permanent --add-service=cockpit
        firewall-cmd --reload
        nmcli connection add type bridge ifname edgelab0 con-name edgelab0
        nmcli connection add type bridge-slave ifname eth9 master edgelab0
    "#]]
    .assert_eq(&(world.host_calls().join("\n") + "\n"));
}

/// A lab whose guests live in libvirt, its store, two remastered ISOs, and
/// the fakes first on PATH.
struct World {
    _guard: MutexGuard<'static, ()>,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    bin: PathBuf,
    state: PathBuf,
    lab_file: PathBuf,
    lab: Lab,
    store: Store,
}

impl World {
    fn new() -> World {
        let guard = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let bin = dir.join("bin");
        let state = dir.join("libvirt");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.join("isos")).unwrap();
        let fake = dir.join("fake_libvirt.sh");
        std::fs::write(&fake, FAKE).unwrap();
        make_executable(&fake);
        for program in ["virt-install", "virsh"] {
            std::os::unix::fs::symlink(&fake, bin.join(program)).unwrap();
        }
        for program in ["dnf", "systemctl", "usermod", "firewall-cmd", "nmcli"] {
            let path = bin.join(program);
            std::fs::write(&path, "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>\"$HOST_CALLS\"\n").unwrap();
            make_executable(&path);
        }
        std::os::unix::fs::symlink(demo_lab::repo_root().join("guest"), dir.join("guest")).unwrap();
        let lab_text = demo_lab::demo_lab_text()
            .replace("guests \"auto\"", "guests \"rhel\"")
            .replace("host-address \"auto\"", "host-address \"192.168.122.1/24\"");
        let lab_file = dir.join("lab.kdl");
        std::fs::write(&lab_file, lab_text).unwrap();
        let lab = edgelab::lab::parse_lab_file(&lab_file).unwrap();
        for guest in &lab.guests {
            std::fs::write(dir.join("isos").join(format!("{}.iso", guest.name)), "not really an ISO").unwrap();
        }
        let store = Store::open(&dir.join("store")).unwrap();
        // SAFETY: every test holds ENV while it runs, so no other thread
        // reads the environment meanwhile.
        unsafe {
            std::env::set_var("PATH", format!("{}:/usr/bin:/bin", bin.display()));
            std::env::set_var("FAKE_LIBVIRT_DIR", &state);
            std::env::set_var("HOST_CALLS", dir.join("host_calls.log"));
            std::env::remove_var("FAKE_LIBVIRT_INSTALL_POLLS");
        }
        World { _guard: guard, _tmp: tmp, dir, bin, state, lab_file, lab, store }
    }

    /// Publishes a stand-in for the `iso NAME` stage's artifact, as the
    /// stage names it (`NAME.iso`, recorded in the manifest).
    /// Publishes the guest's kickstart and ISO as the plan keys them (the
    /// host's facts, the kickstart's output), so they are current.
    fn publish_iso(&self, name: &str) -> PathBuf {
        let session = self.session();
        let facts = session.facts().unwrap();
        let kickstart = session.graph.stage(&StageId::new(StageKind::Kickstart, name)).unwrap();
        let kickstart_output = format!("sha256:{}", "1".repeat(64));
        let kickstart_manifest = manifest::current_manifest_for(
            kickstart,
            &facts,
            Default::default(),
            &kickstart_output,
            serde_json::json!({}),
        );
        let iso = session.graph.stage(&StageId::new(StageKind::Iso, name)).unwrap();
        let inputs = [("kickstart".to_string(), kickstart_output.clone())].into();
        let iso_manifest = manifest::current_manifest_for(
            iso,
            &facts,
            inputs,
            &format!("sha256:{}", "2".repeat(64)),
            serde_json::json!({ "iso": format!("{name}.iso") }),
        );
        let lock = self.store.lock(LockWait::NoWait).unwrap();
        let scratch = self.store.begin(&lock, &kickstart.id).unwrap();
        self.store.publish(&lock, scratch, kickstart_manifest).unwrap();
        let scratch = self.store.begin(&lock, &iso.id).unwrap();
        std::fs::write(scratch.out.join(format!("{name}.iso")), "not really an ISO").unwrap();
        let out = self.store.publish(&lock, scratch, iso_manifest).unwrap();
        out.join(format!("{name}.iso"))
    }

    fn session(&self) -> Session {
        let global = Global {
            lab: Some(self.lab_file.clone()),
            store: Some(self.dir.join("store")),
            no_wait: false,
            quiet: true,
        };
        let session = Session::load(&global).unwrap();
        assert_eq!(session.lab.backends.for_guests(), Backend::Rhel);
        session
    }

    fn iso(&self, name: &str) -> PathBuf {
        self.dir.join("isos").join(format!("{name}.iso"))
    }

    /// Points the lab at another libvirt connection (`libvirt uri=...`).
    fn set_libvirt_uri(&mut self, uri: &str) {
        let text = std::fs::read_to_string(&self.lab_file).unwrap();
        let text: String =
            text.lines().filter(|line| !line.starts_with("libvirt ")).map(|line| format!("{line}\n")).collect();
        std::fs::write(&self.lab_file, format!("{text}libvirt uri=\"{uri}\"\n")).unwrap();
        self.lab = edgelab::lab::parse_lab_file(&self.lab_file).unwrap();
        assert_eq!(self.lab.libvirt_uri, uri);
    }

    fn up(&self, name: &str, reinstall: bool) -> anyhow::Result<UpAction> {
        let wait = InstallWait { poll: Duration::from_millis(10), limit: Duration::from_secs(20) };
        libvirt::up(&self.lab, &self.store, name, &self.iso(name), reinstall, &wait, &|_| {})
    }

    fn set_install_polls(&self, polls: u32) {
        // SAFETY: as in `new`.
        unsafe { std::env::set_var("FAKE_LIBVIRT_INSTALL_POLLS", polls.to_string()) };
    }

    fn calls(&self) -> Vec<String> {
        let isos = self.dir.join("isos").display().to_string();
        std::fs::read_to_string(self.state.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| line.replace(&isos, "ISOS"))
            .collect()
    }

    #[track_caller]
    fn check_calls(&self, expect: Expect) {
        expect.assert_eq(&(self.calls().join("\n") + "\n"));
    }

    fn clear_calls(&self) {
        std::fs::remove_file(self.state.join("calls.log")).ok();
    }

    fn host_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("host_calls.log")).unwrap_or_default().lines().map(String::from).collect()
    }

    /// The domain's state as the fake keeps it (not through virsh, which
    /// would count as a poll).
    fn domstate(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join("domains").join(name).join("state")).unwrap().trim().to_string()
    }

    #[track_caller]
    fn xtask(&self, args: &[&str]) -> String {
        self.xtask_env(args, &[])
    }

    /// Runs the real `cargo xtask` binary on this lab; its stdout.
    #[track_caller]
    fn xtask_env(&self, args: &[&str], envs: &[(&str, &str)]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(&self.lab_file)
            .arg("--store")
            .arg(self.dir.join("store"))
            .args(args)
            .envs(envs.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "xtask {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
