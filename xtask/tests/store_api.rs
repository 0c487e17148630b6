//! The Store through its library API, in temporary folders: publish and
//! lookup, what counts as a valid artifact, leftovers of crashed writers,
//! the writers' lock, `gc` and `verify`.

#[path = "support/manifest.rs"]
mod manifest;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    time::Duration,
};

use edgelab::{
    graph::{Graph, Stage, StageId, StageKind},
    key::{Facts, Key},
    lab::Backend,
    plan::{self, Status},
    store::{LockWait, Manifest, Store, StoreError},
};
use serde_json::json;

/// A blueprint stage whose parameters carry `version`, so each version is a
/// distinct key (a generation).
fn stage(name: &str, version: u32) -> Stage {
    Stage {
        id: StageId::new(StageKind::Blueprint, name),
        schema: 1,
        backend: Backend::Local,
        params: BTreeMap::from([("name".to_string(), json!(name)), ("version".to_string(), json!(version))]),
        files: BTreeMap::new(),
        tools: vec![],
        deps: BTreeMap::new(),
        state: vec![],
    }
}

fn manifest_of(stage: &Stage) -> Manifest {
    manifest::manifest_for(stage, json!({}))
}

/// Builds and publishes `stage` with a few files; returns its key.
fn build(store: &Store, stage: &Stage) -> Key {
    let lock = store.lock(LockWait::NoWait).unwrap();
    let scratch = store.begin(&lock, &stage.id).unwrap();
    fs::write(scratch.out.join("a.txt"), format!("{} a", stage.id)).unwrap();
    fs::create_dir(scratch.out.join("sub")).unwrap();
    fs::write(scratch.out.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    let manifest = manifest_of(stage);
    let key = manifest.key.clone();
    let out = store.publish(&lock, scratch, manifest).unwrap();
    assert_eq!(out, store.artifact_out(&key));
    key
}

fn n_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}

#[test]
fn publish_then_lookup() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let stage = stage("RFE", 1);
    let key = build(&store, &stage);

    let manifest = store.artifact_manifest(&key).expect("published artifact is valid");
    assert_eq!(manifest.stage, "blueprint RFE");
    assert!(manifest.content_digest.starts_with("sha256:"));
    assert_eq!(fs::read_to_string(store.artifact_out(&key).join("a.txt")).unwrap(), "blueprint RFE a");
    assert_eq!(store.list().len(), 1);
    assert_eq!(store.last_manifest(&stage.id).unwrap().key, key);
    assert_eq!(n_entries(&tmp.path().join("scratch")), 0, "publish leaves no scratch behind");

    // Publishing the same key again is a no-op that keeps the first artifact.
    let key_again = build(&store, &stage);
    assert_eq!(key_again, key);
    assert_eq!(store.list().len(), 1);
    assert_eq!(n_entries(&tmp.path().join("scratch")), 0);
}

#[test]
fn a_forced_rebuild_replaces_the_artifact_under_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let stage = stage("RFE", 1);
    let key = build(&store, &stage);
    let lock = store.lock(LockWait::NoWait).unwrap();
    let scratch = store.begin(&lock, &stage.id).unwrap();
    fs::write(scratch.out.join("a.txt"), "rebuilt").unwrap();
    store.publish_replacing(&lock, scratch, manifest_of(&stage)).unwrap();
    let manifest = store.artifact_manifest(&key).expect("the replacing artifact is valid");
    assert_eq!(fs::read_to_string(store.artifact_out(&key).join("a.txt")).unwrap(), "rebuilt");
    assert_eq!(manifest.content_digest, edgelab::hash::digest_path(&store.artifact_out(&key), None).unwrap());
    assert_eq!(store.list().len(), 1);
    assert_eq!(n_entries(&tmp.path().join("scratch")), 0, "the replaced artifact is not left behind");
    assert!(store.verify(&lock).corrupt.is_empty());
}

#[test]
fn publish_refuses_a_key_that_is_not_the_preimage_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let lock = store.lock(LockWait::NoWait).unwrap();
    let stage = stage("RFE", 1);
    let scratch = store.begin(&lock, &stage.id).unwrap();
    let mut manifest = manifest_of(&stage);
    manifest.key = Key("a".repeat(64));
    let err = store.publish(&lock, scratch, manifest).unwrap_err();
    assert!(err.to_string().contains("not the hash of the preimage"), "{err}");
    assert!(store.list().is_empty());
}

#[test]
fn unpublished_scratch_is_invisible_and_cleaned_under_the_next_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let stage = stage("RFE", 1);
    {
        // A writer that "crashes" after writing everything but the rename.
        let lock = store.lock(LockWait::NoWait).unwrap();
        let scratch = store.begin(&lock, &stage.id).unwrap();
        fs::write(scratch.out.join("a.txt"), "half").unwrap();
        let manifest = manifest_of(&stage);
        fs::write(scratch.out.parent().unwrap().join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert!(store.artifact_manifest(&manifest.key).is_none());
        assert!(store.list().is_empty());
        // Read-only folders (as an OSTree repo has) must not stop the cleanup.
        fs::create_dir(scratch.out.join("ro")).unwrap();
        fs::write(scratch.out.join("ro/file"), "x").unwrap();
        set_mode(&scratch.out.join("ro"), 0o555);
        // A temporary file of an interrupted refs write.
        fs::write(tmp.path().join("refs/.blueprint-RFE.json.edgelab-tmp.1.2"), "{").unwrap();
    }
    assert_eq!(n_entries(&tmp.path().join("scratch")), 1);
    let _lock = store.lock(LockWait::NoWait).unwrap();
    assert_eq!(n_entries(&tmp.path().join("scratch")), 0);
    assert_eq!(n_entries(&tmp.path().join("refs")), 0);
}

#[test]
fn invalid_folders_are_not_artifacts() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let key = build(&store, &stage("RFE", 1));
    let dir = tmp.path().join(&key.0);

    // The same artifact copied under another key name: key mismatch.
    let other = Key("b".repeat(64));
    copy_tree(&dir, &tmp.path().join(&other.0));
    assert!(store.artifact_manifest(&other).is_none());

    // A manifest whose preimage was edited no longer hashes to its key.
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["preimage"]["params"]["version"] = json!(99);
    fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(store.artifact_manifest(&key).is_none());

    // Truncated manifest, missing out/.
    let key2 = build(&store, &stage("RFE", 2));
    let dir2 = tmp.path().join(&key2.0);
    fs::rename(dir2.join("out"), tmp.path().join("elsewhere")).unwrap();
    assert!(store.artifact_manifest(&key2).is_none());
    let key3 = build(&store, &stage("RFE", 3));
    let manifest3 = fs::read(tmp.path().join(&key3.0).join("manifest.json")).unwrap();
    fs::write(tmp.path().join(&key3.0).join("manifest.json"), &manifest3[..manifest3.len() / 2]).unwrap();
    assert!(store.artifact_manifest(&key3).is_none());
    assert!(store.list().is_empty());

    // Publishing over a broken folder moves it aside and publishes.
    let key_again = build(&store, &stage("RFE", 3));
    assert_eq!(key_again, key3);
    assert!(store.artifact_manifest(&key3).is_some());
    assert!(n_entries(&tmp.path().join("quarantine")) >= 1);
}

#[test]
fn verify_quarantines_corrupt_artifacts_and_the_plan_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let stages: Vec<Stage> =
        ["edited", "truncated", "added", "removed", "chmod", "intact"].iter().map(|name| stage(name, 1)).collect();
    let keys: Vec<Key> = stages.iter().map(|stage| build(&store, stage)).collect();
    let lock = store.lock(LockWait::NoWait).unwrap();
    assert_eq!(store.verify(&lock).corrupt.len(), 0, "a fresh store verifies clean");

    let out = |idx: usize| store.artifact_out(&keys[idx]);
    // Same length, one byte changed.
    let mut bytes = fs::read(out(0).join("sub/b.bin")).unwrap();
    bytes[500] ^= 1;
    fs::write(out(0).join("sub/b.bin"), bytes).unwrap();
    fs::OpenOptions::new().write(true).open(out(1).join("sub/b.bin")).unwrap().set_len(10).unwrap();
    fs::write(out(2).join("extra"), "x").unwrap();
    fs::remove_file(out(3).join("a.txt")).unwrap();
    set_mode(&out(4).join("a.txt"), 0o755);

    let report = store.verify(&lock);
    let corrupt: BTreeSet<String> = report.corrupt.iter().map(|entry| entry.stage.clone().unwrap()).collect();
    let expected: BTreeSet<String> = stages[..5].iter().map(|stage| stage.id.to_string()).collect();
    assert_eq!(corrupt, expected);
    assert_eq!(report.checked, 6);
    assert!(report.corrupt.iter().all(|entry| entry.quarantined_to.as_ref().is_some_and(|to| to.exists())));
    assert_eq!(store.list().len(), 1);
    assert_eq!(store.verify(&lock).corrupt.len(), 0, "verify after quarantine is clean");

    // The plan sees the quarantined artifact as missing and says so.
    let graph = Graph { stages: stages.clone() };
    let plan = plan::plan(&graph, &Facts::default(), &store, &|_| Ok(()));
    let entry = plan.entry(&stages[0].id).unwrap();
    assert_eq!(entry.status, Status::Stale);
    assert_eq!(entry.reasons, vec![format!("artifact {} is missing or corrupt in the store", keys[0].short())]);
    assert_eq!(plan.entry(&stages[5].id).unwrap().status, Status::Fresh);
    drop(lock);

    // A rebuild publishes it again.
    build(&store, &stages[0]);
    let lock = store.lock(LockWait::NoWait).unwrap();
    assert_eq!(store.verify(&lock).corrupt.len(), 0);
    assert_eq!(store.list().len(), 2);
}

#[test]
fn gc_keeps_reachable_and_recent_generations() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let keys: Vec<Key> = (1..=5).map(|version| build(&store, &stage("RFE", version))).collect();
    let other = build(&store, &stage("other", 1));
    // The lab reaches an old generation (it was reverted to version 1).
    let reachable = BTreeSet::from([keys[0].clone()]);
    fs::create_dir(tmp.path().join("quarantine/junk")).unwrap();

    let lock = store.lock(LockWait::NoWait).unwrap();
    let report = store.gc(&lock, &reachable, 2);
    assert_eq!(report.kept, 4, "{report:?}");
    assert_eq!(report.removed.len(), 2);
    assert_eq!(report.n_quarantine_removed, 1);
    let left: BTreeSet<Key> = store.list().into_iter().map(|manifest| manifest.key).collect();
    assert_eq!(left, BTreeSet::from([keys[0].clone(), keys[3].clone(), keys[4].clone(), other]));
    assert_eq!(n_entries(&tmp.path().join("scratch")), 0);
    assert_eq!(n_entries(&tmp.path().join("quarantine")), 0);
    // Newest history still explains the stage.
    assert_eq!(store.last_manifest(&StageId::new(StageKind::Blueprint, "RFE")).unwrap().key, keys[4]);
    drop(lock);

    // Generations recorded again move to the newest position.
    build(&store, &stage("RFE", 1));
    let lock = store.lock(LockWait::NoWait).unwrap();
    let report = store.gc(&lock, &BTreeSet::new(), 1);
    let left: BTreeSet<Key> = store.list().into_iter().map(|manifest| manifest.key).collect();
    assert!(left.contains(&keys[0]), "{report:?}");
    assert!(!left.contains(&keys[4]));
}

#[test]
fn the_lock_excludes_a_second_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let lock = store.lock(LockWait::NoWait).unwrap();
    // flock locks belong to an open file, so a second open in this process conflicts too.
    match store.lock(LockWait::NoWait) {
        Err(err @ StoreError::Locked { .. }) => {
            let message = err.to_string();
            assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
            assert!(message.contains("--no-wait"), "{message}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let _lock = store.lock(LockWait::Wait).unwrap();
            started.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    drop(lock);
    let waited = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(250), "the waiter got the lock after {waited:?}");
}

#[test]
fn state_files_are_replaced_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.save_state("services/registry.json", b"one").unwrap();
    store.save_state("services/registry.json", b"two").unwrap();
    assert_eq!(store.load_state("services/registry.json").unwrap(), b"two");
    assert_eq!(n_entries(&tmp.path().join("run/services")), 1);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).unwrap();
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}
