//! The store converging on the lab as it is, end to end in the local world
//! with the real binary: a lab of the demo's blueprint and two images (no
//! containers, no guests, so it takes minutes, not an hour) in a temp
//! folder; without guests the lab has no network namespace, so its file
//! server listens on a free loopback port.
//!
//! - `lab up --rebuild "compose v1"` recomposes v1 to the same commit id
//!   (the composer is reproducible), so v2 and the served repo stay cached.
//! - After a change (v2 gains `less`), `lab up`, the revert and `lab up`
//!   (all cached), `image info`, `image diff`, `serve` and the lab file
//!   server all show the reverted build: the current one, not the newest.
//! - The served repo keeps the commit a guest of the store was installed
//!   from when a rebuild replaces it, with a static delta to the new head
//!   (the guest is its run state as `lab up` leaves it; no VM boots here).
//!
//! Needs root, ostree, mmdebstrap and the Debian archive in /etc/apt;
//! the composer's cache is `EDGELAB_COMPOSER_CACHE` or
//! /var/tmp/edgelab-test-cache/composer (cold: minutes more). A guard runs
//! `lab down` however the test ends.

use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use edgelab::{
    guests::{self, GuestState},
    tools::{Cmd, Output, ostree::Repo},
};

const REF: &str = "rhel/8/x86_64/edge";

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn composer_cache() -> PathBuf {
    std::env::var_os("EDGELAB_COMPOSER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/edgelab-test-cache/composer"))
}

/// The lab file; `v2_packages` are image v2's extra packages.
fn lab_text(v2_packages: &str, file_server_port: u16) -> String {
    format!(
        r#"lab "current-test" {{
    backend "local"
}}
blueprint "RFE" file="guest/blueprints/RFE.toml"
image "v1" type="edge-commit" blueprint="RFE" ref="{REF}"
image "v2" type="edge-commit" blueprint="RFE" ref="{REF}" parent="v1" {{
    packages {v2_packages}
}}
file-server address="127.0.0.1" port={file_server_port}
package-map {{
    package "setroubleshoot-server" drop="SELinux troubleshooting; Debian guests run without SELinux"
    package "openssh-server" debian="openssh-server"
}}
"#
    )
}

struct Lab {
    _dir: tempfile::TempDir,
    lab_file: PathBuf,
    file_server_port: u16,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let blueprints = dir.path().join("guest/blueprints");
        std::fs::create_dir_all(&blueprints).unwrap();
        std::fs::copy(project_root().join("guest/blueprints/RFE.toml"), blueprints.join("RFE.toml")).unwrap();
        let lab_file = dir.path().join("lab.kdl");
        let lab = Lab { _dir: dir, lab_file, file_server_port: free_port() };
        lab.set_v2_packages(r#""strace""#);
        lab
    }

    fn set_v2_packages(&self, packages: &str) {
        std::fs::write(&self.lab_file, lab_text(packages, self.file_server_port)).unwrap();
    }

    fn command(&self, args: &[&str]) -> Cmd {
        Cmd::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(&self.lab_file)
            .arg("--quiet")
            .args(args)
            .env("EDGELAB_COMPOSER_CACHE", composer_cache())
    }

    fn xtask(&self, args: &[&str]) -> Output {
        self.command(args)
            .timeout(Duration::from_secs(3600))
            .run_unchecked()
            .unwrap_or_else(|err| panic!("running xtask {args:?}: {err:#}"))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.xtask(args);
        assert!(out.status.success(), "xtask {args:?} failed:\n{}\n{}", out.stdout, out.stderr);
        out.stdout
    }

    fn store(&self) -> PathBuf {
        self.lab_file.parent().unwrap().join("artifacts")
    }

    /// The current `repo served` artifact's repo (its key from `lab plan --json`).
    fn served_repo(&self) -> Repo {
        let plan: serde_json::Value = serde_json::from_str(&self.ok(&["lab", "plan", "--json"])).unwrap();
        let entry = plan["entries"].as_array().unwrap().iter().find(|entry| entry["stage"] == "repo served").unwrap();
        let key = entry["key"].as_str().unwrap_or_else(|| panic!("repo served has no current key: {entry}"));
        Repo::at(self.store().join(key).join("out/repo"))
    }

    /// Records that a guest of the store was installed from `commit`, as
    /// `lab up` does when it gives a guest its disk.
    fn guest_installed_from(&self, commit: &str) {
        let dir = self.store().join("run/guests/edge-device-9");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("disk.img"), b"").unwrap();
        let state = GuestState { name: "edge-device-9".into(), commit: Some(commit.into()), ..Default::default() };
        guests::save_state(&dir, &state).unwrap();
    }

    /// `image info NAME`'s commit.
    fn commit(&self, image: &str) -> String {
        let info = self.ok(&["image", "info", image]);
        field(&info, "commit").unwrap_or_else(|| panic!("image info {image} shows no commit:\n{info}"))
    }

    /// `serve IMAGE` on a free port: the commit it announces and the ref it serves.
    fn serve(&self, image: &str) -> (String, String) {
        let port = free_port();
        // `serve` runs until Ctrl-C, so it is spawned here rather than
        // through `Cmd`, which waits; in its own process group, so Ctrl-C
        // (SIGINT to the group) reaches it and the server it runs.
        #[allow(clippy::disallowed_methods)]
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--lab")
            .arg(&self.lab_file)
            .args(["serve", image, "--address", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let announced = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix(&format!("image {image}: commit ")).map(str::to_string));
        let served = served_ref(port);
        // SAFETY: a signal to the process group this test just created.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
        child.wait().unwrap();
        let announced = announced.unwrap_or_else(|| panic!("serve {image} announced no commit"));
        (announced, served)
    }

    /// The ref the lab's file server serves.
    fn lab_file_server_ref(&self) -> String {
        served_ref(self.file_server_port)
    }

    /// Whether the lab's file server serves `commit`'s commit object.
    fn lab_file_server_has(&self, commit: &str) -> bool {
        let url =
            format!("http://127.0.0.1:{}/repo/objects/{}/{}.commit", self.file_server_port, &commit[..2], &commit[2..]);
        ureq::get(&url).call().is_ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.xtask(&["lab", "down"]);
        eprintln!("lab down: {}{}", out.stdout, out.stderr);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// The image ref a file server on this loopback port serves (retried while
/// it starts).
fn served_ref(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/repo/refs/heads/{REF}");
    for _ in 0..100 {
        if let Ok(response) = ureq::get(&url).call() {
            return response.into_string().unwrap().trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered {url}")
}

/// `NAME  VALUE` rows (`image info`).
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once("  ")?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// The summary's result column for `stage`, with its detail; the summary
/// lists each stage once (a stage run twice in one `lab up` is a bug).
fn outcome(summary: &str, stage: &str) -> String {
    let rows: Vec<String> = summary
        .lines()
        .filter_map(|line| line.strip_prefix(stage).filter(|rest| rest.starts_with("  ")))
        .map(|rest| rest.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    match rows.as_slice() {
        [row] => row.clone(),
        [] => panic!("the summary has no `{stage}` line:\n{summary}"),
        _ => panic!("the summary lists `{stage}` {} times:\n{summary}", rows.len()),
    }
}

#[test]
fn rebuild_reproduces_and_every_command_shows_the_current_build() {
    for program in ["ostree", "mmdebstrap"] {
        edgelab::tools::require(program).unwrap();
    }
    assert!(edgelab::tools::apt::is_root(), "this test needs root (mmdebstrap --mode=root, network namespaces)");
    let lab = Lab::new();

    let first = lab.ok(&["lab", "up"]);
    for stage in ["compose v1", "compose v2", "repo served"] {
        assert!(outcome(&first, stage).starts_with("ran"), "{first}");
    }
    let (v1, v2) = (lab.commit("v1"), lab.commit("v2"));
    assert_ne!(v1, v2);

    // A forced rebuild with unchanged inputs makes the same commit: early
    // cutoff spares everything after it.
    let rebuilt = lab.ok(&["lab", "up", "--rebuild", "compose v1"]);
    let v1_outcome = outcome(&rebuilt, "compose v1");
    assert!(
        v1_outcome.starts_with("rebuilt") && v1_outcome.contains(&format!("same output {}", &v1[..12])),
        "{rebuilt}"
    );
    for stage in ["blueprint RFE", "compose v2", "repo served"] {
        assert!(outcome(&rebuilt, stage).starts_with("cached"), "{stage} was not cached:\n{rebuilt}");
    }
    assert_eq!(lab.commit("v1"), v1);
    assert!(lab.ok(&["lab", "plan"]).contains(" 0 to run"));

    // Change v2, build it, then revert: the old key is cached, so nothing
    // runs, and everything must show the reverted (current) build again,
    // not the newest one. A guest installed from v2 meanwhile keeps its
    // commit in the served repo, with a delta to the new v2.
    lab.guest_installed_from(&v2);
    lab.set_v2_packages(r#""strace" "less""#);
    let changed = lab.ok(&["lab", "up"]);
    assert!(outcome(&changed, "compose v2").starts_with("ran"), "{changed}");
    let v2_with_less = lab.commit("v2");
    assert_ne!(v2_with_less, v2);
    let served = lab.served_repo();
    assert_eq!(served.rev_parse(REF).unwrap().as_deref(), Some(v2_with_less.as_str()));
    assert!(served.has_commit(&v2), "the served repo dropped the guest's commit {v2}");
    let deltas = served.static_deltas().unwrap();
    assert!(deltas.contains(&format!("{v2}-{v2_with_less}")), "no delta from the guest's commit: {deltas:?}");
    assert!(lab.ok(&["image", "diff", "v1", "v2"]).lines().any(|line| line.starts_with("+less ")));
    // The lab file server publishes the lab's channel (the implicit one of
    // a lab without `channel`: the first image on its ref), from the
    // current build of the served repo.
    assert_eq!(lab.lab_file_server_ref(), v1, "the lab file server's channel left v1");
    assert!(lab.lab_file_server_has(&v2_with_less), "the lab file server serves an older build");

    lab.set_v2_packages(r#""strace""#);
    let reverted = lab.ok(&["lab", "up"]);
    assert!(!reverted.contains(" ran ") && !reverted.contains(" rebuilt "), "the revert ran stages:\n{reverted}");
    assert!(lab.ok(&["lab", "plan"]).contains(" 0 to run"));

    assert_eq!(lab.commit("v2"), v2, "image info shows the newest build, not the current one");
    let diff = lab.ok(&["image", "diff", "v1", "v2"]);
    assert!(diff.lines().any(|line| line.starts_with("+strace ")), "{diff}");
    assert!(!diff.lines().any(|line| line.starts_with("+less ")), "image diff shows the newest build:\n{diff}");
    assert_eq!(lab.serve("v2"), (v2.clone(), v2.clone()), "serve v2 serves the newest build");
    assert_eq!(lab.lab_file_server_ref(), v1, "the lab file server's channel left v1");
    assert!(
        lab.lab_file_server_has(&v2) && !lab.lab_file_server_has(&v2_with_less),
        "the lab file server serves the newest build"
    );

    // The guest now runs the changed build (reinstalled from it): the
    // reverted repo lacks its commit, so `lab up` repairs the repo under the
    // same key, and converges.
    lab.guest_installed_from(&v2_with_less);
    let repaired = lab.ok(&["lab", "up"]);
    assert!(outcome(&repaired, "repo served").starts_with("repaired"), "{repaired}");
    let served = lab.served_repo();
    assert_eq!(served.rev_parse(REF).unwrap().as_deref(), Some(v2.as_str()));
    assert!(served.has_commit(&v2_with_less));
    assert!(served.static_deltas().unwrap().contains(&format!("{v2_with_less}-{v2}")));
    assert!(lab.ok(&["lab", "plan"]).contains(" 0 to run"));
    let again = lab.ok(&["lab", "up"]);
    assert!(!again.contains(" ran ") && !again.contains(" repaired "), "lab up did not converge:\n{again}");

    // A stage whose inputs changed since its build has no current build.
    lab.set_v2_packages(r#""strace" "file""#);
    let none = lab.xtask(&["image", "info", "v2"]);
    assert!(!none.status.success(), "{}", none.stdout);
    assert!(none.stderr.contains("has no current build") && none.stderr.contains("lab up"), "{}", none.stderr);
}
