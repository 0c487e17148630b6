//! The container app and the lab registry, with real programs: podman builds
//! and pushes, the Debian `docker-registry` on 127.0.0.1 at a free port, a
//! temporary store, and the app's own `httpd` binary run on the host (podman
//! cannot run containers on this host, so the page is served by the binary
//! the image holds, from the index.html the image holds).
//!
//! The lab is the demo lab's container part (`support/demo_lab.rs`); the
//! graph comes from `graph::build`. The `prereqs` stage is left out: it
//! checks programs of other worlds (qemu, ...) that have nothing to do with
//! containers.

#[path = "support/demo_lab.rs"]
mod demo_lab;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::Once,
    time::{Duration, Instant},
};

use edgelab::{
    cli::container::promote_in,
    graph::{self, Graph, StageId, StageKind},
    key::Facts,
    lab::{Auto, Backend, Lab},
    progress::Progress,
    runner::{self, Outcome},
    services::{self, Service, registry},
    store::{LockWait, Store},
};

/// A lab with its own app sources, store and registry port; stops the
/// registry when dropped.
struct TestLab {
    _dir: tempfile::TempDir,
    app: PathBuf,
    lab: Lab,
    graph: Graph,
    store: Store,
}

impl Drop for TestLab {
    fn drop(&mut self) {
        services::stop(&self.lab, &self.store, Service::Registry).ok();
    }
}

/// Keeps the tests away from /etc/containers (set once, before any test
/// thread reads the environment: every test calls this first).
fn isolate_host_config() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("edgelab-test-registries.conf.d-{}", std::process::id()));
        // SAFETY: runs once, while the other test threads wait on `ONCE`.
        unsafe { std::env::set_var(registry::REGISTRIES_CONF_D_ENV, dir) };
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The demo lab's container part (lab.kdl's `container "httpd"` and
/// `registry`, on 127.0.0.1 at `port`), with the app's build contexts copied
/// into a temp folder so tests can edit them. The httpd crate stays where the
/// lab root says.
fn demo_lab(app: &Path, port: u16) -> Lab {
    let mut lab = demo_lab::demo_lab();
    lab.backends = demo_lab::all_backends(Backend::Local);
    lab.registry.address = Auto::Given(IpAddr::V4(Ipv4Addr::LOCALHOST));
    lab.registry.port = port;
    for build in &mut lab.containers[0].builds {
        build.context = app.join(&build.name);
    }
    lab.blueprints.clear();
    lab.images.clear();
    lab.boot_iso = None;
    lab.kickstart.password_hash_file = None;
    lab.guests.clear();
    lab.package_map.clear();
    lab
}

fn test_lab() -> TestLab {
    isolate_host_config();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    for build in ["v1", "v2"] {
        let from = demo_lab::repo_root().join("guest/app").join(build);
        std::fs::create_dir_all(app.join(build)).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), app.join(build).join(entry.file_name())).unwrap();
        }
    }
    let lab = demo_lab(&app, free_port());
    let graph = container_graph(&lab);
    let store = Store::open(&dir.path().join("artifacts")).unwrap();
    TestLab { _dir: dir, app, lab, graph, store }
}

/// `graph::build` without the `prereqs` stage (see the module docs).
fn container_graph(lab: &Lab) -> Graph {
    let mut graph = graph::build(lab);
    graph.stages.retain(|stage| stage.id.kind != StageKind::Prereqs);
    for stage in &mut graph.stages {
        stage.deps.retain(|_, dep| dep.kind != StageKind::Prereqs);
    }
    graph
}

impl TestLab {
    fn facts(&self) -> Facts {
        let mut cache = self.store.load_stat_cache();
        let (facts, _) = edgelab::facts::gather(&self.graph, &self.store, &mut cache).unwrap();
        self.store.save_stat_cache(&cache);
        facts
    }

    /// `lab up`: every stage; returns stage -> outcome, failing on a failure.
    fn up(&self) -> BTreeMap<String, Outcome> {
        let lock = self.store.lock(LockWait::Wait).unwrap();
        let started = Instant::now();
        let summary = runner::run(&self.lab, &self.graph, &self.facts(), &self.store, &lock, &[], &Progress::new(true));
        eprintln!("lab up in {:.1?}:\n{}", started.elapsed(), summary.render());
        assert!(!summary.failed(), "lab up failed:\n{}", summary.render());
        summary.reports.into_iter().map(|report| (report.stage.to_string(), report.outcome)).collect()
    }

    fn promote(&self, build: &str) -> anyhow::Result<String> {
        let lock = self.store.lock(LockWait::Wait).unwrap();
        let facts = self.facts();
        promote_in(&self.lab, &self.graph, &facts, &self.store, &lock, &Progress::new(true), "httpd", build, "prod")
    }

    fn endpoint(&self) -> SocketAddr {
        registry::endpoint(&self.lab)
    }

    /// What the registry's HTTP API says `httpd:reference` is.
    fn registry_digest(&self, reference: &str) -> Option<String> {
        registry::manifest_digest(self.endpoint(), "httpd", reference).unwrap()
    }

    fn output(&self, kind: StageKind, name: &str) -> edgelab::store::Manifest {
        self.store.last_manifest(&StageId::new(kind, name)).unwrap_or_else(|| panic!("no artifact for {kind} {name}"))
    }

    fn registry_pid(&self) -> u32 {
        services::running_pid(&self.store, "registry").expect("the registry runs")
    }
}

fn outcomes(map: &BTreeMap<String, Outcome>) -> Vec<String> {
    map.iter().map(|(stage, outcome)| format!("{stage}: {outcome:?}")).collect()
}

fn all_cached(map: &BTreeMap<String, Outcome>) -> bool {
    map.values().all(|outcome| *outcome == Outcome::Cached)
}

#[test]
fn builds_pushes_tags_promotes_and_serves_both_pages() {
    let lab = test_lab();
    let first = lab.up();
    assert!(first.values().all(|outcome| *outcome == Outcome::Ran), "{:#?}", outcomes(&first));

    let v1 = lab.output(StageKind::Push, "httpd-v1").output_digest;
    let v2 = lab.output(StageKind::Push, "httpd-v2").output_digest;
    assert_ne!(v1, v2);
    assert_eq!(lab.registry_digest("v1").as_deref(), Some(v1.as_str()));
    assert_eq!(lab.registry_digest("v2").as_deref(), Some(v2.as_str()));
    assert_eq!(lab.registry_digest("prod").as_deref(), Some(v1.as_str()), "prod starts as v1");

    // The pages, from the images themselves, served by the images' httpd.
    let page_v1 = serve_image_page(&lab, "httpd-v1");
    let page_v2 = serve_image_page(&lab, "httpd-v2");
    let banner = "|  _ \\| | | | ____| |      / _| ___  _ __  | ____|__| | __ _  ___";
    assert!(page_v1.contains(banner), "v1 has the figlet banner:\n{page_v1}");
    assert!(!page_v1.contains("awesome"), "v1 has no tux:\n{page_v1}");
    assert!(page_v2.contains(banner), "v2 keeps the banner:\n{page_v2}");
    assert!(page_v2.contains("&lt; Podman auto-update is awesome! &gt;"), "v2's tux speaks:\n{page_v2}");
    assert!(page_v2.contains("|o_o |"), "v2 has the tux:\n{page_v2}");

    // Nothing changed: nothing is built or pushed.
    let second = lab.up();
    assert!(all_cached(&second), "{:#?}", outcomes(&second));

    // Promotion moves prod to v2, and `lab up` does not revert it.
    let promoted = lab.promote("v2").unwrap();
    assert_eq!(promoted, v2);
    assert_eq!(lab.registry_digest("prod").as_deref(), Some(v2.as_str()));
    let third = lab.up();
    assert!(all_cached(&third), "{:#?}", outcomes(&third));
    assert_eq!(lab.registry_digest("prod").as_deref(), Some(v2.as_str()), "lab up keeps the promotion");

    // And back.
    assert_eq!(lab.promote("v1").unwrap(), v1);
    assert_eq!(lab.registry_digest("prod").as_deref(), Some(v1.as_str()));
    assert!(edgelab::stages::tag::load_promotions(&lab.store).tags.is_empty());
}

#[test]
fn only_what_changed_rebuilds_and_identical_images_cut_off() {
    let lab = test_lab();
    lab.up();
    let v1_image = lab.output(StageKind::Container, "httpd-v1").output_digest;

    // Only v2's page changes: only v2 is built and pushed again.
    let template = lab.app.join("v2/index.html.in");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, text.replace("</pre>", "v2, edited\n</pre>")).unwrap();
    let after_edit = lab.up();
    let ran: Vec<&str> =
        after_edit.iter().filter(|(_, outcome)| **outcome == Outcome::Ran).map(|(stage, _)| stage.as_str()).collect();
    assert_eq!(ran, ["container httpd-v2", "push httpd-v2"], "{:#?}", outcomes(&after_edit));

    // A file the Containerfile never copies: v1's context changed, so v1 is
    // rebuilt, to the very same image (a reproducible build), so nothing
    // downstream runs (early cutoff).
    std::fs::write(lab.app.join("v1/NOTES.txt"), "not part of the image\n").unwrap();
    let after_notes = lab.up();
    let ran: Vec<&str> =
        after_notes.iter().filter(|(_, outcome)| **outcome == Outcome::Ran).map(|(stage, _)| stage.as_str()).collect();
    assert_eq!(ran, ["container httpd-v1"], "{:#?}", outcomes(&after_notes));
    assert_eq!(lab.output(StageKind::Container, "httpd-v1").output_digest, v1_image, "the rebuild is reproducible");
}

#[test]
fn a_killed_registry_is_restarted_with_its_data_and_lost_data_is_repushed() {
    let lab = test_lab();
    lab.up();
    let v1 = lab.output(StageKind::Push, "httpd-v1").output_digest;

    let pid = lab.registry_pid();
    // SAFETY: kill has no memory-safety preconditions; the pid is our registry's.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until(|| TcpStream::connect(lab.endpoint()).is_err());
    let after_kill = lab.up();
    assert!(all_cached(&after_kill), "data intact, nothing pushed again: {:#?}", outcomes(&after_kill));
    assert_ne!(lab.registry_pid(), pid, "a new registry process");
    assert_eq!(lab.registry_digest("v1").as_deref(), Some(v1.as_str()));

    // The registry's storage is deleted: the pushes and the tag notice and repair.
    std::fs::remove_dir_all(lab.store.run_dir("registry").unwrap().join("data")).unwrap();
    assert_eq!(lab.registry_digest("v1"), None);
    let after_loss = lab.up();
    for stage in ["push httpd-v1", "push httpd-v2", "tag httpd-prod"] {
        assert!(matches!(after_loss[stage], Outcome::Repaired(_)), "{stage}: {:#?}", outcomes(&after_loss));
    }
    assert_eq!(after_loss["container httpd-v1"], Outcome::Cached);
    assert_eq!(lab.registry_digest("prod").as_deref(), Some(v1.as_str()));
}

#[test]
fn error_registry_port_taken() {
    isolate_host_config();
    let stranger = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lab = demo_lab(dir.path(), stranger.local_addr().unwrap().port());
    let store = Store::open(&dir.path().join("artifacts")).unwrap();
    let err = services::ensure(&lab, &store, Service::Registry).unwrap_err();
    let message = format!("{err:#}").replace(&lab.registry.port.to_string(), "PORT");
    expect_test::expect![[r#"starting the lab registry: cannot start the registry: 127.0.0.1:PORT is already in use by another program (not edgelab's registry); stop it (`ss -ltnp 'sport = :PORT'` shows which) or change the port in lab.kdl"#]].assert_eq(&message);
}

#[test]
fn error_registry_unreachable() {
    let port = free_port();
    let endpoint = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let err = registry::manifest_digest(endpoint, "httpd", "prod").unwrap_err();
    let message = format!("{err:#}").replace(&port.to_string(), "PORT");
    assert!(
        message.starts_with("the lab registry at http://127.0.0.1:PORT is unreachable (")
            && message.ends_with("); `cargo xtask lab up` starts it"),
        "{message}"
    );
}

#[test]
fn error_context_without_containerfile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("v1")).unwrap();
    let lab = demo_lab(dir.path(), 5000);
    let build = &lab.containers[0].builds[0];
    let err = edgelab::stages::container::check_context(&lab, "httpd", build).unwrap_err();
    let message = err.to_string().replace(&dir.path().display().to_string(), "$TMP");
    expect_test::expect![[r#"container `httpd` build `v1`: no Containerfile in $TMP/v1 (every build context needs one; see guest/app/v1/Containerfile)"#]].assert_eq(&message);
}

#[test]
fn error_unknown_build_or_tag() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = demo_lab(dir.path(), 5000);
    let err = edgelab::stages::container::find_build(&lab, "httpd", "v3").unwrap_err();
    expect_test::expect!["container `httpd` has no build `v3` (its builds are: v1, v2)"].assert_eq(&err.to_string());
    let err = edgelab::stages::container::find_build(&lab, "nginx", "v1").unwrap_err();
    expect_test::expect!["the lab has no container app `nginx` (it has: httpd)"].assert_eq(&err.to_string());

    // `promote` checks the build and the tag before doing anything.
    lab.containers[0].tags.clear();
    let graph = container_graph(&lab);
    let store = Store::open(&dir.path().join("artifacts")).unwrap();
    let lock = store.lock(LockWait::Wait).unwrap();
    let progress = Progress::new(true);
    let promote = |build: &str| {
        promote_in(&lab, &graph, &Facts::default(), &store, &lock, &progress, "httpd", build, "prod")
            .unwrap_err()
            .to_string()
    };
    expect_test::expect!["container `httpd` has no build `v3` (its builds are: v1, v2)"].assert_eq(&promote("v3"));
    expect_test::expect![[
        r#"container `httpd` declares no tag `prod` (declared: none); add `tag "prod" "v2"` to its block in lab.kdl"#
    ]]
    .assert_eq(&promote("v2"));
}

#[test]
fn error_podman_missing_says_how_to_install() {
    expect_test::expect!["`podman` not found: apt-get install podman (Debian) or dnf install podman (RHEL)"]
        .assert_eq(&edgelab::tools::packages::missing_message("podman"));
    expect_test::expect!["`docker-registry` not found: apt-get install docker-registry (Debian)"]
        .assert_eq(&edgelab::tools::packages::missing_message("docker-registry"));
}

#[test]
fn insecure_dropin_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let location = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 122, 1)), 5000);
    assert!(registry::write_insecure_dropin(dir.path(), location).unwrap(), "first write");
    assert!(!registry::write_insecure_dropin(dir.path(), location).unwrap(), "unchanged: not rewritten");
    let text = std::fs::read_to_string(dir.path().join(registry::DROPIN_NAME)).unwrap();
    expect_test::expect![[r#"
        # Written by edgelab: the lab registry speaks plain HTTP.
        [[registry]]
        location = "192.168.122.1:5000"
        insecure = true
    "#]]
    .assert_eq(&text);
    let moved = SocketAddr::new(location.ip(), 5001);
    assert!(registry::write_insecure_dropin(dir.path(), moved).unwrap(), "a new port rewrites it");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "one file, replaced, never appended to");
}

#[test]
fn rhel_registry_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let podman = edgelab::tools::require("podman").unwrap();
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5000);
    let unit = registry::render_unit(&podman, listen, &dir.path().join("data"));
    let path = dir.path().join(registry::UNIT_NAME);
    std::fs::write(&path, &unit).unwrap();
    let program = edgelab::tools::require("systemd-analyze").unwrap();
    #[allow(clippy::disallowed_methods)]
    let output = std::process::Command::new(program).arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "systemd-analyze verify:\n{stderr}\n{unit}");
    assert!(unit.contains("--publish 0.0.0.0:5000:5000"), "{unit}");
}

#[test]
fn page_template_renders_with_figlet_and_cowsay() {
    let page = edgelab::stages::container::render_page("<pre>\n{{cowsay tux Hi & bye}}\n</pre>\n").unwrap();
    assert!(page.contains("&lt; Hi &amp; bye &gt;") && page.contains("|o_o |"), "{page}");
    let err = edgelab::stages::container::render_page("a\n{{toilet Hi}}\n").unwrap_err();
    expect_test::expect!["unknown directive `{{toilet Hi}}` at line 2 (known: figlet TEXT, cowsay FIGURE TEXT)"]
        .assert_eq(&err.to_string());
}

/// Extracts `/usr/sbin/httpd` and `/var/www/html/index.html` from a
/// container stage's OCI archive, runs that httpd on a free port with an
/// empty environment (it is static), and returns the page fetched over HTTP.
fn serve_image_page(lab: &TestLab, build_stage: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let archive = lab.store.artifact_out(&lab.output(StageKind::Container, build_stage).key).join("image.oci.tar");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), file_from_archive(&archive, "var/www/html/index.html")).unwrap();
    let httpd = www.path().join("httpd");
    std::fs::write(&httpd, file_from_archive(&archive, "usr/sbin/httpd")).unwrap();
    std::fs::set_permissions(&httpd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    #[allow(clippy::disallowed_methods)]
    let mut server = std::process::Command::new(&httpd)
        .args(["--address", "127.0.0.1", "--port", &port.to_string(), "--root"])
        .arg(www.path())
        .env_clear()
        .spawn()
        .unwrap();
    let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    wait_until(|| TcpStream::connect(address).is_ok());
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    // The demo's `pkill -9 httpd`: killed, it exits with a failure status.
    server.kill().unwrap();
    assert!(!server.wait().unwrap().success());
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// A file of the image's filesystem: the topmost layer holding it wins.
fn file_from_archive(archive: &Path, wanted: &str) -> Vec<u8> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut outer = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        blobs.insert(path, bytes);
    }
    let blob = |digest: &str| &blobs[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))];
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut found = None;
    for layer in manifest["layers"].as_array().unwrap() {
        let bytes = blob(layer["digest"].as_str().unwrap());
        let reader: Box<dyn Read> = match layer["mediaType"].as_str().unwrap().ends_with("gzip") {
            true => Box::new(flate2::read::GzDecoder::new(&bytes[..])),
            false => Box::new(&bytes[..]),
        };
        for entry in tar::Archive::new(reader).entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_string_lossy().trim_start_matches("./") == wanted {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                found = Some(bytes);
            }
        }
    }
    found.unwrap_or_else(|| panic!("the image has no /{wanted}"))
}

fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}
