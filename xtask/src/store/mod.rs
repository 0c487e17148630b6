//! The Store: `artifacts/`, content-addressed and crash-safe.
//!
//! An artifact is a folder named by its key holding `manifest.json` and `out/`.
//! A stage builds into a scratch folder inside the store (same filesystem);
//! `publish` writes and syncs the manifest, then renames the scratch folder
//! into place, so a crash at any point leaves either nothing or a complete
//! artifact. Writers hold `lock`; readers need no lock because a published
//! folder never changes. Only this module writes under `artifacts/`.

mod statcache;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use statcache::StatCache;

use crate::{
    graph::StageId,
    key::{Key, Preimage},
    plan::{ArtifactInfo, StoreView},
};

/// Errors a caller must branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {path} is locked by another edgelab process (pid {pid}); rerun without --no-wait to wait for it"
    )]
    Locked { path: PathBuf, pid: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// What the store keeps about an artifact, in `<key>/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// `compose v2`.
    pub stage: String,
    pub kind: crate::graph::StageKind,
    pub key: Key,
    pub preimage: Preimage,
    /// The output digest downstream keys use (commit id, manifest digest...).
    pub output_digest: String,
    /// Digest of `out/` when published; `verify` rehashes against it.
    pub content_digest: String,
    pub created_unix: u64,
    pub duration_ms: u64,
    /// Stage-specific facts (compose.json fields, image digests...).
    #[serde(default)]
    pub extra: Value,
}

/// `artifacts/` on disk.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Held while writing; dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// A stage's scratch folder; `out` is where the stage writes.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait for the other process, saying so once.
    Wait,
    /// Fail at once with `StoreError::Locked`.
    NoWait,
}

/// One generation in a stage's history (`refs/<stage>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Generation {
    key: Key,
    recorded_unix: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub kept: usize,
    pub removed: Vec<String>,
    pub bytes_freed: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub corrupt: Vec<String>,
    pub scratch_removed: usize,
}

impl Store {
    /// Opens (creating when needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["", "refs", "scratch", "quarantine", "run"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|source| io_err(format!("creating {}", dir.display()), source))?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the writers' lock. Leftover scratch folders of crashed writers are
    /// removed once the lock is held (no live writer can own them then).
    pub fn lock(&self, wait: LockWait) -> Result<StoreLock, StoreError> {
        let path = self.root.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| io_err(format!("opening {}", path.display()), source))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&path).unwrap_or_default().trim().to_string();
                if wait == LockWait::NoWait {
                    return Err(StoreError::Locked { path, pid });
                }
                eprintln!("waiting for another edgelab process (pid {pid}) to release {}", path.display());
                file.lock().map_err(|source| io_err(format!("locking {}", path.display()), source))?;
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(io_err(format!("locking {}", path.display()), source));
            }
        }
        file.set_len(0).ok();
        write!(file, "{}", std::process::id()).ok();
        let lock = StoreLock { _file: file };
        self.clear_scratch(&lock);
        Ok(lock)
    }

    /// A fresh scratch folder for `stage`.
    pub fn begin(&self, _lock: &StoreLock, stage: &StageId) -> Result<Scratch, StoreError> {
        let dir =
            self.root.join("scratch").join(format!("{}.{}.{}", stage.file_name(), std::process::id(), now_nanos()));
        let out = dir.join("out");
        fs::create_dir_all(&out).map_err(|source| io_err(format!("creating {}", out.display()), source))?;
        Ok(Scratch { dir, out })
    }

    /// Publishes a finished scratch folder under `manifest.key`.
    pub fn publish(&self, lock: &StoreLock, scratch: Scratch, mut manifest: Manifest) -> Result<PathBuf, StoreError> {
        let what = |step: &str| format!("publishing {} ({}): {step}", manifest.stage, manifest.key.short());
        manifest.content_digest =
            crate::hash::digest_path(&scratch.out, None).map_err(|source| io_err(what("hashing out/"), source))?;
        sync_tree(&scratch.out).map_err(|source| io_err(what("syncing out/"), source))?;
        let manifest_path = scratch.dir.join("manifest.json");
        write_synced(&manifest_path, &serde_json::to_vec_pretty(&manifest).unwrap_or_default())
            .map_err(|source| io_err(what("writing manifest"), source))?;
        let target = self.root.join(&manifest.key.0);
        if self.artifact_manifest(&manifest.key).is_some() {
            // Published meanwhile by an earlier run: identical by key.
            fs::remove_dir_all(&scratch.dir).ok();
        } else {
            if target.exists() {
                // A folder with this name but no valid manifest is not an
                // artifact; move it aside rather than trust it.
                self.quarantine_path(&target);
            }
            fs::rename(&scratch.dir, &target).map_err(|source| io_err(what("renaming into place"), source))?;
            sync_dir(&self.root).map_err(|source| io_err(what("syncing the store"), source))?;
        }
        self.record(lock, &manifest)?;
        Ok(target.join("out"))
    }

    /// The manifest of a published artifact, if it is there and readable.
    pub fn artifact_manifest(&self, key: &Key) -> Option<Manifest> {
        if key.0.len() != 64 || !key.0.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes = fs::read(self.root.join(&key.0).join("manifest.json")).ok()?;
        let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
        (manifest.key == *key).then_some(manifest)
    }

    /// The `out/` folder of a published artifact.
    pub fn artifact_out(&self, key: &Key) -> PathBuf {
        self.root.join(&key.0).join("out")
    }

    /// The newest generation's manifest of `stage`.
    pub fn last_manifest(&self, stage: &StageId) -> Option<Manifest> {
        let generations = self.generations(stage);
        generations.iter().rev().find_map(|generation| self.artifact_manifest(&generation.key)).or_else(|| {
            // Its artifact may be gone (gc, quarantine); the preimage of the
            // newest one still explains what changed since.
            let newest = generations.last()?;
            let bytes = fs::read(self.root.join("refs").join(format!("{}.last.json", stage.file_name()))).ok()?;
            let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
            (manifest.key == newest.key).then_some(manifest)
        })
    }

    /// Every published artifact.
    pub fn list(&self) -> Vec<Manifest> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return vec![];
        };
        let mut manifests: Vec<Manifest> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| self.artifact_manifest(&Key(entry.file_name().to_string_lossy().into_owned())))
            .collect();
        manifests.sort_by(|a, b| a.stage.cmp(&b.stage).then(a.created_unix.cmp(&b.created_unix)));
        manifests
    }

    /// A folder for a service's or guest's run state (pids, logs, disks).
    pub fn run_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("run").join(name);
        fs::create_dir_all(&dir).map_err(|source| io_err(format!("creating {}", dir.display()), source))?;
        Ok(dir)
    }

    /// A small state file under `run/` (tool identities, service records).
    pub fn load_state(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.root.join("run").join(name)).ok()
    }

    /// Replaces a state file under `run/` atomically. State files are caches
    /// or records that need no writer lock: last writer wins.
    pub fn save_state(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.root.join("run").join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| io_err(format!("creating {}", parent.display()), source))?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| io_err(format!("writing {}", path.display()), source))
    }

    /// Loads the stat cache (empty when absent or damaged).
    pub fn load_stat_cache(&self) -> StatCache {
        match fs::read(self.root.join("statcache")) {
            Ok(bytes) => StatCache::from_bytes(&bytes),
            Err(_) => StatCache::new(),
        }
    }

    /// Saves the stat cache atomically. It is an optimisation: writing it
    /// needs no lock (last writer wins; both versions are valid).
    pub fn save_stat_cache(&self, cache: &StatCache) {
        if !cache.is_dirty() {
            return;
        }
        let tmp = self.root.join(format!("statcache.{}.tmp", std::process::id()));
        if fs::write(&tmp, cache.to_bytes()).is_ok() {
            fs::rename(&tmp, self.root.join("statcache")).ok();
        }
    }

    /// Removes artifacts the lab no longer reaches, keeping `reachable` and,
    /// per stage, the newest `keep_generations` generations.
    pub fn gc(&self, _lock: &StoreLock, reachable: &BTreeSet<Key>, keep_generations: usize) -> GcReport {
        let mut keep: BTreeSet<Key> = reachable.clone();
        for generations in self.all_generations().values() {
            for generation in generations.iter().rev().take(keep_generations) {
                keep.insert(generation.key.clone());
            }
        }
        let mut report = GcReport::default();
        for manifest in self.list() {
            if keep.contains(&manifest.key) {
                report.kept += 1;
                continue;
            }
            let dir = self.root.join(&manifest.key.0);
            report.bytes_freed += dir_size(&dir);
            // Rename first so a crash mid-delete leaves no half artifact.
            let doomed = self.root.join("scratch").join(format!("gc.{}", manifest.key.0));
            if fs::rename(&dir, &doomed).is_ok() {
                fs::remove_dir_all(&doomed).ok();
                report.removed.push(format!("{} {}", manifest.stage, manifest.key.short()));
            }
        }
        report
    }

    /// Rehashes every artifact's `out/`; corrupt ones are moved to
    /// `quarantine/`, so the next `lab up` rebuilds them.
    pub fn verify(&self, lock: &StoreLock) -> VerifyReport {
        let mut report = VerifyReport::default();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return report;
        };
        for entry in entries.filter_map(|entry| entry.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            report.checked += 1;
            let key = Key(name.clone());
            let ok = match self.artifact_manifest(&key) {
                Some(manifest) => {
                    crate::hash::digest_path(&self.artifact_out(&key), None).ok().as_ref()
                        == Some(&manifest.content_digest)
                }
                None => false,
            };
            if !ok {
                report.corrupt.push(name);
                self.quarantine_path(&entry.path());
            }
        }
        let _ = lock;
        report
    }

    fn record(&self, _lock: &StoreLock, manifest: &Manifest) -> Result<(), StoreError> {
        let stage = StageId::parse(&manifest.stage).unwrap_or(StageId::new(manifest.kind, manifest.stage.clone()));
        let mut generations = self.generations(&stage);
        if generations.last().map(|it| &it.key) != Some(&manifest.key) {
            generations.retain(|it| it.key != manifest.key);
            generations.push(Generation { key: manifest.key.clone(), recorded_unix: now_secs() });
        }
        let refs = self.root.join("refs");
        let path = refs.join(format!("{}.json", stage.file_name()));
        write_atomic(&path, &serde_json::to_vec_pretty(&generations).unwrap_or_default())
            .map_err(|source| io_err(format!("recording {}", manifest.stage), source))?;
        let last = refs.join(format!("{}.last.json", stage.file_name()));
        write_atomic(&last, &serde_json::to_vec_pretty(manifest).unwrap_or_default())
            .map_err(|source| io_err(format!("recording {}", manifest.stage), source))
    }

    fn generations(&self, stage: &StageId) -> Vec<Generation> {
        let path = self.root.join("refs").join(format!("{}.json", stage.file_name()));
        fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    fn all_generations(&self) -> BTreeMap<String, Vec<Generation>> {
        let Ok(entries) = fs::read_dir(self.root.join("refs")) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.ends_with(".json") && !name.ends_with(".last.json")
            })
            .filter_map(|entry| {
                let generations = serde_json::from_slice(&fs::read(entry.path()).ok()?).ok()?;
                Some((entry.file_name().to_string_lossy().into_owned(), generations))
            })
            .collect()
    }

    fn quarantine_path(&self, path: &Path) {
        let name = path.file_name().map(|it| it.to_string_lossy().into_owned()).unwrap_or_default();
        let target = self.root.join("quarantine").join(format!("{name}.{}", now_nanos()));
        fs::rename(path, target).ok();
    }

    fn clear_scratch(&self, _lock: &StoreLock) -> usize {
        let Ok(entries) = fs::read_dir(self.root.join("scratch")) else {
            return 0;
        };
        let mut n_removed = 0;
        for entry in entries.filter_map(|entry| entry.ok()) {
            make_writable(&entry.path());
            if fs::remove_dir_all(entry.path()).is_ok() {
                n_removed += 1;
            }
        }
        n_removed
    }
}

impl StoreView for Store {
    fn artifact(&self, key: &Key) -> Option<ArtifactInfo> {
        let manifest = self.artifact_manifest(key)?;
        Some(ArtifactInfo { key: manifest.key, output_digest: manifest.output_digest, preimage: manifest.preimage })
    }

    fn last(&self, stage: &StageId) -> Option<ArtifactInfo> {
        let manifest = self.last_manifest(stage)?;
        Some(ArtifactInfo { key: manifest.key, output_digest: manifest.output_digest, preimage: manifest.preimage })
    }
}

impl Manifest {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}

fn io_err(what: String, source: io::Error) -> StoreError {
    StoreError::Io { what, source }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// fsyncs every regular file and folder under `root`, so the rename that
/// publishes it cannot land before its content.
fn sync_tree(root: &Path) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(io::Error::other)?;
        let file_type = entry.file_type();
        if file_type.is_file() || file_type.is_dir() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    Ok(())
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(path).into_iter().filter_map(|entry| entry.ok()) {
        if entry.file_type().is_dir()
            && let Ok(meta) = entry.metadata()
        {
            let mut perms = meta.permissions();
            perms.set_mode(perms.mode() | 0o700);
            fs::set_permissions(entry.path(), perms).ok();
        }
    }
}

fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|it| it.as_secs()).unwrap_or(0)
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|it| it.as_nanos()).unwrap_or(0)
}
