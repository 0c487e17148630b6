//! The stat cache: (device, inode, size, mtime, ctime) -> digest, so unchanged
//! inputs are not rehashed on every plan.
//!
//! The racy-clean rule (as git's index): an entry is trusted only when the
//! file's last change (mtime or ctime) is more than `RACY_WINDOW_NS` older than
//! the moment its hashing began. A write landing in the same timestamp tick as
//! an earlier one leaves the stat unchanged, so a file that changed close to
//! its hashing is rehashed until it has been quiet long enough. ctime catches
//! edits that restore size and mtime (`touch -r`), since no user can set it.
//!
//! Entries are keyed by (device, inode), not by path: the stat tuple is what
//! vouches for the content, wherever the file is reached from, and a fixed-size
//! key lets the whole file load without one allocation per entry. A file
//! deleted and another created on the same inode gets a new ctime (after the
//! old entry's hashing began), so it misses.
//!
//! On disk (`artifacts/statcache`) the cache is a compact binary file of
//! fixed-size records, read in about a millisecond for tens of thousands of
//! entries (JSON took a hundred times longer): a header, the entries, and a
//! 64-bit checksum of everything before it (sha256 would cost more than the
//! decoding; the checksum only has to catch torn or damaged files, not
//! attackers, who could edit inputs anyway). Anything that does not check out
//! is dropped whole: the cache is an optimisation, never a source of truth.

use std::{
    collections::HashMap,
    fs::Metadata,
    hash::{BuildHasherDefault, Hasher},
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

/// Changes closer than this to the hashing time are rehashed next time. Two
/// seconds covers filesystems with coarse (1 s, FAT's 2 s) timestamps.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

const MAGIC: &[u8] = b"edgelab-statcache\x03";
/// dev, ino, size, mtime, ctime, hashed_at (8 bytes each) + sha256.
const RECORD_LEN: usize = 6 * 8 + 32;

/// What the cache compares of a file's stat, taken by `std::fs::metadata` or
/// by the tree walk's `statx` (both give the same numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
}

impl FileStat {
    pub fn from_metadata(meta: &Metadata) -> FileStat {
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            mode: meta.mode(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    /// When hashing began: changes after it are newer than the digest.
    hashed_at_ns: i64,
    digest: [u8; 32],
    /// Looked up or inserted in this process; unseen entries are not saved.
    seen: bool,
}

/// (device, inode) are already well spread numbers: a multiply mixes them
/// into a table slot without SipHash's cost per lookup.
#[derive(Default)]
struct InodeHasher(u64);

impl Hasher for InodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(26) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Entries = HashMap<(u64, u64), Entry, BuildHasherDefault<InodeHasher>>;

/// The cache in memory; `store::Store::load_stat_cache` and `save_stat_cache`
/// move it to and from `artifacts/statcache`.
#[derive(Debug, Default)]
pub struct StatCache {
    /// Set at first use: from `pending` when the file is still being read.
    entries: OnceLock<Entries>,
    /// The file being read and decoded on another thread
    /// (`StatCache::load_in_background`), so a plan's walk does not wait for it.
    pending: Mutex<Option<JoinHandle<Entries>>>,
    /// When false every lookup misses and nothing is recorded (for `bench
    /// plan`'s comparison).
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

    /// A cache that never hits (the "uncached" side of a benchmark).
    pub fn disabled() -> StatCache {
        StatCache { enabled: false, ..StatCache::default() }
    }

    /// The digest of the regular file at `path` with metadata `meta`.
    pub fn digest(&mut self, path: &Path, meta: &Metadata) -> io::Result<String> {
        let stat = FileStat::from_metadata(meta);
        if let Some(raw) = self.lookup(&stat) {
            return Ok(crate::hash::format_digest(&raw));
        }
        let started_ns = now_ns();
        let raw = crate::hash::digest_file_raw(path)?;
        self.insert(&stat, started_ns, raw);
        Ok(crate::hash::format_digest(&raw))
    }

    /// The cached raw digest of the file with stat `stat`, when the stat is
    /// unchanged and the file was quiet long enough before it was hashed.
    /// Counts a hit.
    pub fn lookup(&mut self, stat: &FileStat) -> Option<[u8; 32]> {
        if !self.enabled {
            return None;
        }
        let entry = self.entries_mut().get_mut(&(stat.dev, stat.ino))?;
        let trusted = entry.size == stat.size
            && entry.mtime_ns == stat.mtime_ns
            && entry.ctime_ns == stat.ctime_ns
            && entry.hashed_at_ns.saturating_sub(stat.mtime_ns.max(stat.ctime_ns)) > RACY_WINDOW_NS;
        if !trusted {
            return None;
        }
        entry.seen = true;
        let digest = entry.digest;
        self.n_hits += 1;
        Some(digest)
    }

    /// Records that the file with stat `stat` (taken before hashing began at
    /// `started_ns`) hashed to `digest`. Counts a hashed file.
    pub fn insert(&mut self, stat: &FileStat, started_ns: i64, digest: [u8; 32]) {
        self.n_hashed += 1;
        self.bytes_hashed += stat.size;
        if !self.enabled {
            return;
        }
        let entry = Entry {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
            hashed_at_ns: started_ns,
            digest,
            seen: true,
        };
        let entries = self.entries_mut();
        let changed = match entries.get_mut(&(stat.dev, stat.ino)) {
            Some(old) if *old == entry => false,
            Some(old) => {
                *old = entry;
                true
            }
            None => {
                entries.insert((stat.dev, stat.ino), entry);
                true
            }
        };
        self.dirty |= changed;
    }

    /// Whether saving would change the file: something was hashed anew.
    /// An all-hits run leaves the file as it is (entries it did not see
    /// stay until the next save).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The binary file: entries this process saw (files no longer read drop out).
    pub fn to_bytes(&self) -> Vec<u8> {
        let n_seen = self.entries().values().filter(|entry| entry.seen).count();
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + n_seen * RECORD_LEN + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(n_seen as u64).to_le_bytes());
        for (&(dev, ino), entry) in self.entries().iter().filter(|(_, entry)| entry.seen) {
            for value in [dev, ino, entry.size] {
                out.extend_from_slice(&value.to_le_bytes());
            }
            for value in [entry.mtime_ns, entry.ctime_ns, entry.hashed_at_ns] {
                out.extend_from_slice(&value.to_le_bytes());
            }
            out.extend_from_slice(&entry.digest);
        }
        let checksum = checksum(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// A damaged or foreign cache file is not an error: it is dropped whole
    /// and rebuilt.
    pub fn from_bytes(bytes: &[u8]) -> StatCache {
        let entries = decode(bytes).unwrap_or_default();
        StatCache { entries: OnceLock::from(entries), enabled: true, ..StatCache::default() }
    }

    /// The cache in the file at `path` (empty when missing or damaged), read
    /// and decoded on another thread until first used: the tree walk, which
    /// needs no cache, runs meanwhile.
    pub fn load_in_background(path: PathBuf) -> StatCache {
        let reader_path = path.clone();
        match std::thread::Builder::new().name("statcache".into()).spawn(move || read_file(&reader_path)) {
            Ok(handle) => StatCache { pending: Mutex::new(Some(handle)), enabled: true, ..StatCache::default() },
            // No thread to be had: read it here.
            Err(_) => StatCache { entries: OnceLock::from(read_file(&path)), enabled: true, ..StatCache::default() },
        }
    }

    /// Whether the file now at `path` has an entry (trusted or not), for tests.
    pub fn contains(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|meta| self.entries().contains_key(&(meta.dev(), meta.ino())))
    }

    fn entries(&self) -> &Entries {
        self.entries.get_or_init(|| {
            let pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
            // A reader thread that panicked leaves an empty cache: only slower.
            pending.and_then(|handle| handle.join().ok()).unwrap_or_default()
        })
    }

    fn entries_mut(&mut self) -> &mut Entries {
        self.entries();
        self.entries.get_mut().unwrap_or_else(|| unreachable!("entries() sets the cache"))
    }
}

/// A missing, unreadable or damaged file is an empty cache.
fn read_file(path: &Path) -> Entries {
    std::fs::read(path).ok().and_then(|bytes| decode(&bytes)).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<Entries> {
    let body_len = bytes.len().checked_sub(8)?;
    let (body, sum) = bytes.split_at(body_len);
    if !body.starts_with(MAGIC) || checksum(body).to_le_bytes() != sum {
        return None;
    }
    let rest = &body[MAGIC.len()..];
    let (count, records) = rest.split_at_checked(8)?;
    let n_entries = u64::from_le_bytes(count.try_into().ok()?);
    // Fixed-size records: the count must account for every byte.
    if n_entries.checked_mul(RECORD_LEN as u64)? != records.len() as u64 {
        return None;
    }
    let mut entries = Entries::with_capacity_and_hasher(n_entries as usize, Default::default());
    for record in records.chunks_exact(RECORD_LEN) {
        let word = |idx: usize| u64::from_le_bytes(record[idx * 8..idx * 8 + 8].try_into().unwrap_or_default());
        let entry = Entry {
            size: word(2),
            mtime_ns: word(3) as i64,
            ctime_ns: word(4) as i64,
            hashed_at_ns: word(5) as i64,
            digest: record[48..].try_into().ok()?,
            seen: false,
        };
        entries.insert((word(0), word(1)), entry);
    }
    Some(entries)
}

/// A fast 64-bit checksum (multiply-rotate over 8-byte words).
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sum = 0x243F_6A88_85A3_08D3 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        sum = (sum ^ u64::from_le_bytes(word)).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    sum = (sum ^ u64::from_le_bytes(tail)).wrapping_mul(K).rotate_left(29);
    (sum ^ (sum >> 32)).wrapping_mul(K)
}

pub(crate) fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Nanoseconds since the epoch, as file timestamps count them.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|it| it.as_nanos() as i64).unwrap_or(0)
}
