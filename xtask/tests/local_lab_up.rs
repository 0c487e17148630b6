//! `cargo xtask lab up` end to end in the local world: the real binary with
//! the project's lab.kdl (copied with `guest/` into a temp folder, its
//! namespace renamed so a developer's own lab is untouched), a temp store
//! pre-seeded with the warm composer cache when there is one
//! (/var/tmp/edgelab-test-cache/composer; cold otherwise, ~10 more minutes).
//! Asserts the summary, that the VIP answers the v1 page from inside the
//! lab's namespace, that a second `lab up` runs nothing, that `lab watch`
//! upgrades the running guests after a package is added to the blueprint
//! (`guest upgrade --all` then finds them current), and that `lab down`
//! removes the namespace. (A forced recompose keeping what follows cached is
//! `local_store_current`'s, on a lab without guests.) A guard runs
//! `lab down` however the test ends. Needs root, qemu, ostree, mmdebstrap,
//! podman and docker-registry (`cargo xtask test` installs them). The file
//! is named so cargo runs it after `local_composer`, whose cache it reuses.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use edgelab::tools::{Cmd, ip};

const NETNS: &str = "edgelab-lab-up-test";
const WARM_CACHE: &str = "/var/tmp/edgelab-test-cache/composer";

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

struct Lab {
    _dir: tempfile::TempDir,
    lab_file: PathBuf,
    store: PathBuf,
}

impl Lab {
    fn xtask(&self, args: &[&str], timeout: Duration) -> edgelab::tools::Output {
        Cmd::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(&self.lab_file)
            .arg("--store")
            .arg(&self.store)
            .args(args)
            .timeout(timeout)
            .run_unchecked()
            .unwrap_or_else(|err| panic!("running xtask {args:?}: {err:#}"))
    }
}

/// Runs `lab down` when the test ends, passed or not.
impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.xtask(&["lab", "down"], Duration::from_secs(120));
        eprintln!("lab down: {}{}", out.stdout, out.stderr);
    }
}

fn make_lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let root = project_root();
    let lab = std::fs::read_to_string(root.join("lab.kdl")).unwrap();
    let lab = lab.replace("namespace \"edgelab\"", &format!("namespace \"{NETNS}\""));
    assert!(lab.contains(NETNS), "lab.kdl no longer names its namespace `edgelab`");
    let lab_file = dir.path().join("lab.kdl");
    std::fs::write(&lab_file, lab).unwrap();
    Cmd::new("cp").arg("-a").arg(root.join("guest")).arg(dir.path()).run().unwrap();
    // In the repository the app's crate shares the workspace's Cargo.lock; the
    // copy stands alone, and a lock cargo wrote during the first build would
    // change the container stage's inputs for the second `lab up`.
    Cmd::new("cargo")
        .args(["generate-lockfile", "--offline", "--manifest-path"])
        .arg(dir.path().join("guest/app/httpd/Cargo.toml"))
        .run()
        .unwrap();
    let store = dir.path().join("artifacts");
    std::fs::create_dir_all(store.join("run")).unwrap();
    if Path::new(WARM_CACHE).is_dir() {
        Cmd::new("cp").args(["-a", WARM_CACHE]).arg(store.join("run")).timeout(Duration::from_secs(600)).run().unwrap();
    }
    Lab { _dir: dir, lab_file, store }
}

#[test]
fn lab_up_serves_the_v1_page_on_the_vip_and_lab_down_removes_the_network() {
    let lab = make_lab();
    let started = Instant::now();
    let up = lab.xtask(&["lab", "up"], Duration::from_secs(3600));
    let up_time = started.elapsed();
    assert!(up.status.success(), "lab up failed:\n{}\n{}", up.stdout, up.stderr);
    for stage in ["compose v1", "repo served", "install edge-device-1", "install edge-device-2"] {
        assert!(up.stdout.contains(stage), "the summary does not list `{stage}`:\n{}", up.stdout);
    }
    assert!(!up.stdout.contains("FAILED"), "{}", up.stdout);
    assert!(ip::netns_exists(NETNS), "lab up did not create the namespace {NETNS}");
    eprintln!("lab up took {up_time:?}");

    // Booting under TCG and the first pull of the container take minutes.
    let deadline = Instant::now() + Duration::from_secs(900);
    let page = loop {
        let out = ip::netns_exec(NETNS, "curl")
            .args(["-s", "--max-time", "60", "http://10.88.0.100:8080/"])
            .timeout(Duration::from_secs(90))
            .run_unchecked()
            .unwrap();
        if out.status.success() && out.stdout.contains("<title>RHEL for Edge</title>") {
            break out.stdout;
        }
        assert!(Instant::now() < deadline, "the VIP did not answer the v1 page within 15 minutes; last: {out:?}");
        std::thread::sleep(Duration::from_secs(5));
    };
    assert!(!page.contains("auto-update"), "the VIP served the v2 page:\n{page}");
    eprintln!("VIP answered after {:?} from the start", started.elapsed());

    // The installs pulled from the lab's own file server (from the lab
    // host's address, inside the namespace), so its counts show them.
    let status = lab.xtask(&["lab", "status"], Duration::from_secs(120));
    let served: u64 = status
        .stdout
        .lines()
        .find(|line| line.starts_with("file-server: running"))
        .and_then(|line| line.split(": ").nth(2)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("lab status shows no running file server with counts:\n{}", status.stdout));
    let log_dir = lab.store.join("run/file-server");
    let host_pulls: usize = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default())
        .map(|log| log.lines().filter(|line| line.contains(" 10.88.0.1:") && line.contains("GET /repo/")).count())
        .sum();
    // Two installs, each through the served repo's from-scratch delta: a
    // handful of requests each, not one per object (thousands).
    assert!(
        (2 * 5..=2 * 50).contains(&host_pulls),
        "the lab file server logged {host_pulls} install requests from 10.88.0.1 (two installs, at most 50 each)"
    );
    assert!(served as usize >= host_pulls, "the file server counts {served} requests, its log {host_pulls}");
    eprintln!("the lab file server served {served} requests, {host_pulls} of them to the installs");

    let again = Instant::now();
    let second = lab.xtask(&["lab", "up"], Duration::from_secs(600));
    assert!(second.status.success(), "second lab up failed:\n{}\n{}", second.stdout, second.stderr);
    assert!(!second.stdout.contains(" ran "), "a second lab up ran stages:\n{}", second.stdout);
    eprintln!("second lab up took {:?}", again.elapsed());

    watch_upgrades_the_guests_after_a_blueprint_edit(&lab);

    let down = lab.xtask(&["lab", "down"], Duration::from_secs(120));
    assert!(down.status.success(), "lab down failed:\n{}\n{}", down.stdout, down.stderr);
    assert!(!ip::netns_exists(NETNS), "lab down left the namespace {NETNS}");
}

/// The developer's inner loop on the lab that is up: `lab watch` runs, a
/// package is added to the blueprint, and without another command the
/// running guests are upgraded onto the recomposed image (the channel
/// follows v1) through their own stage and apply services, healthy, with
/// the package present and the new commit booted, before the installs'
/// from-scratch delta is built (then the lab is current again). `guest upgrade --all
/// --json` then finds both already on it. The demo's greenboot check
/// fails any upgrade while /etc/greenboot/orig.txt holds the install's
/// commit (the rollback scenario, which e2e asserts with the failed check
/// named and quoted), so it is removed first, as the upgrade scenario does.
fn watch_upgrades_the_guests_after_a_blueprint_edit(lab: &Lab) {
    for guest in GUESTS {
        let out =
            lab.xtask(&["guest", "exec", guest, "--", "rm", "-f", "/etc/greenboot/orig.txt"], Duration::from_secs(120));
        assert!(out.status.success(), "allowing the upgrade on {guest}: {out:?}");
    }
    let log = lab.store.join("run/watch-test.log");
    let mut watch = Cmd::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--lab")
        .arg(&lab.lab_file)
        .arg("--store")
        .arg(&lab.store)
        .args(["lab", "watch"])
        .spawn_logged(&log)
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let watching =
        wait_until(Duration::from_secs(60), "lab watch to start watching", || read_log().contains("watching "));
    assert!(watching, "lab watch did not start:\n{}", read_log());

    let blueprint = lab.lab_file.parent().unwrap().join("guest/blueprints/RFE.toml");
    let text = std::fs::read_to_string(&blueprint).unwrap();
    std::fs::write(&blueprint, format!("{text}\n[[packages]]\nname = \"{ADDED}\"\nversion = \"*\"\n")).unwrap();
    let saved = Instant::now();
    let done = wait_until(Duration::from_secs(1800), "lab watch to upgrade the guests", || {
        let text = read_log();
        text.contains("the lab is current") || text.contains("this round failed")
    });
    let edit_to_verdict = saved.elapsed();
    watch.kill().ok();
    watch.wait().ok();
    let text = read_log();
    eprintln!("lab watch after the edit ({:.1?} to the verdict line):\n{text}", edit_to_verdict);
    assert!(done && text.contains("2 of 2 guest(s) healthy on v1"), "lab watch did not upgrade both guests:\n{text}");
    // The upgrade did not wait for the installs' from-scratch delta, which
    // was built after it.
    let upgraded = text.find("guest(s) healthy on").unwrap();
    let deltas = text.find("building what installs need").expect("the lab's own repo built after the upgrade");
    assert!(text.contains("without the installs' from-scratch delta first") && upgraded < deltas, "{text}");
    assert!(!text.contains("ROLLED BACK"), "{text}");

    let upgrade = lab.xtask(&["guest", "upgrade", "--all", "--json"], Duration::from_secs(600));
    assert!(upgrade.status.success(), "guest upgrade --all: {upgrade:?}");
    let reports: serde_json::Value = serde_json::from_str(&upgrade.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), GUESTS.len(), "{reports:?}");
    for report in reports {
        assert_eq!(report["verdict"], "already-current", "{report}");
        let guest = report["guest"].as_str().unwrap();
        let commit = report["to_commit"].as_str().unwrap();
        assert!(text.contains(&commit[..12]), "the watch did not name the channel's new commit {commit}:\n{text}");
        let status = lab.xtask(&["guest", "exec", guest, "--", "ostree", "admin", "status"], Duration::from_secs(120));
        let booted = status.stdout.lines().find(|line| line.starts_with("* ")).unwrap_or_default();
        assert!(booted.contains(commit), "{guest} does not boot {commit}:\n{}", status.stdout);
        let found = lab.xtask(
            &["guest", "exec", guest, "--", "sh", "-c", &format!("command -v {ADDED}")],
            Duration::from_secs(120),
        );
        assert!(found.status.success(), "{ADDED} is not on {guest} after the upgrade: {found:?}");
    }
}

/// The lab's guests (lab.kdl).
const GUESTS: [&str; 2] = ["edge-device-1", "edge-device-2"];
/// The package the edit adds: small, in Debian, not in the image yet.
const ADDED: &str = "tree";

/// Polls `done` every 2 s until it holds or `limit` passes; whether it held.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("gave up waiting for {what} after {limit:?}");
    false
}
