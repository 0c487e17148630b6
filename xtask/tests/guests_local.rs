//! Local guests booted for real under qemu from an OSTree commit: the
//! installer deploys the image's commit; a new deployment whose health check
//! fails three boots falls back to the previous one, which the guest makes
//! permanent (`ostree admin undeploy 0`); one whose check passes is kept; a
//! lone deployment that keeps failing keeps booting, as GRUB boots it; a KVM
//! fault (qemu's own messages, from the one fake here, a stand-in for qemu on
//! a host whose KVM faults) is no attempt and moves the host to TCG. The
//! launcher runs as the real `guest run-launcher` process, with the
//! accelerator `EDGELAB_ACCEL` or the probe gives it. Boots take 30-90 s
//! each; every wait has a deadline.

#[path = "guests_local/image.rs"]
mod image;

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use edgelab::{
    guests::{self, BootRecord, GuestState, boot, installer, launcher, pull_server},
    store::Store,
};

const FAIL_CHECK: &str = "#!/bin/sh\necho 'edgelab test: this upgrade is refused'\nexit 1\n";
const PASS_CHECK: &str = "#!/bin/sh\nexit 0\n";
const RED_SCRIPT: &str = "#!/bin/sh\necho 'edgelab test: red script ran' > /dev/ttyS0\n";

#[test]
fn three_failed_health_checks_fall_back_and_make_it_permanent() {
    let lab = TestLab::new("fallback");
    let (served, v1) = image::served_copy(lab.dir());
    let (v2, disk) = lab.install_with_update(
        &served,
        &v1,
        "v2-refused",
        &[("usr/etc/greenboot/check/required.d/50-refuse-upgrade.sh", FAIL_CHECK)],
    );

    let launcher = lab.start_launcher(&disk);
    let boots =
        lab.wait_for_boots(Duration::from_secs(1500), |boots| boots.iter().any(|boot| boot.fallback && boot.healthy));
    lab.destroy(launcher);

    // This test boots with the accelerator the host probes to; a boot that
    // KVM stopped (a host fault) is no attempt: the next boot is the same
    // deployment with the same attempt number. The counted boots follow.
    for (index, boot) in boots.iter().enumerate().filter(|(_, boot)| boot.host_fault.is_some()) {
        let next = boots.get(index + 1).expect("a boot follows a host fault");
        assert_eq!(
            (&next.deployment, &next.reason, next.host_fault.is_none()),
            (&boot.deployment, &boot.reason, true),
            "a host fault counted as an attempt:\n{boots:#?}"
        );
    }
    let counted: Vec<&BootRecord> = boots.iter().filter(|boot| boot.host_fault.is_none()).collect();
    let summary: Vec<String> = counted
        .iter()
        .map(|boot| format!("{} fallback={} healthy={}", short(&boot.deployment), boot.fallback, boot.healthy))
        .collect();
    let expected: Vec<String> = vec![
        format!("{} fallback=false healthy=false", short(&v2)),
        format!("{} fallback=false healthy=false", short(&v2)),
        format!("{} fallback=false healthy=false", short(&v2)),
        format!("{} fallback=true healthy=true", short(&v1)),
    ];
    assert_eq!(summary, expected, "boots:\n{boots:#?}\nconsole:\n{}", lab.console_tail());
    let console = lab.console();
    assert!(console.contains("edgelab-greenboot: red"), "no red verdict on the console");
    assert!(console.contains("edgelab-greenboot: fallback made permanent"), "the fallback was not made permanent");
    // What the launcher will boot from now on: v1 alone.
    let entries = launcher::read_entries(&lab.guest_dir().join("disk.img")).unwrap();
    let deployments: Vec<String> = entries.iter().map(|(_, deployment)| short(deployment)).collect();
    assert_eq!(deployments, vec![short(&v1)], "the disk's boot entries after the rollback");
    eprintln!("{}", lab.timings(&boots));
}

#[test]
fn a_passing_health_check_keeps_the_new_deployment() {
    let lab = TestLab::new("keep");
    let (served, v1) = image::served_copy(lab.dir());
    let (v2, disk) = lab.install_with_update(
        &served,
        &v1,
        "v2-accepted",
        &[("usr/etc/greenboot/check/required.d/50-accept-upgrade.sh", PASS_CHECK)],
    );

    let launcher = lab.start_launcher(&disk);
    let boots =
        lab.wait_for_boots(Duration::from_secs(900), |boots| boots.len() >= 3 || boots.iter().any(|boot| boot.healthy));
    // The healthy verdict is in; power the guest off the hard way.
    lab.destroy(launcher);

    let console = lab.console();
    assert!(
        console.contains(&format!("{} deployment={v2}.0", boot::HEALTHY_MARK)),
        "the new deployment did not report healthy:\n{}",
        lab.console_tail()
    );
    assert!(boots.iter().all(|boot| !boot.fallback), "nothing may fall back: {boots:#?}");
    // The counter holds it as good: the next boot is v2 again, not a fallback.
    let entries = launcher::read_entries(&lab.guest_dir().join("disk.img")).unwrap();
    let mut counter: boot::BootCounter =
        serde_json::from_slice(&std::fs::read(lab.guest_dir().join("boot.json")).unwrap()).unwrap();
    assert!(counter.good, "the boot counter was not cleared: {counter:?}");
    let next = boot::choose(&entries, &mut counter).unwrap();
    assert_eq!((short(&next.deployment), next.fallback), (short(&v2), false));
    assert_eq!(entries.len(), 2, "v2 and v1 both stay deployed");
    // systemd-update-done's stamp (edgelab-update-done.service): the next
    // boot of v2 skips the ConditionNeedsUpdate= units (systemd-sysusers).
    let disk = lab.guest_dir().join("disk.img");
    let etc = format!("/ostree/deploy/{}/deploy/{v2}.0/etc", installer::OS_NAME);
    let stamps: Vec<String> = edgelab::tools::debugfs::list_dir(&disk, &etc)
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .filter(|name| name == ".updated")
        .collect();
    assert_eq!(stamps, vec![".updated".to_string()], "no /etc/.updated in v2's deployment after its healthy boot");
    // The generators the install stage masks are masked in the guest.
    let generators = edgelab::tools::debugfs::list_dir(&disk, &format!("{etc}/systemd/system-generators")).unwrap();
    assert_eq!(
        generators.len(),
        edgelab::stages::install::MASKED_GENERATORS.len(),
        "masked generators in v2's /etc: {generators:?}"
    );
}

/// A host whose KVM runs the probe's boot sector but faults under a real
/// kernel (`run/accel.json` says kvm, as the probe left it): the first boot
/// is stopped on qemu's "KVM internal error", counts as no attempt, and the
/// same entry boots again under TCG, healthy; the host stays on TCG.
#[test]
fn a_kvm_fault_falls_back_to_tcg_and_is_not_an_attempt() {
    kvm_fault_falls_back("kvmfault", None, "KVM internal error. Suberror: 1");
}

/// The other face of a broken KVM, seen on this kind of host: qemu runs
/// with nothing on the console for 101 s before it reports the fault. The
/// stand-in stays silent for 10 minutes; the launcher must not wait for it.
#[test]
fn a_silent_kvm_falls_back_to_tcg_within_seconds() {
    kvm_fault_falls_back("kvmstall", Some(600), "nothing on the console 15s after qemu started under KVM");
}

/// A guest whose KVM boot faults (qemu's message after `stall` seconds of
/// silence, or at once) is booted again under TCG: `fault` recorded, no
/// attempt counted, the host kept on TCG.
fn kvm_fault_falls_back(name: &str, stall: Option<u64>, fault: &str) {
    let lab = TestLab::new(name);
    let (served, v1) = image::served_copy(lab.dir());
    let (v2, disk) = lab.install_with_update(
        &served,
        &v1,
        "v2-accepted",
        &[("usr/etc/greenboot/check/required.d/50-accept-upgrade.sh", PASS_CHECK)],
    );
    let probed = r#"{"accel":"kvm","reason":"a boot sector ran under KVM (probe)"}"#;
    lab.store.save_state("accel.json", probed.as_bytes()).unwrap();

    let launcher = lab.start_launcher_with(&disk, "auto", Some(&fake_qemu_dir(lab.dir(), stall)));
    let boots = lab.wait_for_boots(Duration::from_secs(900), |boots| boots.iter().any(|boot| boot.verdict_seen));
    let status = lab.status();
    lab.destroy(launcher);

    let summary: Vec<String> = boots
        .iter()
        .map(|boot| {
            format!(
                "{} {} fallback={} healthy={} fault={}",
                short(&boot.deployment),
                boot.accel.as_str(),
                boot.fallback,
                boot.healthy,
                boot.host_fault.as_deref().unwrap_or("-")
            )
        })
        .collect();
    let expected = vec![
        format!("{} kvm fallback=false healthy=false fault={fault}", short(&v2)),
        format!("{} tcg fallback=false healthy=true fault=-", short(&v2)),
    ];
    assert_eq!(summary, expected, "boots:\n{boots:#?}\nconsole:\n{}", lab.console_tail());
    // The fault was no attempt: the TCG boot was still attempt 1.
    assert!(boots[1].reason.contains("attempt 1 of 3"), "{boots:#?}");
    let counter: boot::BootCounter =
        serde_json::from_slice(&std::fs::read(lab.guest_dir().join("boot.json")).unwrap()).unwrap();
    assert_eq!((counter.good, counter.failed_boots), (true, 0), "{counter:?}");
    // The host stays on TCG, and says why.
    let accel = guests::load_accel_state(&lab.store).unwrap();
    assert_eq!(accel.accel, edgelab::tools::qemu::Accel::Tcg);
    assert_eq!(accel.host_fault.as_deref(), Some(fault));
    assert!(status.contains("accelerator tcg (KVM faulted under a guest"), "lab status:\n{status}");
    assert!(status.contains("1 boot(s) stopped by a host fault (not counted)"), "lab status:\n{status}");
    let launcher_log = std::fs::read_to_string(lab.guest_dir().join("launcher.err")).unwrap();
    assert!(launcher_log.contains("switching to tcg"), "launcher log:\n{launcher_log}");
    let tcg_started = boots[1].started_unix.saturating_sub(boots[0].started_unix);
    eprintln!(
        "KVM fault: seen {:.1}s after qemu started; TCG boot started {tcg_started}s after the KVM one\n{}",
        boots[0].seconds,
        lab.timings(&boots)
    );
}

/// A fresh install (one deployment, nothing to fall back to) whose health
/// check always fails: three counted red boots that reboot, then, as GRUB
/// boots the one entry again, red boots without a counter, where greenboot's
/// red scripts run and the guest stays up for a person to look at. A power
/// cycle after that boots it again; the launcher never gives up or panics.
#[test]
fn a_lone_deployment_keeps_booting_after_red_boots() {
    let lab = TestLab::new("lonered");
    let (served, _) = image::served_copy(lab.dir());
    let red = image::commit_on_top(
        &served.join("repo"),
        "always-red",
        &[
            ("usr/etc/greenboot/check/required.d/50-refuse.sh", FAIL_CHECK),
            ("usr/etc/greenboot/red.d/50-say-so.sh", RED_SCRIPT),
        ],
    );
    let disk = lab.install_only(&served, &red);
    let launcher = lab.start_launcher_with(&disk, "tcg", None);
    let mut launcher = Some(launcher);
    let boots = lab.wait_for_boots(Duration::from_secs(1800), |boots| boots.len() >= 4);
    assert!(boots[3].verdict_seen, "the fourth boot gave no verdict: {boots:#?}");
    // Uncounted, the red guest stays up: power it off and on, as a person would.
    let qemu_pid = guests::load_state(&lab.guest_dir()).and_then(|state| state.qemu_pid);
    edgelab::tools::process::kill_hard(qemu_pid.expect("qemu runs the red guest")).unwrap();
    let boots = lab.wait_for_boots(Duration::from_secs(600), |boots| boots.len() >= 5 && boots[4].verdict_seen);
    let status = lab.status();
    assert!(launcher.as_mut().unwrap().try_wait().unwrap().is_none(), "the launcher ended");
    lab.destroy(launcher.take().unwrap());

    let summary: Vec<String> = boots
        .iter()
        .map(|boot| {
            format!("{} fallback={} red={}", short(&boot.deployment), boot.fallback, !boot.healthy && boot.verdict_seen)
        })
        .collect();
    let expected = vec![format!("{} fallback=false red=true", short(&red)); 5];
    assert_eq!(summary, expected, "boots:\n{boots:#?}\nconsole:\n{}", lab.console_tail());
    for (index, boot) in boots.iter().enumerate() {
        let expect = match index {
            0..=2 => format!("attempt {} of 3", index + 1),
            _ => format!("failed {index} boots, no deployment to fall back to"),
        };
        assert!(boot.reason.contains(&expect), "boot {}: {:?} lacks {expect:?}", index + 1, boot.reason);
    }
    let console = lab.console();
    assert_eq!(console.matches("edgelab test: red script ran").count(), 5, "red scripts:\n{}", lab.console_tail());
    assert!(console.contains("manual intervention necessary"), "{}", lab.console_tail());
    assert!(status.contains("no deployment to fall back to"), "lab status:\n{status}");
    assert!(status.contains("last boot red"), "lab status:\n{status}");
    eprintln!("{}", lab.timings(&boots));
}

#[test]
fn the_lab_network_is_made_owned_and_removed() {
    use edgelab::{guests::netns, tools::ip};
    let lab = TestLab::new("network");
    let parsed = edgelab::lab::parse_lab_file(&lab.dir().join("lab.kdl")).unwrap();
    let parsed = edgelab::graph::resolve_network(&edgelab::graph::resolve_backends(&parsed, false), None).unwrap();
    let segment = netns::segment(&parsed);
    assert_eq!(segment.host.to_string(), "10.88.0.1/24");
    assert_eq!(segment.vip.to_string(), "10.88.0.100/24");
    assert_eq!(segment.port("edge-test").unwrap().address.to_string(), "10.88.0.11/24");

    // A crashed run's leftover: the namespace exists, half made.
    if ip::netns_exists(&segment.netns) {
        ip::delete_netns(&segment.netns).unwrap();
    }
    ip::add_netns(&segment.netns).unwrap();
    assert!(!netns::is_up(&segment));
    netns::up(&lab.store, &segment).unwrap();
    assert!(netns::is_up(&segment), "the bridge and taps after `up`");
    assert_eq!(ip::addresses(&segment.netns, &segment.bridge).unwrap(), vec!["10.88.0.1/24".to_string()]);
    assert!(ip::link_exists(&segment.netns, "edgetap0"));
    // A second `up` changes nothing.
    netns::up(&lab.store, &segment).unwrap();
    // The lab's addresses exist inside the namespace only.
    let host_view = edgelab::tools::Cmd::new("ip").args(["-4", "-o", "addr"]).run().unwrap().stdout;
    assert!(!host_view.contains("10.88.0.1/24"), "the lab address leaked to the host: {host_view}");

    assert_eq!(netns::down(&lab.store).unwrap(), Some(segment.netns.clone()));
    assert!(!ip::netns_exists(&segment.netns));
    assert_eq!(netns::down(&lab.store).unwrap(), None, "down twice removes nothing more");
}

/// A store and lab file in a temporary folder, with one guest `edge-test`.
struct TestLab {
    tmp: tempfile::TempDir,
    store: Store,
}

impl TestLab {
    fn new(name: &str) -> TestLab {
        // Same file system as the cache, so copies can reflink.
        let tmp = tempfile::Builder::new().prefix(&format!("edgelab-guests-{name}-")).tempdir_in("/var/tmp").unwrap();
        let lab = format!(
            "lab \"guest-test\" {{\n    backend \"local\"\n}}\nnetwork {{\n    namespace \"edgelab-test-{name}-{}\"\n}}\n\
             image \"v1\" type=\"edge-commit\" blueprint=\"RFE\" ref=\"{}\"\nblueprint \"RFE\" file=\"RFE.toml\"\n\
             kickstart template=\"edge.ks.in\" image=\"v1\" user=\"core\"\n\
             guest \"edge-test\" role=\"primary\" vrrp-state=\"MASTER\" priority=255 {{\n    memory \"1GiB\"\n    vcpus 2\n}}\n",
            std::process::id(),
            image::OSTREE_REF
        );
        std::fs::write(tmp.path().join("lab.kdl"), lab).unwrap();
        std::fs::write(tmp.path().join("RFE.toml"), "name = \"RFE\"\n").unwrap();
        std::fs::write(tmp.path().join("edge.ks.in"), "").unwrap();
        let store = Store::open(&tmp.path().join("artifacts")).unwrap();
        TestLab { tmp, store }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn guest_dir(&self) -> PathBuf {
        guests::guest_dir(&self.store, "edge-test").unwrap()
    }

    /// The installer's spec for `commit` pulled from `pull_url`.
    fn spec(&self, pull_url: String, commit: Option<&str>) -> installer::InstallSpec {
        installer::InstallSpec {
            remote_url: "http://10.88.0.1:8000/repo/".into(),
            pull_url: Some(pull_url),
            ostree_ref: image::OSTREE_REF.into(),
            commit: commit.map(String::from),
            kargs: installer::default_kargs(),
            config: installer::GuestConfig {
                hostname: "edge-test".into(),
                user: Some(installer::User { name: "core".into(), password_hash: None }),
                trees: vec![local_guest_tree(self.dir())],
                enable: vec!["edgelab-greenboot.service".into(), "edgelab-update-done.service".into()],
                network: None,
                configure_script: None,
            },
        }
    }

    /// Installs `commit` of the served repo (checking it is the one
    /// deployed) into a sysroot; returns the sysroot.
    fn install_sysroot(&self, served: &Path, commit: &str) -> PathBuf {
        let started = Instant::now();
        let server = pull_server::start(served, &self.dir().join("file-server.log")).unwrap();
        let spec = self.spec(format!("{}repo/", server.base_url), Some(commit));
        let sysroot = self.dir().join("sysroot");
        let installed = installer::install_sysroot(&spec, &sysroot).unwrap();
        let counts = server.finish().counters;
        assert_eq!(installed.commit, commit, "the installer deployed another commit than the image's");
        assert_eq!(installed.deployment, format!("{commit}.0"));
        eprintln!(
            "install: pull+deploy+configure {:.1?} ({} requests, {} bytes)",
            started.elapsed(),
            counts.requests,
            counts.bytes_sent
        );
        sysroot
    }

    /// The sysroot as the guest's pristine disk.
    fn write_disk(&self, sysroot: &Path) -> PathBuf {
        let started = Instant::now();
        let disk = self.dir().join("pristine.img");
        installer::write_disk(sysroot, &disk, 4 << 30).unwrap();
        installer::remove_sysroot(sysroot).unwrap();
        eprintln!("mkfs {:.1?}", started.elapsed());
        disk
    }

    /// A fresh install of `commit` alone: one deployment.
    fn install_only(&self, served: &Path, commit: &str) -> PathBuf {
        let sysroot = self.install_sysroot(served, commit);
        self.write_disk(&sysroot)
    }

    /// Installs the served commit, then commits `files` on top and deploys
    /// that as the pending upgrade, as the guest's update staging would.
    /// Returns the upgrade's commit and the pristine disk.
    fn install_with_update(&self, served: &Path, v1: &str, subject: &str, files: &[(&str, &str)]) -> (String, PathBuf) {
        let sysroot = self.install_sysroot(served, v1);
        let v2 = image::commit_on_top(&served.join("repo"), subject, files);
        let server = pull_server::start(served, &self.dir().join("file-server-update.log")).unwrap();
        let spec = self.spec(format!("{}repo/", server.base_url), None);
        let updated = installer::pull_and_deploy(&spec, &sysroot).unwrap();
        let counts = server.finish().counters;
        assert_eq!(updated.commit, v2);
        eprintln!("update: {} requests, {} bytes", counts.requests, counts.bytes_sent);
        (v2, self.write_disk(&sysroot))
    }

    /// The guest's run state as `lab up` leaves it, and its launcher started
    /// as the real background process, with the accelerator CI's
    /// `EDGELAB_ACCEL` (or the probe) gives it.
    fn start_launcher(&self, pristine: &Path) -> Child {
        let accel = std::env::var(guests::ACCEL_ENV).unwrap_or_else(|_| "auto".into());
        self.start_launcher_with(pristine, &accel, None)
    }

    /// `start_launcher` with `EDGELAB_ACCEL=accel`, and `path_first` (a
    /// folder holding a stand-in qemu) first on its PATH.
    fn start_launcher_with(&self, pristine: &Path, accel: &str, path_first: Option<&Path>) -> Child {
        let dir = self.guest_dir();
        installer::copy_sparse(pristine, &dir.join("disk.img")).unwrap();
        let state = GuestState {
            name: "edge-test".into(),
            memory_mib: 1024,
            vcpus: 2,
            boot_timeout_s: 420,
            ..GuestState::default()
        };
        guests::save_state(&dir, &state).unwrap();
        let mut cmd = edgelab::tools::Cmd::new(env!("CARGO_BIN_EXE_xtask")).env(guests::ACCEL_ENV, accel);
        if let Some(dir) = path_first {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd = cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        let child = cmd
            .arg("--lab")
            .arg(self.dir().join("lab.kdl"))
            .arg("--store")
            .arg(self.store.root())
            .args(["guest", "run-launcher", "edge-test"])
            .spawn_logged(&dir.join("launcher.err"))
            .unwrap();
        // The launcher records its own pid; nothing here writes guest.json.
        guests::wait_for_launcher(&dir, child.id(), &dir.join("launcher.err")).unwrap();
        child
    }

    fn wait_for_boots(&self, limit: Duration, done: impl Fn(&[BootRecord]) -> bool) -> Vec<BootRecord> {
        let started = Instant::now();
        loop {
            let boots = guests::boots(&self.guest_dir());
            if done(&boots) {
                return boots;
            }
            // A launcher that ended (a zombie until the test reaps it) boots
            // nothing more: fail now, with what it said, not after `limit`.
            let launcher = guests::load_state(&self.guest_dir()).and_then(|state| state.launcher_pid);
            let ended = launcher.is_some_and(|pid| !edgelab::tools::process::is_alive(pid));
            if ended {
                panic!(
                    "the launcher ended before it was done; boots so far:\n{boots:#?}\nlauncher:\n{}\nqemu:\n{}",
                    std::fs::read_to_string(self.guest_dir().join("launcher.err")).unwrap_or_default(),
                    std::fs::read_to_string(self.guest_dir().join("qemu.log")).unwrap_or_default()
                );
            }
            if started.elapsed() > limit {
                panic!(
                    "not done within {limit:?}; boots so far:\n{boots:#?}\nlauncher:\n{}\nconsole:\n{}",
                    std::fs::read_to_string(self.guest_dir().join("launcher.err")).unwrap_or_default(),
                    self.console_tail()
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// What `lab status` prints for this lab.
    fn status(&self) -> String {
        let out = edgelab::tools::Cmd::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(self.dir().join("lab.kdl"))
            .arg("--store")
            .arg(self.store.root())
            .args(["lab", "status"])
            .run();
        match out {
            Ok(out) => out.stdout,
            Err(err) => panic!("{err:#}"),
        }
    }

    fn destroy(&self, mut launcher: Child) {
        guests::destroy(&self.store, "edge-test").unwrap();
        launcher.wait().unwrap();
        let state = guests::load_state(&self.guest_dir()).unwrap();
        assert!(!guests::is_running(&state));
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.guest_dir().join("console.log")).unwrap_or_default()
    }

    fn console_tail(&self) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn timings(&self, boots: &[BootRecord]) -> String {
        boots
            .iter()
            .map(|boot| {
                format!(
                    "boot {} fallback={} healthy={}: verdict after {:.1}s ({:?}{})\n",
                    short(&boot.deployment),
                    boot.fallback,
                    boot.healthy,
                    boot.seconds,
                    boot.accel,
                    boot.host_fault.as_deref().map(|fault| format!(", host fault: {fault}")).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        // Never leave a guest running, whatever failed.
        guests::destroy(&self.store, "edge-test").ok();
    }
}

/// A folder whose `qemu-system-x86_64` is the stand-in for qemu on a host
/// whose KVM faults (tests/support/fake_qemu_kvm_fault.sh), silent for
/// `stall` seconds before the fault when given.
fn fake_qemu_dir(dir: &Path, stall: Option<u64>) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_qemu_kvm_fault.sh");
    let bin = dir.join("fake-qemu-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(script, bin.join("qemu-system-x86_64")).unwrap();
    if let Some(seconds) = stall {
        std::fs::write(bin.join("stall-seconds"), seconds.to_string()).unwrap();
    }
    bin
}

/// guest/local laid out as the install stage lays it over the guest's root.
fn local_guest_tree(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("guest/local");
    let tree = dir.join("local-tree");
    edgelab::stages::install::lay_out_local_tree(&source, &tree).unwrap();
    tree
}

fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}
