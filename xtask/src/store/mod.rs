//! The Store: `artifacts/`, content-addressed and crash-safe.
//!
//! An artifact is a folder named by its key holding `manifest.json` and `out/`.
//! A stage builds into a scratch folder inside the store (same filesystem);
//! `publish` hashes and syncs `out/`, writes and syncs the manifest, then
//! renames the scratch folder into place and syncs the store folder, so a
//! crash at any point leaves either nothing or a complete artifact. The
//! key-named folder is the whole truth: `refs/` only records history (the
//! generations of each stage, for `gc` and `plan --explain`), so a crash
//! between the rename and the refs update loses a line of history, never an
//! artifact. Writers hold `lock`; readers need no lock because a published
//! folder never changes until `gc` or `verify` renames it away whole.
//!
//! Layout:
//!
//! ```text
//! artifacts/
//!   lock                  the writers' lock (holds the holder's pid)
//!   <key>/manifest.json   a published artifact ...
//!   <key>/out/            ... and what its stage produced
//!   refs/<stage>.json     generations of a stage, newest last, and its last manifest
//!   scratch/              stages build here; emptied under the lock
//!   quarantine/           corrupt artifacts `verify` moved aside; emptied by `gc`
//!   run/                  run state of services and guests, small state files
//!   statcache             the stat cache (binary, checksummed)
//! ```
//!
//! Only this module writes under `artifacts/`.

pub mod statcache;

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

/// What `publish` does with an artifact already published under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Keep it: it is identical by key (another run published it meanwhile).
    Keep,
    /// Replace it: a forced rebuild's result wins.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait for the other process, saying so once.
    Wait,
    /// Fail at once with `StoreError::Locked`.
    NoWait,
}

/// One generation in a stage's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Generation {
    key: Key,
    recorded_unix: u64,
}

/// `refs/<stage>.json`: one file, replaced atomically, so history and the
/// last manifest never disagree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StageRefs {
    /// Oldest first.
    generations: Vec<Generation>,
    /// The newest generation's manifest, kept even when its artifact is gone
    /// so `plan --explain` can still say what changed since.
    last: Option<Manifest>,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub kept: usize,
    /// `stage key` of each removed artifact.
    pub removed: Vec<String>,
    /// Quarantined folders deleted.
    pub n_quarantine_removed: usize,
    pub bytes_freed: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub checked: usize,
    /// Each corrupt entry: its key and what is wrong with it.
    pub corrupt: Vec<CorruptEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CorruptEntry {
    pub key: String,
    /// The stage, when the manifest still says.
    pub stage: Option<String>,
    pub problem: String,
    /// Where it was moved.
    pub quarantined_to: Option<PathBuf>,
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

    /// Takes the writers' lock. With `LockWait::Wait` a second process says
    /// once that it waits, and who for; with `NoWait` it fails at once.
    /// Leftovers of crashed writers (scratch folders, temporary files) are
    /// removed once the lock is held: no live writer can own them then.
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
                let pid = lock_holder(&path);
                if wait == LockWait::NoWait {
                    return Err(StoreError::Locked { path, pid });
                }
                eprintln!(
                    "waiting for another edgelab process (pid {pid}) to release the store lock {}",
                    path.display()
                );
                file.lock().map_err(|source| io_err(format!("locking {}", path.display()), source))?;
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(io_err(format!("locking {}", path.display()), source));
            }
        }
        // Only for the message above; the flock is what excludes.
        file.set_len(0).ok();
        write!(file, "{}", std::process::id()).ok();
        let lock = StoreLock { _file: file };
        self.clear_leftovers(&lock);
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

    /// Publishes a finished scratch folder under `manifest.key`: hashes and
    /// syncs `out/`, writes and syncs the manifest, renames the folder into
    /// place, syncs the store, and then records the generation.
    pub fn publish(&self, lock: &StoreLock, scratch: Scratch, manifest: Manifest) -> Result<PathBuf, StoreError> {
        self.publish_as(lock, scratch, manifest, Existing::Keep)
    }

    /// Like `publish`, but an artifact already published under the key is
    /// replaced by this one (a forced rebuild: `lab up --rebuild`). The old
    /// folder is renamed into scratch/ first and deleted after, so a crash
    /// in between leaves the key unbuilt, never half of either.
    pub fn publish_replacing(
        &self,
        lock: &StoreLock,
        scratch: Scratch,
        manifest: Manifest,
    ) -> Result<PathBuf, StoreError> {
        self.publish_as(lock, scratch, manifest, Existing::Replace)
    }

    fn publish_as(
        &self,
        lock: &StoreLock,
        scratch: Scratch,
        mut manifest: Manifest,
        existing: Existing,
    ) -> Result<PathBuf, StoreError> {
        let what = |step: &str| format!("publishing {} ({}): {step}", manifest.stage, manifest.key.short());
        if manifest.preimage.key() != manifest.key {
            return Err(io_err(what("checking the key"), io::Error::other("the key is not the hash of the preimage")));
        }
        manifest.content_digest =
            crate::hash::digest_path(&scratch.out, None).map_err(|source| io_err(what("hashing out/"), source))?;
        sync_tree(&scratch.out).map_err(|source| io_err(what("syncing out/"), source))?;
        let manifest_path = scratch.dir.join("manifest.json");
        let manifest_bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|err| io_err(what("encoding the manifest"), err.into()))?;
        write_synced(&manifest_path, &manifest_bytes).map_err(|source| io_err(what("writing manifest"), source))?;
        sync_dir(&scratch.dir).map_err(|source| io_err(what("syncing the scratch folder"), source))?;
        let target = self.root.join(&manifest.key.0);
        if existing == Existing::Replace && fs::symlink_metadata(&target).is_ok() {
            let old = self.root.join("scratch").join(format!("replaced.{}.{}", manifest.key.0, now_nanos()));
            fs::rename(&target, &old).map_err(|source| io_err(what("moving the replaced artifact aside"), source))?;
            sync_dir(&self.root).map_err(|source| io_err(what("syncing the store"), source))?;
            remove_tree(&old);
        }
        if self.artifact_manifest(&manifest.key).is_some() {
            // Published meanwhile by an earlier run: identical by key.
            remove_tree(&scratch.dir);
        } else {
            if fs::symlink_metadata(&target).is_ok() {
                // A folder with this name but no valid manifest is not an
                // artifact; move it aside rather than trust it.
                self.quarantine_path(&target).map_err(|source| io_err(what("moving a broken folder aside"), source))?;
            }
            fs::rename(&scratch.dir, &target).map_err(|source| io_err(what("renaming into place"), source))?;
            sync_dir(&self.root).map_err(|source| io_err(what("syncing the store"), source))?;
        }
        self.record(lock, &manifest)?;
        Ok(target.join("out"))
    }

    /// The manifest of a published artifact, if it is there and valid: the
    /// manifest parses, names this key, its preimage hashes to this key, and
    /// `out/` is a folder. Contents are not rehashed here (`verify` does).
    pub fn artifact_manifest(&self, key: &Key) -> Option<Manifest> {
        self.check_artifact(key).ok()
    }

    /// Like `artifact_manifest`, saying what is wrong.
    fn check_artifact(&self, key: &Key) -> Result<Manifest, String> {
        if !is_key_name(&key.0) {
            return Err("not a key".into());
        }
        let dir = self.root.join(&key.0);
        let bytes = fs::read(dir.join("manifest.json")).map_err(|err| format!("reading manifest.json: {err}"))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|err| format!("manifest.json does not parse: {err}"))?;
        if manifest.key != *key {
            return Err(format!("manifest.json names key {}", manifest.key.short()));
        }
        if manifest.preimage.key() != *key {
            return Err("the manifest's preimage does not hash to its key".into());
        }
        if !fs::symlink_metadata(dir.join("out")).map(|meta| meta.is_dir()).unwrap_or(false) {
            return Err("out/ is missing".into());
        }
        Ok(manifest)
    }

    /// The `out/` folder of a published artifact.
    pub fn artifact_out(&self, key: &Key) -> PathBuf {
        self.root.join(&key.0).join("out")
    }

    /// The newest generation's manifest of `stage`, even when its artifact
    /// is gone (gc, quarantine): its preimage still explains what changed.
    pub fn last_manifest(&self, stage: &StageId) -> Option<Manifest> {
        let refs = self.stage_refs(stage);
        match refs.last {
            Some(last) if refs.generations.last().map(|it| &it.key) == Some(&last.key) => Some(last),
            _ => refs.generations.iter().rev().find_map(|generation| self.artifact_manifest(&generation.key)),
        }
    }

    /// Every published, valid artifact.
    pub fn list(&self) -> Vec<Manifest> {
        let mut manifests: Vec<Manifest> =
            self.key_folders().iter().filter_map(|key| self.artifact_manifest(key)).collect();
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
        write_atomic(&path, bytes).map_err(|source| io_err(format!("writing {}", path.display()), source))
    }

    /// Loads the stat cache (empty when absent or damaged), on another
    /// thread until first used.
    pub fn load_stat_cache(&self) -> StatCache {
        StatCache::load_in_background(self.root.join("statcache"))
    }

    /// Saves the stat cache atomically when it changed. It is an
    /// optimisation: writing it needs no lock (last writer wins; both
    /// versions are valid), and it is not fsynced because a torn file fails
    /// its checksum and is dropped.
    pub fn save_stat_cache(&self, cache: &StatCache) {
        if !cache.is_dirty() {
            return;
        }
        let path = self.root.join("statcache");
        let tmp = tmp_path(&path);
        if fs::write(&tmp, cache.to_bytes()).is_ok() && fs::rename(&tmp, &path).is_err() {
            fs::remove_file(&tmp).ok();
        }
    }

    /// Removes artifacts the lab no longer reaches, keeping `reachable` and,
    /// per stage, the newest `keep_generations` generations; empties
    /// `quarantine/`, and drops history lines whose artifact is gone.
    pub fn gc(&self, lock: &StoreLock, reachable: &BTreeSet<Key>, keep_generations: usize) -> GcReport {
        let all_refs = self.all_stage_refs();
        let mut keep: BTreeSet<Key> = reachable.clone();
        for refs in all_refs.values() {
            for generation in refs.generations.iter().rev().take(keep_generations) {
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
            let size = dir_size(&dir);
            // Rename first so a crash mid-delete leaves no half artifact; a
            // leftover in scratch/ is removed under the next lock.
            let doomed = self.root.join("scratch").join(format!("gc.{}.{}", manifest.key.0, now_nanos()));
            if fs::rename(&dir, &doomed).is_ok() {
                remove_tree(&doomed);
                report.bytes_freed += size;
                report.removed.push(format!("{} {}", manifest.stage, manifest.key.short()));
            }
        }
        if let Ok(entries) = fs::read_dir(self.root.join("quarantine")) {
            for entry in entries.filter_map(|entry| entry.ok()) {
                let size = dir_size(&entry.path());
                let doomed = self.root.join("scratch").join(format!("gc.quarantine.{}", now_nanos()));
                if fs::rename(entry.path(), &doomed).is_ok() {
                    remove_tree(&doomed);
                    report.bytes_freed += size;
                    report.n_quarantine_removed += 1;
                }
            }
        }
        sync_dir(&self.root).ok();
        // History of artifacts that are gone explains nothing any more, except
        // the newest line (see `last_manifest`).
        for (file_name, mut refs) in all_refs {
            let newest = refs.generations.last().map(|it| it.key.clone());
            let before = refs.generations.len();
            refs.generations.retain(|it| Some(&it.key) == newest.as_ref() || self.root.join(&it.key.0).is_dir());
            if refs.generations.len() != before {
                self.write_stage_refs(lock, &file_name, &refs).ok();
            }
        }
        report
    }

    /// Rehashes every artifact's `out/` against its manifest; corrupt ones
    /// (unreadable or mismatched manifest, edited, truncated, added or
    /// removed files) are moved to `quarantine/`, so the next `lab up`
    /// rebuilds them.
    pub fn verify(&self, _lock: &StoreLock) -> VerifyReport {
        let mut report = VerifyReport::default();
        for key in self.key_folders() {
            report.checked += 1;
            let (stage, problem) = match self.check_artifact(&key) {
                Ok(manifest) => match crate::hash::digest_path(&self.artifact_out(&key), None) {
                    Ok(digest) if digest == manifest.content_digest => continue,
                    Ok(digest) => (
                        Some(manifest.stage),
                        format!(
                            "out/ changed since it was published (digest {}, manifest says {})",
                            crate::key::short_digest(&digest),
                            crate::key::short_digest(&manifest.content_digest)
                        ),
                    ),
                    Err(err) => (Some(manifest.stage), format!("rehashing out/: {err}")),
                },
                Err(problem) => (None, problem),
            };
            let quarantined_to = self.quarantine_path(&self.root.join(&key.0)).ok();
            report.corrupt.push(CorruptEntry { key: key.0, stage, problem, quarantined_to });
        }
        report
    }

    fn record(&self, lock: &StoreLock, manifest: &Manifest) -> Result<(), StoreError> {
        let stage = StageId::parse(&manifest.stage).unwrap_or(StageId::new(manifest.kind, manifest.stage.clone()));
        let mut refs = self.stage_refs(&stage);
        if refs.generations.last().map(|it| &it.key) != Some(&manifest.key) {
            refs.generations.retain(|it| it.key != manifest.key);
            refs.generations.push(Generation { key: manifest.key.clone(), recorded_unix: now_secs() });
        }
        refs.last = Some(manifest.clone());
        self.write_stage_refs(lock, &format!("{}.json", stage.file_name()), &refs)
            .map_err(|source| io_err(format!("recording {}", manifest.stage), source))
    }

    fn write_stage_refs(&self, _lock: &StoreLock, file_name: &str, refs: &StageRefs) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(refs).map_err(io::Error::other)?;
        write_atomic(&self.root.join("refs").join(file_name), &bytes)
    }

    fn stage_refs(&self, stage: &StageId) -> StageRefs {
        let path = self.root.join("refs").join(format!("{}.json", stage.file_name()));
        fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    /// Every stage's refs, by file name.
    fn all_stage_refs(&self) -> BTreeMap<String, StageRefs> {
        let Ok(entries) = fs::read_dir(self.root.join("refs")) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".json") || name.starts_with('.') {
                    return None;
                }
                let refs = serde_json::from_slice(&fs::read(entry.path()).ok()?).ok()?;
                Some((name, refs))
            })
            .collect()
    }

    /// Folders at the top of the store named like keys.
    fn key_folders(&self) -> Vec<Key> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return vec![];
        };
        let mut keys: Vec<Key> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| is_key_name(name))
            .map(Key)
            .collect();
        keys.sort();
        keys
    }

    fn quarantine_path(&self, path: &Path) -> io::Result<PathBuf> {
        let name = path.file_name().map(|it| it.to_string_lossy().into_owned()).unwrap_or_default();
        let target = self.root.join("quarantine").join(format!("{name}.{}", now_nanos()));
        fs::rename(path, &target)?;
        sync_dir(&self.root).ok();
        Ok(target)
    }

    /// Under the lock: empties scratch/ and removes temporary files of
    /// interrupted atomic writes. Lock-free writers (the stat cache, run
    /// state) may be mid-write, so their temporary files go only when old.
    fn clear_leftovers(&self, _lock: &StoreLock) -> usize {
        let mut n_removed = 0;
        if let Ok(entries) = fs::read_dir(self.root.join("scratch")) {
            for entry in entries.filter_map(|entry| entry.ok()) {
                remove_tree(&entry.path());
                n_removed += 1;
            }
        }
        for (dir, min_age) in [
            (self.root.join("refs"), Duration::ZERO),
            (self.root.clone(), Duration::from_secs(3600)),
            (self.root.join("run"), Duration::from_secs(3600)),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.filter_map(|entry| entry.ok()) {
                let is_tmp = entry.file_name().to_string_lossy().contains(TMP_MARK);
                let age = entry.metadata().ok().and_then(|meta| meta.modified().ok()).and_then(|t| t.elapsed().ok());
                if is_tmp && age.is_some_and(|age| age >= min_age) && fs::remove_file(entry.path()).is_ok() {
                    n_removed += 1;
                }
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

/// Marks temporary files of atomic writes (`.name.edgelab-tmp.pid.nanos`).
const TMP_MARK: &str = ".edgelab-tmp.";

fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|it| it.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{TMP_MARK}{}.{}", std::process::id(), now_nanos()))
}

/// Replaces `path` with `bytes` so a reader sees the old or the new file,
/// never a mix, and a crash leaves at most a temporary file behind (named
/// so the store's cleanup finds it). The one atomic write of the product:
/// run state, records and generated configs all go through it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        fs::remove_file(&tmp).ok();
    }
    result?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Copies `src` into `dest` (merging folders), keeping modes, owners and
/// symlinks. Files are written fresh, never through an existing hardlink.
pub fn copy_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for entry in walkdir::WalkDir::new(src).min_depth(1) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(src)?;
        let target = dest.join(rel);
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.file_type().is_symlink() {
            let link = fs::read_link(entry.path())?;
            if fs::symlink_metadata(&target).is_ok() {
                fs::remove_file(&target).ok();
            }
            std::os::unix::fs::symlink(&link, &target)?;
            std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid()))?;
            continue;
        }
        if meta.is_dir() {
            fs::create_dir_all(&target)?;
        } else {
            if fs::symlink_metadata(&target).is_ok() {
                fs::remove_file(&target)?;
            }
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {} to {}", entry.path().display(), target.display()))?;
        }
        std::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Hard-links every file of `src` into `dest` (folders made, merged; a
/// file already at a target replaced), copying where the two are on
/// different file systems. For content nobody rewrites in place (OSTree
/// objects and static deltas): one inode then serves several artifacts.
pub fn link_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for entry in walkdir::WalkDir::new(src).min_depth(1) {
        let entry = entry.with_context(|| format!("walking {}", src.display()))?;
        let target = dest.join(entry.path().strip_prefix(src)?);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            continue;
        }
        if fs::symlink_metadata(&target).is_ok() {
            fs::remove_file(&target).with_context(|| format!("replacing {}", target.display()))?;
        }
        if fs::hard_link(entry.path(), &target).is_err() {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {} to {}", entry.path().display(), target.display()))?;
        }
    }
    Ok(())
}

fn is_key_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The pid in the lock file, for the waiting message.
fn lock_holder(path: &Path) -> String {
    let pid = fs::read_to_string(path).unwrap_or_default().trim().to_string();
    if pid.is_empty() { "unknown".into() } else { pid }
}

/// Removes a folder tree, first making its folders writable (stages may
/// leave read-only trees, as OSTree repos are).
fn remove_tree(path: &Path) {
    if fs::remove_dir_all(path).is_err() {
        make_writable(path);
        fs::remove_dir_all(path).ok();
    }
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
