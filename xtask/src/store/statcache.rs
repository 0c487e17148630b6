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
//! On disk (`artifacts/statcache`) the cache is a compact binary file, read in
//! a few milliseconds for tens of thousands of entries (JSON took ten times
//! longer): a header, the entries, and a 64-bit checksum of everything before
//! it (sha256 would cost more than the decoding; the checksum only has to
//! catch torn or damaged files, not attackers, who could edit inputs anyway).
//! Anything that does not check out is dropped whole: the cache is an
//! optimisation, never a source of truth.

use std::{
    collections::HashMap,
    fs::Metadata,
    io,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

/// Changes closer than this to the hashing time are rehashed next time. Two
/// seconds covers filesystems with coarse (1 s, FAT's 2 s) timestamps.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

const MAGIC: &[u8] = b"edgelab-statcache\x02";
/// dev, ino, size, mtime, ctime, hashed_at (8 bytes each) + sha256.
const FIXED_LEN: usize = 6 * 8 + 32;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    /// When hashing began: changes after it are newer than the digest.
    hashed_at_ns: i64,
    digest: [u8; 32],
    /// Looked up or inserted in this process; unseen entries are not saved.
    seen: bool,
}

/// The cache in memory; `store::Store::load_stat_cache` and `save_stat_cache`
/// move it to and from `artifacts/statcache`.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: HashMap<Box<[u8]>, Entry>,
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
        if let Some(raw) = self.lookup(path, meta) {
            return Ok(crate::hash::format_digest(&raw));
        }
        let started_ns = now_ns();
        let raw = crate::hash::digest_file_raw(path)?;
        self.insert(path, meta, started_ns, raw);
        Ok(crate::hash::format_digest(&raw))
    }

    /// The cached raw digest of `path`, when its stat is unchanged and it was
    /// quiet long enough before it was hashed. Counts a hit.
    pub fn lookup(&mut self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        if !self.enabled {
            return None;
        }
        let entry = self.entries.get_mut(path.as_os_str().as_bytes())?;
        let (mtime_ns, ctime_ns) = stat_times(meta);
        let trusted = entry.dev == meta.dev()
            && entry.ino == meta.ino()
            && entry.size == meta.size()
            && entry.mtime_ns == mtime_ns
            && entry.ctime_ns == ctime_ns
            && entry.hashed_at_ns.saturating_sub(mtime_ns.max(ctime_ns)) > RACY_WINDOW_NS;
        if !trusted {
            return None;
        }
        entry.seen = true;
        self.n_hits += 1;
        Some(entry.digest)
    }

    /// Records that `path` (stat `meta`, taken before hashing began at
    /// `started_ns`) hashed to `digest`. Counts a hashed file.
    pub fn insert(&mut self, path: &Path, meta: &Metadata, started_ns: i64, digest: [u8; 32]) {
        self.n_hashed += 1;
        self.bytes_hashed += meta.size();
        if !self.enabled {
            return;
        }
        let (mtime_ns, ctime_ns) = stat_times(meta);
        let entry = Entry {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns,
            ctime_ns,
            hashed_at_ns: started_ns,
            digest,
            seen: true,
        };
        let key = path.as_os_str().as_bytes();
        match self.entries.get_mut(key) {
            Some(old) if *old == entry => {}
            Some(old) => {
                *old = entry;
                self.dirty = true;
            }
            None => {
                self.entries.insert(key.into(), entry);
                self.dirty = true;
            }
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The binary file: entries this process saw (files no longer read drop out).
    pub fn to_bytes(&self) -> Vec<u8> {
        let seen: Vec<(&Box<[u8]>, &Entry)> = self.entries.iter().filter(|(_, entry)| entry.seen).collect();
        let path_bytes: usize = seen.iter().map(|(path, _)| path.len() + 4).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + seen.len() * FIXED_LEN + path_bytes + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(seen.len() as u64).to_le_bytes());
        for (path, entry) in seen {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path);
            for value in [entry.dev, entry.ino, entry.size] {
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
        StatCache { entries, enabled: true, ..StatCache::default() }
    }

    /// Whether `path` has an entry (trusted or not), for tests.
    pub fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path.as_os_str().as_bytes())
    }
}

fn decode(bytes: &[u8]) -> Option<HashMap<Box<[u8]>, Entry>> {
    let body_len = bytes.len().checked_sub(8)?;
    let (body, sum) = bytes.split_at(body_len);
    if !body.starts_with(MAGIC) || checksum(body).to_le_bytes() != sum {
        return None;
    }
    let mut reader = Reader { bytes: &body[MAGIC.len()..] };
    let n_entries = reader.u64()?;
    // Each entry takes at least FIXED_LEN bytes: a bad count cannot over-allocate.
    if n_entries > (reader.bytes.len() / FIXED_LEN) as u64 {
        return None;
    }
    let mut entries = HashMap::with_capacity(n_entries as usize);
    for _ in 0..n_entries {
        let path_len = u32::from_le_bytes(reader.take(4)?.try_into().ok()?) as usize;
        let path: Box<[u8]> = reader.take(path_len)?.into();
        let entry = Entry {
            dev: reader.u64()?,
            ino: reader.u64()?,
            size: reader.u64()?,
            mtime_ns: reader.u64()? as i64,
            ctime_ns: reader.u64()? as i64,
            hashed_at_ns: reader.u64()? as i64,
            digest: reader.take(32)?.try_into().ok()?,
            seen: false,
        };
        entries.insert(path, entry);
    }
    reader.bytes.is_empty().then_some(entries)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
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

fn stat_times(meta: &Metadata) -> (i64, i64) {
    (nanos(meta.mtime(), meta.mtime_nsec()), nanos(meta.ctime(), meta.ctime_nsec()))
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Nanoseconds since the epoch, as file timestamps count them.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|it| it.as_nanos() as i64).unwrap_or(0)
}
