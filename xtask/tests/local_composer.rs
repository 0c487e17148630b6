//! The local composer and the served repo, for real: mmdebstrap and ostree
//! compose v1 and v2 (v1 + strace), the repo stage merges them with a static
//! delta, and a fresh sysroot pulls and deploys each. Needs root (mmdebstrap
//! --mode=root, chroot, mount) and reaches the Debian archive configured in
//! /etc/apt.
//!
//! Slow the first time: the cold base rootfs takes minutes. The composer's
//! caches (downloaded .debs, base rootfs, build repo) are kept in
//! /var/tmp/edgelab-test-cache so reruns take seconds. The bad-input tests
//! use their own caches. Compose timings come from `cargo xtask bench
//! compose`, not from here: no test writes a tracked file.

#[path = "support/demo_lab.rs"]
mod demo_lab;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use edgelab::{
    compose::{ComposeBackend, ComposeRequest, ComposeResult, local::LocalComposer, tarball},
    graph::{self, StageId, StageKind},
    key::{Facts, Preimage},
    lab::{Backend, Lab},
    progress::Progress,
    stages::{self, Input, StageCtx},
    store::Store,
    tools::{
        Cmd,
        ostree::{Repo, Sysroot},
    },
};
use serde_json::{Value, json};

/// The composer's cache; `EDGELAB_COMPOSER_CACHE` points elsewhere (an
/// empty folder measures a cold compose).
fn cache() -> PathBuf {
    std::env::var_os("EDGELAB_COMPOSER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/edgelab-test-cache/composer"))
}
const REF: &str = "rhel/8/x86_64/edge";

/// The RFE blueprint of the demo as the compose stage hands it over.
fn blueprint(version: &str, extra: &[&str]) -> Value {
    let mut packages: Vec<Value> = ["fuse-overlayfs", "jq", "keepalived", "setroubleshoot-server", "slirp4netns"]
        .iter()
        .chain(extra)
        .map(|name| json!({"name": name, "version": "*"}))
        .collect();
    packages.sort_by_key(|p| p["name"].as_str().unwrap_or_default().to_string());
    json!({
        "name": "RFE",
        "description": "RHEL for Edge",
        "version": version,
        "modules": [],
        "groups": [],
        "packages": packages,
        "customizations": {
            "firewall": {"ports": ["8080:tcp"]},
            "user": [{
                "name": "core",
                "description": "Edge user",
                "password": "$6$edgelab$xv/z29/M.jusV28dP6K0JGwJWukWc4HWTYlhn2qM9rBJjLtkKsocoNQJ4wqyBxKsxQ6dgsmApHHN8o/.tDa/U1",
                "groups": ["wheel"],
            }, {
                "name": "ops",
                "uid": 1300,
                "gid": 1300,
                "expiredate": 20000,
                "force_password_reset": true,
            }],
            "services": {"enabled": ["sshd", "keepalived"], "masked": ["apt-daily.timer"]},
            // Keys whose local effects the first test reads back.
            "group": [{"name": "widget", "gid": 1130}],
            "kernel": {"append": "edgelab.test=1 quiet"},
            "locale": {"languages": ["en_US.UTF-8", "cs_CZ.UTF-8"], "keyboard": "us"},
            "directories": [{"path": "/etc/widget", "user": "ops", "group": "widget", "mode": "0750", "ensure_parents": true}],
            "files": [{"path": "/etc/widget/config", "user": 1300, "group": "widget", "mode": "0640", "data": "answer = 42\n"}],
        },
    })
}

fn package_map() -> Value {
    json!([
        {"rpm": "container-tools", "debian": ["podman", "buildah", "skopeo"]},
        {"rpm": "setroubleshoot-server", "drop": "SELinux troubleshooting; Debian guests run without SELinux"},
        {"rpm": "openssh-server", "debian": ["openssh-server"]},
    ])
}

fn request(image: &str, blueprint: Value, parent: Option<&str>) -> ComposeRequest {
    ComposeRequest {
        image: image.into(),
        blueprint: serde_json::from_value(blueprint).expect("a blueprint as the blueprint stage writes it"),
        ostree_ref: REF.into(),
        parent_commit: parent.map(str::to_string),
        parent_url: None,
        parent_repo: None,
        package_map: package_map(),
    }
}

/// The two composes every test here builds on, made once per test binary.
struct Composed {
    dir: PathBuf,
    v1: ComposeResult,
    v2: ComposeResult,
    v1_out: PathBuf,
    v2_out: PathBuf,
    v2_secs: f64,
}

fn composed() -> &'static Composed {
    static COMPOSED: OnceLock<Composed> = OnceLock::new();
    COMPOSED.get_or_init(|| {
        require_tools();
        let dir = tempfile::Builder::new().prefix("edgelab-composer-").tempdir().unwrap().keep();
        let composer = LocalComposer::new(cache());
        let progress = Progress::new(false);
        let v1_out = dir.join("v1");
        let v2_out = dir.join("v2");
        std::fs::create_dir_all(&v1_out).unwrap();
        std::fs::create_dir_all(&v2_out).unwrap();
        let started = Instant::now();
        let v1 = composer.compose(&request("v1", blueprint("0.0.1", &[]), None), &v1_out, &progress).unwrap();
        let v1_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let v2 = composer
            .compose(&request("v2", blueprint("0.0.2", &["strace"]), Some(&v1.commit)), &v2_out, &progress)
            .unwrap();
        let v2_secs = started.elapsed().as_secs_f64();
        eprintln!("compose v1: {v1_secs:.1} s, v2 after v1: {v2_secs:.1} s");
        Composed { dir, v1, v2, v1_out, v2_out, v2_secs }
    })
}

fn require_tools() {
    for program in ["mmdebstrap", "ostree", "chroot", "mount"] {
        edgelab::tools::require(program).unwrap();
    }
    assert!(edgelab::tools::apt::is_root(), "the local composer tests need root (mmdebstrap --mode=root, chroot)");
}

/// A compose's tarball unpacked, as an ostree repo.
fn unpacked(out: &Path, image: &str, into: &Path) -> Repo {
    tarball::extract(&out.join(format!("{image}-commit.tar")), into).unwrap();
    Repo::at(into.join("repo"))
}

#[test]
fn v1_and_v2_compose_serve_and_deploy() {
    let composed = composed();
    let (v1, v2) = (&composed.v1, &composed.v2);
    assert_ne!(v1.commit, v2.commit);

    // The tarball is osbuild's layout and its compose.json names the commit.
    let scratch = tempfile::tempdir().unwrap();
    let v2_repo = unpacked(&composed.v2_out, "v2", &scratch.path().join("v2"));
    let compose_json = tarball::read_compose_json(&scratch.path().join("v2")).unwrap();
    assert_eq!(compose_json["ostree-commit"], json!(v2.commit));
    assert_eq!(compose_json["ref"], json!(REF));
    for field in ["ostree-n-metadata-total", "ostree-n-content-total", "ostree-timestamp", "ostree-version"] {
        assert!(compose_json.get(field).is_some(), "compose.json lacks {field}: {compose_json}");
    }
    assert_eq!(v2_repo.rev_parse(REF).unwrap().as_deref(), Some(v2.commit.as_str()));

    // v2's parent is v1, and only v2 has strace.
    assert_eq!(v2_repo.parent_of(&v2.commit).unwrap().as_deref(), Some(v1.commit.as_str()));
    assert!(v2_repo.log(&v2.commit).unwrap().contains(&v1.commit));
    assert!(v2_repo.path_exists(&v2.commit, "/usr/bin/strace").unwrap());
    assert!(!v2_repo.path_exists(&v1.commit, "/usr/bin/strace").unwrap());
    assert!(v2.packages.iter().any(|p| p.starts_with("strace=")));
    assert!(!v1.packages.iter().any(|p| p.starts_with("strace=")));

    // The OSTree layout and the customizations.
    for path in ["/usr/etc/passwd", "/usr/lib/modules", "/usr/share/factory/var/lib/dpkg/status", "/sysroot"] {
        assert!(v2_repo.path_exists(&v1.commit, path).unwrap(), "{path} missing in v1");
    }
    let shadow = v2_repo.cat(&v1.commit, "/usr/etc/shadow").unwrap();
    assert!(shadow.lines().any(|line| line.starts_with("core:$6$edgelab$")), "{shadow}");
    let group = v2_repo.cat(&v1.commit, "/usr/etc/group").unwrap();
    assert!(group.lines().any(|line| line.starts_with("wheel:") && line.ends_with("core")), "{group}");
    assert!(
        v2_repo.path_exists(&v1.commit, "/usr/etc/systemd/system/multi-user.target.wants/keepalived.service").unwrap()
    );
    customizations_took_effect(&v2_repo, &v1.commit);
    let notes: Value = serde_json::from_slice(&std::fs::read(composed.v1_out.join("v1-local.json")).unwrap()).unwrap();
    assert_eq!(notes["packages"]["dropped"][0][0], json!("setroubleshoot-server"), "{notes}");
    // The blueprint's firewall has no local effect: reported by the compose
    // as `lab plan` warns of it, and nothing written that no one reads.
    let not_applied = notes["customizations_not_applied"].as_array().cloned().unwrap_or_default();
    assert!(
        not_applied.iter().any(|what| what.as_str().is_some_and(|text| text.starts_with("customizations.firewall ("))),
        "{notes}"
    );
    assert!(!v2_repo.path_exists(&v1.commit, "/usr/etc/edgelab/firewall-ports").unwrap());

    // The served repo: both images, a small static delta, the summary.
    let served = run_repo_stage(composed);
    let repo = Repo::at(served.join("repo"));
    assert_eq!(repo.rev_parse(REF).unwrap().as_deref(), Some(v2.commit.as_str()));
    assert!(repo.has_commit(&v1.commit) && repo.has_commit(&v2.commit));
    // From scratch to the installed image (v1), and from v1 to v2 (upgrades);
    // nothing installs v2 from nothing.
    let mut expected = vec![v1.commit.clone(), format!("{}-{}", v1.commit, v2.commit)];
    expected.sort();
    let mut deltas = repo.static_deltas().unwrap();
    deltas.sort();
    assert_eq!(deltas, expected);
    assert!(served.join("repo/summary").is_file());
    let (_, repo_bytes) = dir_size(&served.join("repo/objects"));
    // The upgrade's delta (the from-scratch ones hold whole images).
    let delta_bytes = repo.static_delta_bytes(&format!("{}-{}", v1.commit, v2.commit)).unwrap();
    let (n_objects, _) = dir_size(&served.join("repo/objects"));
    assert!(delta_bytes * 20 < repo_bytes, "delta {delta_bytes} B is not a small fraction of the repo {repo_bytes} B");

    // A fresh sysroot pulls each image over file:// and deploys it.
    let sysroot_dir = scratch.path().join("sysroot");
    let sysroot = Sysroot::init(&sysroot_dir, "edge").unwrap();
    sysroot.add_remote("lab", &format!("file://{}", served.join("repo").display())).unwrap();
    sysroot.pull("lab", &format!("{REF}@{}", v1.commit)).unwrap();
    sysroot.deploy("edge", &v1.commit, &["root=/dev/vda", "rw"]).unwrap();
    sysroot.pull("lab", REF).unwrap();
    sysroot.deploy("edge", &format!("lab:{REF}"), &["root=/dev/vda", "rw"]).unwrap();
    // The blueprint's kernel.append, as the installer adds it on deploy.
    assert_eq!(edgelab::guests::installer::image_kargs(&sysroot_dir, &v1.commit).unwrap(), ["edgelab.test=1", "quiet"]);
    let status = sysroot.status().unwrap();
    assert!(status.contains(&v1.commit) && status.contains(&v2.commit), "{status}");
    let deployed = std::fs::read_dir(sysroot_dir.join("ostree/deploy/edge/deploy")).unwrap().count();
    assert!(deployed >= 2, "{status}");
    // Deployment folders are immutable; let the temp dir go.
    Cmd::new("chattr").args(["-R", "-i"]).arg(sysroot_dir.join("ostree/deploy")).run().ok();

    // Timings are `cargo xtask bench compose`'s job; a test writes no tracked file.
    eprintln!("served repo: {n_objects} objects, {repo_bytes} B; static delta {delta_bytes} B");
}

/// Each local effect of the blueprint's customizations, read from the commit.
fn customizations_took_effect(repo: &Repo, commit: &str) {
    let passwd = repo.cat(commit, "/usr/etc/passwd").unwrap();
    assert!(passwd.lines().any(|line| line.starts_with("ops:x:1300:1300:")), "{passwd}");
    let group = repo.cat(commit, "/usr/etc/group").unwrap();
    assert!(group.lines().any(|line| line.starts_with("widget:x:1130:")), "{group}");
    assert!(group.lines().any(|line| line.starts_with("ops:x:1300:")), "{group}");
    // expiredate in days; force_password_reset as a last change of 0.
    let shadow = repo.cat(commit, "/usr/etc/shadow").unwrap();
    let ops: Vec<&str> = shadow.lines().find(|line| line.starts_with("ops:")).unwrap().split(':').collect();
    assert_eq!((ops[2], ops[7]), ("0", "20000"), "{shadow}");
    assert_eq!(repo.cat(commit, "/usr/etc/locale.conf").unwrap(), "LANG=en_US.UTF-8\n");
    assert_eq!(repo.cat(commit, "/usr/etc/vconsole.conf").unwrap(), "KEYMAP=us\n");
    let masked = repo.ls(commit, "/usr/etc/systemd/system/apt-daily.timer").unwrap();
    assert!(masked.ends_with("-> /dev/null"), "{masked}");
    let dir = repo.ls(commit, "/usr/etc/widget").unwrap();
    assert!(dir.starts_with("d00750 1300 1130 "), "{dir}");
    let file = repo.ls(commit, "/usr/etc/widget/config").unwrap();
    assert!(file.starts_with("-00640 1300 1130 "), "{file}");
    assert_eq!(repo.cat(commit, "/usr/etc/widget/config").unwrap(), "answer = 42\n");
    let kargs = repo.cat(commit, &format!("/{}", edgelab::compose::local::KARGS_FILE)).unwrap();
    assert_eq!(kargs, "kargs = [\"edgelab.test=1\",\"quiet\"]\n");
}

#[test]
fn image_diff_shows_strace() {
    let composed = composed();
    let scratch = tempfile::tempdir().unwrap();
    let diff = edgelab::cli::image_diff::diff_tarballs(
        &composed.v1_out.join("v1-commit.tar"),
        &composed.v2_out.join("v2-commit.tar"),
        scratch.path(),
    )
    .unwrap();
    let text = diff.render("v1", "v2");
    assert!(text.lines().any(|line| line.starts_with("+strace ")), "{text}");
    assert!(!text.lines().any(|line| line.starts_with('-')), "{text}");
}

#[test]
fn second_compose_is_cheap_and_unchanged_inputs_compose_nothing() {
    let composed = composed();
    // v2 after v1 reuses v1's base: a small fraction of a cold compose (a
    // cold compose is minutes; when the base was cached before this run,
    // both are fast and the bound is absolute).
    assert!(composed.v2_secs < 60.0, "v2 took {:.1} s", composed.v2_secs);

    // Keys: changing v2's packages changes compose v2 (and the repo and
    // what publishes it) only;
    // changing nothing changes nothing.
    let lab = test_lab(&["strace"]);
    let keys = stage_keys(&lab);
    assert_eq!(keys, stage_keys(&test_lab(&["strace"])));
    let changed = stage_keys(&test_lab(&["strace", "less"]));
    let differing: Vec<String> =
        keys.iter().filter(|(id, key)| changed.get(*id) != Some(key)).map(|(id, _)| id.to_string()).collect();
    assert_eq!(differing, vec!["compose v2".to_string(), "repo served".to_string(), "publish served".to_string()]);

    // And the composer side of it: v2 with another package list is
    // recomposed on v1's cached base, quickly, while v1 is not touched.
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let composer = LocalComposer::new(cache());
    let v2b = composer
        .compose(
            &request("v2", blueprint("0.0.3", &["strace", "less"]), Some(&composed.v1.commit)),
            out.path(),
            &Progress::new(true),
        )
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    assert!(v2b.packages.iter().any(|p| p.starts_with("less=")));
    let notes: Value = serde_json::from_slice(&std::fs::read(out.path().join("v2-local.json")).unwrap()).unwrap();
    assert_eq!(notes["base_built"], json!(false), "{notes}");
}

#[test]
fn same_inputs_compose_the_same_commit() {
    let composed = composed();
    let composer = LocalComposer::new(cache());
    let progress = Progress::new(true);
    let again = tempfile::tempdir().unwrap();
    let (v1_out, v2_out) = (again.path().join("v1"), again.path().join("v2"));
    std::fs::create_dir_all(&v1_out).unwrap();
    std::fs::create_dir_all(&v2_out).unwrap();
    let v1 = composer.compose(&request("v1", blueprint("0.0.1", &[]), None), &v1_out, &progress).unwrap();
    let v2 = composer
        .compose(&request("v2", blueprint("0.0.2", &["strace"]), Some(&v1.commit)), &v2_out, &progress)
        .unwrap();
    // Both builds' commits are in the composer's build repo: name what differs.
    let build_repo = Repo::at(cache().join("build-repo"));
    for (image, first, second) in [("v1", &composed.v1.commit, &v1.commit), ("v2", &composed.v2.commit, &v2.commit)] {
        if first != second {
            let diff = build_repo.diff(first, second).unwrap_or_else(|err| format!("{err:#}"));
            panic!("compose {image} with unchanged inputs gave {second}, not {first}; ostree diff:\n{diff}");
        }
    }
    // The time comes from the inputs: v1 at the composer's epoch, v2 a second later.
    assert_eq!(build_repo.timestamp(&v1.commit).unwrap(), edgelab::compose::local::EPOCH);
    assert_eq!(build_repo.timestamp(&v2.commit).unwrap(), edgelab::compose::local::EPOCH + 1);
    // The password-change day of the blueprint's user is the epoch's day, not today's.
    let shadow = build_repo.cat(&v1.commit, "/usr/etc/shadow").unwrap();
    let core = shadow.lines().find(|line| line.starts_with("core:")).unwrap_or_else(|| panic!("{shadow}"));
    assert_eq!(core.split(':').nth(2), Some((edgelab::compose::local::EPOCH / 86_400).to_string().as_str()), "{core}");
    // No random SSH host keys in the image: each device makes its own.
    assert!(!build_repo.path_exists(&v1.commit, "/usr/etc/ssh/ssh_host_ed25519_key").unwrap());
    assert!(build_repo.path_exists(&v1.commit, "/usr/etc/ssh/sshd_config").unwrap());
    let unit = build_repo.cat(&v1.commit, "/usr/etc/systemd/system/edgelab-ssh-keygen.service").unwrap();
    assert!(unit.contains("ssh-keygen -q -t ed25519") && unit.contains("Before=ssh.service"), "{unit}");
    let host_key = build_repo.cat(&v1.commit, "/usr/etc/ssh/sshd_config.d/edgelab-host-key.conf").unwrap();
    assert!(host_key.contains("HostKey /etc/ssh/ssh_host_ed25519_key"), "{host_key}");
    assert!(
        build_repo
            .path_exists(&v1.commit, "/usr/etc/systemd/system/multi-user.target.wants/edgelab-ssh-keygen.service")
            .unwrap()
    );
}

#[test]
fn unknown_package_names_the_package() {
    let composed = composed();
    let out = tempfile::tempdir().unwrap();
    let composer = LocalComposer::new(cache());
    let err = composer
        .compose(
            &request("v9", blueprint("0.0.9", &["edgelab-no-such-package"]), Some(&composed.v1.commit)),
            out.path(),
            &Progress::new(true),
        )
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("no package named edgelab-no-such-package"), "{text}");
    assert_empty(out.path());
}

#[test]
fn unreachable_archive_is_a_clear_error() {
    require_tools();
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let composer = LocalComposer::new(cache.path().to_path_buf())
        .with_mirrors(vec!["deb http://127.0.0.1:1/debian bookworm main".into()]);
    let err = composer.compose(&request("v1", blueprint("0.0.1", &[]), None), out.path(), &Progress::new(true));
    let text = format!("{:#}", err.unwrap_err());
    assert!(text.contains("cannot reach the package archive"), "{text}");
    assert_empty(out.path());
}

#[test]
fn full_disk_leaves_nothing_behind() {
    let composed = composed();
    let mount_point = tempfile::tempdir().unwrap();
    Cmd::new("mount").args(["-t", "tmpfs", "-o", "size=20m", "tmpfs"]).arg(mount_point.path()).run().unwrap();
    let composer = LocalComposer::new(cache());
    let result = composer.compose(
        &request("v2", blueprint("0.0.2", &["strace"]), Some(&composed.v1.commit)),
        mount_point.path(),
        &Progress::new(true),
    );
    let leftovers: Vec<_> = std::fs::read_dir(mount_point.path()).unwrap().map(|e| e.unwrap().path()).collect();
    Cmd::new("umount").arg(mount_point.path()).run().unwrap();
    let text = format!("{:#}", result.unwrap_err());
    assert!(text.contains("No space left on device"), "{text}");
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs the repo stage on the two composes, as the runner would.
fn run_repo_stage(composed: &Composed) -> PathBuf {
    let lab = test_lab(&["strace"]);
    let graph = graph::build(&lab);
    let stage = graph.stage(&StageId::new(StageKind::Repo, "served")).unwrap();
    let store = Store::open(&composed.dir.join("store")).unwrap();
    let out = composed.dir.join("repo-out");
    std::fs::remove_dir_all(&out).ok();
    std::fs::create_dir_all(&out).unwrap();
    let input = |result: &ComposeResult, out: &Path| Input {
        output_digest: result.commit.clone(),
        out: out.to_path_buf(),
        extra: json!({"commit": result.commit}),
    };
    let inputs = BTreeMap::from([
        ("image v1".to_string(), input(&composed.v1, &composed.v1_out)),
        ("image v2".to_string(), input(&composed.v2, &composed.v2_out)),
    ]);
    let progress = Progress::new(true);
    let ctx = StageCtx { lab: &lab, stage, inputs, out: out.clone(), store: &store, progress: &progress };
    let output = stages::run(&ctx).unwrap();
    assert!(output.output_digest.starts_with("sha256:"));
    // A from-scratch delta to the installed image, and one from v1 to v2.
    assert_eq!(output.extra["deltas"].as_array().map(Vec::len), Some(2), "{}", output.extra);
    assert!(!out.join(".unpacked").exists());
    out
}

/// Keys of every stage with fixed host facts, outputs standing in for what
/// each stage would produce (a stage's output depends on its key here).
fn stage_keys(lab: &Lab) -> BTreeMap<StageId, String> {
    let graph = graph::build(lab);
    let facts = Facts::default();
    let mut outputs: BTreeMap<StageId, String> = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for stage in &graph.stages {
        let inputs = stage.deps.iter().map(|(role, dep)| (role.clone(), outputs[dep].clone())).collect();
        let key = Preimage::of(stage, &facts, inputs).key();
        outputs.insert(stage.id.clone(), format!("out-of-{}", key.0));
        keys.insert(stage.id.clone(), key.0);
    }
    keys
}

/// The demo's lab with only its images (v2 adding `v2_packages`), composed
/// in the local world.
fn test_lab(v2_packages: &[&str]) -> Lab {
    let mut lab = demo_lab::demo_lab();
    lab.backends = demo_lab::compose_backend(Backend::Local);
    lab.containers.clear();
    for image in &mut lab.images {
        image.ostree_ref = REF.into();
    }
    lab.images[1].extra_packages = v2_packages.iter().map(|p| p.to_string()).collect();
    lab.boot_iso = None;
    lab.kickstart.password_hash_file = None;
    lab.guests.clear();
    lab.package_map.clear();
    lab
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn dir_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() {
            files += 1;
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (files, bytes)
}
