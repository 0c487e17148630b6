//! Local guests booted for real under qemu (TCG here: no nested KVM) from an
//! OSTree commit: the installer deploys the image's commit; a new deployment
//! whose health check fails three boots falls back to the previous one, which
//! the guest makes permanent (`ostree admin undeploy 0`); one whose check
//! passes is kept. The launcher runs as the real `guest run-launcher`
//! process. Boots take 30-90 s each; every wait has a deadline.

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

    let summary: Vec<String> = boots
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

    /// Installs the served commit (checking it is the one deployed), then
    /// commits `files` on top and deploys that as the pending upgrade, as
    /// the guest's update staging would. Returns the upgrade's commit and
    /// the pristine disk.
    fn install_with_update(&self, served: &Path, v1: &str, subject: &str, files: &[(&str, &str)]) -> (String, PathBuf) {
        let started = Instant::now();
        let server = pull_server::start(served, &self.dir().join("file-server.log")).unwrap();
        let spec = installer::InstallSpec {
            remote_url: "http://10.88.0.1:8000/repo/".into(),
            pull_url: Some(format!("{}repo/", server.base_url)),
            ostree_ref: image::OSTREE_REF.into(),
            commit: Some(v1.to_string()),
            kargs: installer::default_kargs(),
            config: installer::GuestConfig {
                hostname: "edge-test".into(),
                user: Some(installer::User { name: "core".into(), password_hash: None }),
                trees: vec![local_guest_tree(self.dir())],
                enable: vec!["edgelab-greenboot.service".into()],
                network: None,
                configure_script: None,
            },
        };
        let sysroot = self.dir().join("sysroot");
        let installed = installer::install_sysroot(&spec, &sysroot).unwrap();
        let install_counts = server.finish().counters;
        let install_time = started.elapsed();
        assert_eq!(installed.commit, v1, "the installer deployed another commit than the image's");
        assert_eq!(installed.deployment, format!("{v1}.0"));

        let v2 = image::commit_on_top(&served.join("repo"), subject, files);
        let server = pull_server::start(served, &self.dir().join("file-server-update.log")).unwrap();
        let spec = installer::InstallSpec { pull_url: Some(format!("{}repo/", server.base_url)), commit: None, ..spec };
        let updated = installer::pull_and_deploy(&spec, &sysroot).unwrap();
        let update_counts = server.finish().counters;
        assert_eq!(updated.commit, v2);

        let started_disk = Instant::now();
        let disk = self.dir().join("pristine.img");
        installer::write_disk(&sysroot, &disk, 4 << 30).unwrap();
        installer::remove_sysroot(&sysroot).unwrap();
        eprintln!(
            "install: pull+deploy+configure {:.1?} ({} requests, {} bytes); update {} requests, {} bytes; mkfs {:.1?}",
            install_time,
            install_counts.requests,
            install_counts.bytes_sent,
            update_counts.requests,
            update_counts.bytes_sent,
            started_disk.elapsed()
        );
        (v2, disk)
    }

    /// The guest's run state as `lab up` leaves it, and its launcher started
    /// as the real background process.
    fn start_launcher(&self, pristine: &Path) -> Child {
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
        let child = edgelab::tools::Cmd::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(self.dir().join("lab.kdl"))
            .arg("--store")
            .arg(self.store.root())
            .args(["guest", "run-launcher", "edge-test"])
            .spawn_logged(&dir.join("launcher.err"))
            .unwrap();
        let mut state = guests::load_state(&dir).unwrap();
        state.launcher_pid = Some(child.id());
        guests::save_state(&dir, &state).unwrap();
        child
    }

    fn wait_for_boots(&self, limit: Duration, done: impl Fn(&[BootRecord]) -> bool) -> Vec<BootRecord> {
        let started = Instant::now();
        loop {
            let boots = guests::boots(&self.guest_dir());
            if done(&boots) {
                return boots;
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
                    "boot {} fallback={} healthy={}: verdict after {:.1}s ({:?})\n",
                    short(&boot.deployment),
                    boot.fallback,
                    boot.healthy,
                    boot.seconds,
                    boot.accel
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

/// guest/local laid out as the install stage lays it over the guest's root.
fn local_guest_tree(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("guest/local");
    let tree = dir.join("local-tree");
    for (sub, dest) in [("bin", "etc/edgelab/bin"), ("units", "etc/systemd/system")] {
        let dest = tree.join(dest);
        std::fs::create_dir_all(&dest).unwrap();
        for entry in std::fs::read_dir(source.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
        }
    }
    tree
}

fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}
