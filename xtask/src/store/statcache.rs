//! The stat cache: (device, inode, size, mtime, ctime) -> digest, so unchanged
//! inputs are not rehashed on every plan.
//!
//! The racy-clean rule (as git's index): an entry whose file changed within
//! `RACY_WINDOW` of when it was hashed is not trusted, because a second write
//! in the same timestamp tick would leave the stat unchanged.

use std::{
    collections::HashMap,
    fs::Metadata,
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// Changes closer than this to the hashing time are rehashed next time.
const RACY_WINDOW_NS: i128 = 2_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    hashed_at_ns: i128,
    digest: String,
}

/// The cache in memory; `store::Store::load_stat_cache` and `save_stat_cache`
/// move it to and from `artifacts/statcache`.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: HashMap<PathBuf, Entry>,
    /// When false every lookup misses (for `bench plan`'s comparison).
    pub enabled: bool,
    pub n_hits: u64,
    pub n_hashed: u64,
    pub bytes_hashed: u64,
    dirty: bool,
}

impl StatCache {
    pub fn new() -> StatCache {
        StatCache { enabled: true, ..StatCache::default() }
    }

    /// The digest of the regular file at `path` with metadata `meta`.
    pub fn digest(&mut self, path: &Path, meta: &Metadata) -> io::Result<String> {
        let (mtime_ns, ctime_ns) = (nanos(meta.mtime(), meta.mtime_nsec()), nanos(meta.ctime(), meta.ctime_nsec()));
        if self.enabled
            && let Some(entry) = self.entries.get(path)
            && entry.dev == meta.dev()
            && entry.ino == meta.ino()
            && entry.size == meta.size()
            && entry.mtime_ns == mtime_ns
            && entry.ctime_ns == ctime_ns
            && entry.hashed_at_ns - mtime_ns.max(ctime_ns) > RACY_WINDOW_NS
        {
            self.n_hits += 1;
            return Ok(entry.digest.clone());
        }
        let digest = crate::hash::digest_file(path)?;
        self.n_hashed += 1;
        self.bytes_hashed += meta.size();
        let entry = Entry {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns,
            ctime_ns,
            hashed_at_ns: now_ns(),
            digest: digest.clone(),
        };
        if self.entries.get(path) != Some(&entry) {
            self.entries.insert(path.to_path_buf(), entry);
            self.dirty = true;
        }
        Ok(digest)
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.entries).unwrap_or_default()
    }

    /// A damaged cache file is not an error: it is dropped and rebuilt.
    pub fn from_bytes(bytes: &[u8]) -> StatCache {
        let entries = serde_json::from_slice(bytes).unwrap_or_default();
        StatCache { entries, enabled: true, ..StatCache::default() }
    }
}

fn nanos(secs: i64, nsec: i64) -> i128 {
    secs as i128 * 1_000_000_000 + nsec as i128
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|it| it.as_nanos() as i128).unwrap_or(0)
}
