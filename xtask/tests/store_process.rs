//! The store under real `xtask` processes: SIGKILL at random points of
//! `lab up` never leaves a store that `artifacts verify` rejects, two `lab up`
//! at once on one store both succeed and build each artifact once, and
//! `--no-wait` fails clearly while another process holds the lock.
//!
//! The lab is small and only has stages that exist and run fast: many
//! blueprint stages, each its own TOML file, each writing several files, so a
//! run spends most of its time publishing (hashing, fsync, rename, refs).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use edgelab::{
    store::{LockWait, Store},
    tools::Cmd,
};

const N_BLUEPRINTS: usize = 24;

struct TestLab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    lab: PathBuf,
    store: PathBuf,
}

impl TestLab {
    fn new() -> TestLab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut kdl = String::from("lab \"store-test\" {\n    backend \"local\"\n}\n");
        fs::create_dir(dir.join("blueprints")).unwrap();
        for idx in 0..N_BLUEPRINTS {
            kdl.push_str(&format!("blueprint \"bp{idx:02}\" file=\"blueprints/bp{idx:02}.toml\"\n"));
        }
        kdl.push_str("store keep-generations=2\n");
        let lab = dir.join("lab.kdl");
        fs::write(&lab, kdl).unwrap();
        let test_lab = TestLab { store: dir.join("artifacts"), lab, dir, _tmp: tmp };
        test_lab.write_blueprints(0);
        test_lab
    }

    /// Writes every blueprint; a new `revision` changes them all, so every
    /// blueprint stage has a new key and runs again.
    fn write_blueprints(&self, revision: usize) {
        for idx in 0..N_BLUEPRINTS {
            let mut toml = format!(
                "# revision {revision}\nname = \"bp{idx:02}\"\ndescription = \"blueprint {idx}\"\nversion = \"0.0.{revision}\"\n"
            );
            for package in 0..200 {
                toml.push_str(&format!("\n[[packages]]\nname = \"package-{idx}-{package}\"\nversion = \"*\"\n"));
            }
            fs::write(self.dir.join(format!("blueprints/bp{idx:02}.toml")), toml).unwrap();
        }
    }

    fn xtask(&self, args: &[&str]) -> Cmd {
        Cmd::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(&self.lab)
            .arg("--store")
            .arg(&self.store)
            .arg("--quiet")
            .args(args)
            .timeout(Duration::from_secs(300))
    }

    /// Runs `xtask ARGS`, which must succeed; returns its stdout.
    #[track_caller]
    fn run_ok(&self, args: &[&str]) -> String {
        let output = self.xtask(args).run_unchecked().unwrap();
        assert!(
            output.status.success(),
            "xtask {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            output.status,
            output.stdout,
            output.stderr
        );
        output.stdout
    }

    fn spawn(&self, args: &[&str], log: &Path) -> Child {
        self.xtask(args).spawn_logged(log).unwrap()
    }

    /// `artifacts verify` finds nothing corrupt.
    #[track_caller]
    fn assert_verifies_clean(&self, context: &str) {
        let output = self.xtask(&["artifacts", "verify"]).run_unchecked().unwrap();
        assert!(
            output.status.success() && output.stdout.contains(", corrupt 0"),
            "{context}: verify failed\nstdout:\n{}\nstderr:\n{}",
            output.stdout,
            output.stderr
        );
    }

    /// Folders in the store named like keys.
    fn key_folders(&self) -> Vec<String> {
        fs::read_dir(&self.store)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }

    #[track_caller]
    fn assert_nothing_to_run(&self) {
        let plan = self.run_ok(&["lab", "plan"]);
        assert!(plan.contains(&format!("{} stages, 0 to run", N_BLUEPRINTS + 1)), "plan:\n{plan}");
    }
}

#[test]
fn sigkill_at_random_points_of_lab_up_leaves_a_valid_store() {
    let lab = TestLab::new();
    lab.run_ok(&["lab", "up"]);
    lab.assert_nothing_to_run();
    // Measure how long a rebuild of every blueprint takes (what the kills
    // interrupt), to spread the kills over it; the faster of two, so that
    // nearly every kill lands before the end.
    let mut full_run = Duration::MAX;
    for revision in [1, 2] {
        lab.write_blueprints(revision);
        let started = Instant::now();
        lab.run_ok(&["lab", "up"]);
        full_run = full_run.min(started.elapsed());
    }
    eprintln!("rebuilding {N_BLUEPRINTS} blueprints takes {full_run:?}");

    let log = lab.dir.join("up.log");
    let mut n_runs = 0;
    let mut n_killed_mid_run = 0;
    let mut delays = Vec::new();
    // Kills that land after the run finished test nothing: go on until 55
    // runs were cut short (bounded, in case the machine's speed swings).
    while n_killed_mid_run < 55 && n_runs < 150 {
        n_runs += 1;
        lab.write_blueprints(n_runs + 2);
        let delay = full_run.mul_f64(fastrand::f64());
        let mut child = lab.spawn(&["lab", "up"], &log);
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        if !finished {
            n_killed_mid_run += 1;
            delays.push(delay);
        }
        lab.assert_verifies_clean(&format!("run {n_runs}, killed after {delay:?}"));
    }
    eprintln!("{n_killed_mid_run} of {n_runs} runs killed mid-run");
    assert!(n_killed_mid_run >= 50, "only {n_killed_mid_run} runs were killed before they finished");
    // The kills are spread: early (start-up, first stages) and late (publishing).
    delays.sort();
    assert!(delays[0] < full_run / 4 && delays[delays.len() - 1] > full_run / 2, "delays {delays:?}");

    // A rerun completes what the killed runs left, and then all is fresh.
    let summary = lab.run_ok(&["lab", "up"]);
    assert!(summary.contains("0 not run"), "{summary}");
    lab.assert_nothing_to_run();
    lab.assert_verifies_clean("after the final run");
    // Nothing of the killed writers is left in scratch once the lock was taken again.
    assert_eq!(fs::read_dir(lab.store.join("scratch")).unwrap().count(), 0);
}

#[test]
fn two_lab_ups_at_once_both_succeed_and_build_each_artifact_once() {
    let lab = TestLab::new();
    let (log_a, log_b) = (lab.dir.join("a.log"), lab.dir.join("b.log"));
    let mut a = lab.spawn(&["lab", "up"], &log_a);
    let mut b = lab.spawn(&["lab", "up"], &log_b);
    let (status_a, status_b) = (a.wait().unwrap(), b.wait().unwrap());
    let (out_a, out_b) = (fs::read_to_string(&log_a).unwrap(), fs::read_to_string(&log_b).unwrap());
    assert!(status_a.success() && status_b.success(), "a:\n{out_a}\nb:\n{out_b}");
    // One of them built everything; the other waited and found it all cached.
    let n_ran = |out: &str| out.lines().filter(|line| line.contains(" ran ")).count();
    assert_eq!(n_ran(&out_a) + n_ran(&out_b), N_BLUEPRINTS + 1, "a:\n{out_a}\nb:\n{out_b}");
    lab.assert_verifies_clean("after two concurrent runs");
    assert_eq!(lab.key_folders().len(), N_BLUEPRINTS + 1);
    lab.assert_nothing_to_run();
}

#[test]
fn no_wait_fails_clearly_while_another_process_holds_the_lock() {
    let lab = TestLab::new();
    let store = Store::open(&lab.store).unwrap();
    let lock = store.lock(LockWait::NoWait).unwrap();

    let output = lab.xtask(&["--no-wait", "lab", "up"]).run_unchecked().unwrap();
    assert!(!output.status.success());
    let expected = format!(
        "error: the store {} is locked by another edgelab process (pid {}); rerun without --no-wait to wait for it",
        lab.store.join("lock").display(),
        std::process::id()
    );
    assert!(output.stderr.contains(&expected), "stderr:\n{}", output.stderr);

    // Without --no-wait it says it waits, and finishes once the lock is free.
    let log = lab.dir.join("wait.log");
    let mut child = lab.spawn(&["lab", "up"], &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string(&log).unwrap_or_default().contains("waiting for another edgelab process") {
        assert!(child.try_wait().unwrap().is_none(), "finished while the lock was held:\n{}", read(&log));
        assert!(Instant::now() < deadline, "no waiting message:\n{}", read(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(read(&log).contains(&format!("(pid {})", std::process::id())), "{}", read(&log));
    drop(lock);
    assert!(child.wait().unwrap().success(), "{}", read(&log));
    lab.assert_nothing_to_run();
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
