//! The store converges in one run: random sequences of what happens to a
//! lab between two `lab up`s (an input touched or changed, a program gone
//! from PATH, the registry killed or its storage wiped, an artifact deleted,
//! a `lab up` killed with SIGKILL), and after every `lab up` that succeeded,
//! `lab plan` shows nothing to run and `artifacts verify` finds nothing
//! corrupt. Real `xtask` processes, real podman and the Debian
//! `docker-registry` on 127.0.0.1 at a free port; the lab is the demo's
//! container app and blueprint, so each run takes seconds.
//!
//! The seed is printed; `EDGELAB_CONVERGE_SEED=N` replays a sequence.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    time::Duration,
};

use edgelab::tools::Cmd;

const N_SEQUENCES: usize = 3;
const N_OPERATIONS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Up,
    TouchInput,
    ChangeInput,
    ProgramGoneFromPath,
    KillRegistry,
    WipeRegistryStorage,
    DeleteArtifact,
    KillDuringUp,
}

const OPERATIONS: [Operation; 8] = [
    Operation::Up,
    Operation::TouchInput,
    Operation::ChangeInput,
    Operation::ProgramGoneFromPath,
    Operation::KillRegistry,
    Operation::WipeRegistryStorage,
    Operation::DeleteArtifact,
    Operation::KillDuringUp,
];

struct TestLab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    lab: PathBuf,
    store: PathBuf,
    registries_conf_d: PathBuf,
    n_changes: usize,
}

impl TestLab {
    fn new() -> TestLab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for build in ["v1", "v2"] {
            fs::create_dir_all(dir.join("app").join(build)).unwrap();
            for entry in fs::read_dir(repo.join("guest/app").join(build)).unwrap() {
                let entry = entry.unwrap();
                fs::copy(entry.path(), dir.join("app").join(build).join(entry.file_name())).unwrap();
            }
        }
        fs::create_dir_all(dir.join("blueprints")).unwrap();
        fs::copy(repo.join("guest/blueprints/RFE.toml"), dir.join("blueprints/RFE.toml")).unwrap();
        // The container stage builds the app server from the lab root's
        // guest/app/httpd; the copy stands alone, with a lock of its own so
        // the first build does not write one (a change of its inputs).
        fs::create_dir_all(dir.join("guest/app")).unwrap();
        Cmd::new("cp").arg("-a").arg(repo.join("guest/app/httpd")).arg(dir.join("guest/app")).run().unwrap();
        Cmd::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["generate-lockfile", "--offline", "--manifest-path"])
            .arg(dir.join("guest/app/httpd/Cargo.toml"))
            .run()
            .unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let kdl = format!(
            r#"lab "converge" {{
    backend "local"
}}
registry port={port} insecure=#true {{
    address "127.0.0.1"
}}
container "httpd" {{
    build "v1" context="app/v1"
    build "v2" context="app/v2" from="v1"
    tag "prod" "v1"
}}
blueprint "RFE" file="blueprints/RFE.toml"
store keep-generations=2
"#
        );
        let lab = dir.join("lab.kdl");
        fs::write(&lab, kdl).unwrap();
        let registries_conf_d = dir.join("registries.conf.d");
        TestLab { store: dir.join("artifacts"), lab, dir, registries_conf_d, n_changes: 0, _tmp: tmp }
    }

    fn xtask(&self, args: &[&str]) -> Cmd {
        Cmd::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(&self.lab)
            .arg("--store")
            .arg(&self.store)
            .arg("--quiet")
            .args(args)
            .env(edgelab::services::registry::REGISTRIES_CONF_D_ENV, &self.registries_conf_d)
            .timeout(Duration::from_secs(600))
    }

    #[track_caller]
    fn up(&self, context: &str) -> String {
        let output = self.xtask(&["lab", "up"]).run_unchecked().unwrap();
        assert!(
            output.status.success(),
            "{context}: lab up failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            output.status,
            output.stdout,
            output.stderr
        );
        output.stdout
    }

    /// After a `lab up` that succeeded: nothing stale, nothing corrupt, and
    /// another `lab up` runs nothing.
    #[track_caller]
    fn assert_converged(&self, context: &str) {
        let plan = self.xtask(&["lab", "plan", "--json"]).run().unwrap().stdout;
        let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
        let stale: Vec<String> = plan["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["status"] != "fresh")
            .map(|entry| format!("{} ({}: {})", entry["stage"], entry["status"], entry["reasons"]))
            .collect();
        assert!(stale.is_empty(), "{context}: lab plan after a good lab up shows to run: {stale:?}\n{plan:#}");
        let verify = self.xtask(&["artifacts", "verify"]).run_unchecked().unwrap();
        assert!(
            verify.status.success() && verify.stdout.contains(", corrupt 0"),
            "{context}: verify failed\n{}\n{}",
            verify.stdout,
            verify.stderr
        );
        let again = self.up(&format!("{context}, the next lab up"));
        assert!(
            again.lines().any(|line| line.starts_with("0 ran,")),
            "{context}: the next lab up ran something:\n{again}"
        );
    }

    fn touch_input(&self) {
        let page = self.dir.join("app/v1/index.html.in");
        let text = fs::read(&page).unwrap();
        // Rewritten with the same bytes: a new mtime and ctime, same content.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&page, text).unwrap();
    }

    fn change_input(&mut self) {
        self.n_changes += 1;
        let containerfile = self.dir.join("app/v2/Containerfile");
        let mut text = fs::read_to_string(&containerfile).unwrap();
        text.push_str(&format!("# change {}\n", self.n_changes));
        fs::write(&containerfile, text).unwrap();
    }

    fn registry_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.store.join("run/registry/pid")).ok()?;
        text.split(|c: char| !c.is_ascii_digit()).find(|it| !it.is_empty())?.parse().ok()
    }

    fn artifact_folders(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.store)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_str()
                    .is_some_and(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .collect()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        self.xtask(&["lab", "down"]).run_unchecked().ok();
    }
}

fn kill(pid: i32) {
    Cmd::new("kill").args(["-9", &pid.to_string()]).run_unchecked().ok();
}

#[test]
fn random_sequences_converge_after_every_good_lab_up() {
    let seed: u64 =
        std::env::var("EDGELAB_CONVERGE_SEED").ok().and_then(|it| it.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("converge: seed {seed} (EDGELAB_CONVERGE_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut n_ups, mut n_operations) = (0, 0);
    for sequence in 0..N_SEQUENCES {
        let mut lab = TestLab::new();
        lab.up(&format!("sequence {sequence}: the first lab up"));
        lab.assert_converged(&format!("sequence {sequence}: after the first lab up"));
        n_ups += 1;
        for step in 0..N_OPERATIONS {
            let operation = OPERATIONS[rng.usize(..OPERATIONS.len())];
            let context = format!("seed {seed}, sequence {sequence}, step {step} ({operation:?})");
            eprintln!("converge: {context}");
            n_operations += 1;
            match operation {
                Operation::Up => {}
                Operation::TouchInput => {
                    lab.touch_input();
                    let plan = lab.xtask(&["lab", "plan"]).run().unwrap().stdout;
                    assert!(
                        plan.contains(", 0 to run"),
                        "{context}: touching without a change made stages stale:\n{plan}"
                    );
                }
                Operation::ChangeInput => lab.change_input(),
                Operation::ProgramGoneFromPath => {
                    // Without /usr/bin on PATH, podman (and apt-get) are gone:
                    // the run must stop at prereqs with the program named,
                    // and leave nothing behind that the next run trips on.
                    let output = lab
                        .xtask(&["lab", "up"])
                        .env("PATH", lab.dir.join("no-programs-here"))
                        .run_unchecked()
                        .unwrap();
                    assert!(!output.status.success(), "{context}: lab up without podman on PATH succeeded");
                    let said = format!("{}{}", output.stdout, output.stderr);
                    assert!(said.contains("podman"), "{context}: the failure names no program:\n{said}");
                }
                Operation::KillRegistry => {
                    if let Some(pid) = lab.registry_pid() {
                        kill(pid);
                    }
                }
                Operation::WipeRegistryStorage => {
                    let data = lab.store.join("run/registry/data");
                    fs::remove_dir_all(&data).ok();
                    fs::create_dir_all(&data).unwrap();
                }
                Operation::DeleteArtifact => {
                    let folders = lab.artifact_folders();
                    if !folders.is_empty() {
                        fs::remove_dir_all(&folders[rng.usize(..folders.len())]).unwrap();
                    }
                }
                Operation::KillDuringUp => {
                    lab.change_input();
                    let log = lab.dir.join("killed-up.log");
                    let mut child = lab.xtask(&["lab", "up"]).spawn_logged(&log).unwrap();
                    std::thread::sleep(Duration::from_millis(rng.u64(100..4000)));
                    child.kill().ok();
                    child.wait().ok();
                    let verify = lab.xtask(&["artifacts", "verify"]).run_unchecked().unwrap();
                    assert!(
                        verify.status.success() && verify.stdout.contains(", corrupt 0"),
                        "{context}: the store after SIGKILL does not verify\n{}",
                        verify.stdout
                    );
                }
            }
            lab.up(&context);
            lab.assert_converged(&context);
            n_ups += 1;
        }
    }
    eprintln!(
        "converge: {N_SEQUENCES} sequences, {n_operations} operations, {n_ups} good lab ups, all converged (seed {seed})"
    );
}
