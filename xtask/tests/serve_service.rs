//! The file server as a lab service (start, health, restart after death,
//! stop) and `cargo xtask serve`'s image preparation (safe extraction of a
//! compose artifact), with real programs: edgelab-serve, ostree, ureq.

#[path = "support/manifest.rs"]
mod manifest;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use edgelab::{
    cli::serve::{extract_image, extract_tarball},
    graph::{Stage, StageId, StageKind},
    lab::Backend,
    services::{self, Ensured, file_server},
    store::{LockWait, Manifest, Store},
    tools,
};

#[test]
fn service_starts_serves_restarts_and_stops() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("artifacts")).unwrap();
    let served = temp.path().join("served");
    std::fs::create_dir_all(served.join("repo")).unwrap();
    std::fs::write(served.join("repo/config"), "[core]\nrepo_version=1\nmode=archive-z2\n").unwrap();
    let listen = free_port();

    let started = file_server::ensure_serving(&store, &served, listen).unwrap();
    let Ensured::Started { pid } = started else { panic!("expected a fresh start, got {started:?}") };
    assert_eq!(get(listen, "/repo/config"), "[core]\nrepo_version=1\nmode=archive-z2\n");
    let counters = file_server::counters(listen).unwrap();
    assert_eq!((counters.requests, counters.bytes_sent), (1, 38));

    let again = file_server::ensure_serving(&store, &served, listen).unwrap();
    assert_eq!(again, Ensured::AlreadyRunning { pid });

    kill_hard(pid);
    let restarted = file_server::ensure_serving(&store, &served, listen).unwrap();
    let Ensured::Restarted { pid: new_pid, why } = restarted else { panic!("expected a restart, got {restarted:?}") };
    assert_ne!(new_pid, pid);
    assert!(why.contains("had exited"), "{why}");
    assert_eq!(get(listen, "/repo/config").len(), 38);
    // The server writes its log in batches, a few times a second.
    let log_path = store.run_dir("file-server").unwrap().join("file-server.log");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut log = String::new();
    while !log.contains("/repo/config") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        log = std::fs::read_to_string(&log_path).unwrap();
    }
    assert!(log.contains("/repo/config"), "the service log should hold request lines:\n{log}");

    assert!(file_server::stop(&store).unwrap());
    assert!(TcpStream::connect_timeout(&listen, Duration::from_millis(500)).is_err(), "still listening after stop");
    assert!(!file_server::stop(&store).unwrap(), "a second stop finds nothing running");
    assert_eq!(services::running_pid(&store, file_server::NAME), None);
}

#[test]
fn serving_another_folder_replaces_the_running_server() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("artifacts")).unwrap();
    let (first, second) = (temp.path().join("first"), temp.path().join("second"));
    for (dir, text) in [(&first, "one"), (&second, "two")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("which"), text).unwrap();
    }
    let listen = free_port();
    let Ensured::Started { pid } = file_server::ensure_serving(&store, &first, listen).unwrap() else { panic!() };
    assert_eq!(get(listen, "/which"), "one");
    let Ensured::Started { pid: new_pid } = file_server::ensure_serving(&store, &second, listen).unwrap() else {
        panic!("a different root should be a fresh start")
    };
    assert_ne!(pid, new_pid);
    assert_eq!(get(listen, "/which"), "two");
    file_server::stop(&store).unwrap();
}

/// An edgelab killed between starting the server and recording its pid
/// (the converge test's kill during `lab up` found it) left a server
/// running that no record names: the next start finds it by its log and
/// replaces it instead of calling the port a stranger's.
#[test]
fn a_server_running_without_its_record_is_replaced() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("artifacts")).unwrap();
    let served = temp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("which"), "one").unwrap();
    let listen = free_port();
    let Ensured::Started { pid } = file_server::ensure_serving(&store, &served, listen).unwrap() else { panic!() };
    std::fs::remove_file(store.run_dir(file_server::NAME).unwrap().join("pid")).unwrap();
    assert_eq!(services::running_pid(&store, file_server::NAME), None);

    let again = file_server::ensure_serving(&store, &served, listen).unwrap();
    let Ensured::Restarted { pid: new_pid, why } = again else { panic!("expected a replacement, got {again:?}") };
    assert_ne!(new_pid, pid);
    assert!(why.contains(&format!("pid {pid} was running unrecorded")), "{why}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])));
    assert_eq!(get(listen, "/which"), "one");
    assert_eq!(services::running_pid(&store, file_server::NAME), Some(new_pid));
    file_server::stop(&store).unwrap();
}

#[test]
fn image_artifact_is_extracted_once_and_pulled_from() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("artifacts")).unwrap();
    // A hand-made compose artifact, shaped like osbuild-composer's tarball.
    let compose_dir = temp.path().join("compose");
    let repo = compose_dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    tools::ostree::init(&repo, "archive").unwrap();
    let tree = temp.path().join("tree");
    for file_idx in 0..40 {
        let dir = tree.join(format!("usr/lib/d{}", file_idx % 4));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{file_idx}")), format!("file {file_idx}\n").repeat(file_idx + 1)).unwrap();
    }
    let commit = tools::ostree::commit_tree(&repo, "rhel/8/x86_64/edge", &tree, "v2").unwrap();
    std::fs::write(compose_dir.join("compose.json"), format!("{{\"ostree-commit\":\"{commit}\"}}")).unwrap();
    let manifest = publish_compose(&store, "v2", &commit, |tarball| {
        let mut builder = tar::Builder::new(std::fs::File::create(tarball).unwrap());
        builder.append_path_with_name(compose_dir.join("compose.json"), "compose.json").unwrap();
        builder.append_dir_all("repo", &repo).unwrap();
        builder.finish().unwrap();
    });

    let extracted = extract_image(&store, &manifest).unwrap();
    assert_eq!(extracted.commit, commit);
    assert!(extracted.root.join("compose.json").is_file());
    let marker_time = std::fs::metadata(extracted.root.join("repo/config")).unwrap().modified().unwrap();
    let again = extract_image(&store, &manifest).unwrap();
    assert_eq!(again.root, extracted.root);
    let unchanged = std::fs::metadata(again.root.join("repo/config")).unwrap().modified().unwrap();
    assert_eq!(marker_time, unchanged, "a second serve must not extract again");

    let listen = free_port();
    file_server::ensure_serving(&store, &extracted.root, listen).unwrap();
    let client = temp.path().join("client");
    std::fs::create_dir_all(&client).unwrap();
    tools::ostree::init(&client, "archive").unwrap();
    tools::ostree::remote_add(&client, "lab", &format!("http://{listen}/repo/")).unwrap();
    tools::ostree::pull(&client, "lab", "rhel/8/x86_64/edge").unwrap();
    let counters = file_server::counters(listen).unwrap();
    file_server::stop(&store).unwrap();
    // config, the ref, the commit, and at least one object per file.
    assert!(counters.requests > 40, "{counters:?}");
}

#[test]
fn hostile_tarballs_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let check = |name: &str, entry_type: tar::EntryType, link: Option<&str>| {
        let tarball = temp.path().join(format!("{}.tar", name.replace('/', "_")));
        let mut builder = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
        let mut header = tar::Header::new_old();
        // Written into the raw field: `set_path` itself refuses `..`.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(entry_type);
        header.set_size(0);
        header.set_mode(0o644);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, std::io::empty()).unwrap();
        builder.finish().unwrap();
        drop(builder);
        let dest = temp.path().join("dest");
        let err = extract_tarball(&tarball, &dest).unwrap_err().to_string();
        assert!(!dest.exists(), "{name}: nothing may be published");
        assert!(!temp.path().join("evil").exists(), "{name}: escaped");
        err
    };
    let err = check("../evil", tar::EntryType::Regular, None);
    assert!(err.contains("unsafe path"), "{err}");
    let err = check("repo/../../evil", tar::EntryType::Regular, None);
    assert!(err.contains("unsafe path"), "{err}");
    let err = check("/evil", tar::EntryType::Regular, None);
    assert!(err.contains("unsafe path"), "{err}");
    let err = check("repo/link", tar::EntryType::Symlink, Some("/etc"));
    assert!(err.contains("only files and folders"), "{err}");
    let err = check("repo/hard", tar::EntryType::Link, Some("/etc/passwd"));
    assert!(err.contains("only files and folders"), "{err}");
}

fn publish_compose(store: &Store, image: &str, commit: &str, write_tarball: impl FnOnce(&Path)) -> Manifest {
    let stage = Stage {
        id: StageId::new(StageKind::Compose, image),
        schema: 1,
        backend: Backend::Local,
        params: [("image".to_string(), serde_json::json!(image))].into_iter().collect(),
        files: Default::default(),
        tools: vec![],
        deps: Default::default(),
        state: vec![],
    };
    let lock = store.lock(LockWait::Wait).unwrap();
    let scratch = store.begin(&lock, &stage.id).unwrap();
    write_tarball(&scratch.out.join(format!("{image}-commit.tar")));
    let manifest =
        Manifest { output_digest: commit.to_string(), ..manifest::manifest_for(&stage, serde_json::Value::Null) };
    store.publish(&lock, scratch, manifest.clone()).unwrap();
    manifest
}

fn free_port() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap()
}

fn get(listen: SocketAddr, path: &str) -> String {
    ureq::get(&format!("http://{listen}{path}")).call().unwrap().into_string().unwrap()
}

/// SIGKILL, so the server dies without cleaning up, then waits for it.
fn kill_hard(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("pid {pid} survived SIGKILL");
}
