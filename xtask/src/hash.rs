//! Content digests of files and folders, as `sha256:<hex>`.
//!
//! A folder's digest covers, in sorted path order, each entry's relative path,
//! type, executable bit, and content digest (or symlink target), so renaming,
//! chmod +x and edits all change it while timestamps and ownership do not.
//! The stat cache (`store::StatCache`) lets unchanged files skip rehashing;
//! files that must be hashed are hashed on a few threads at once, since one
//! SHA-256 stream (SHA-NI) is CPU-bound well below what the page cache serves.
//! With every file a cache hit, a tree costs its stats: the walk is built to
//! cost little more than one `statx` per file (see `digest_tree`).

use std::{
    ffi::{CStr, OsStr},
    fs::File,
    io::{self, Read},
    ops::Range,
    os::{
        fd::{AsFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RawDir, Statx, StatxFlags, makedev, openat, readlinkat, statx};
use sha2::{Digest as _, Sha256};

use crate::store::{
    StatCache,
    statcache::{FileStat, nanos},
};

/// Read size: large reads keep syscalls out of the profile.
const READ_SIZE: usize = 1024 * 1024;

/// Most threads a tree hash uses; the lab host is small and shared.
const MAX_HASH_THREADS: usize = 4;

/// Hashes a file's bytes.
pub fn digest_file(path: &Path) -> io::Result<String> {
    Ok(format_digest(&digest_file_raw(path)?))
}

/// Hashes a file's bytes, as raw sha256.
pub fn digest_file_raw(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// `sha256:<hex>` from raw sha256 bytes.
pub fn format_digest(raw: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(raw))
}

/// Digest of a file or a folder tree; `missing` when the path does not exist.
/// With a cache, files whose stat is unchanged are not reread.
pub fn digest_path(path: &Path, cache: Option<&mut StatCache>) -> io::Result<String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok("missing".into()),
        Err(err) => return Err(err),
    };
    if !meta.is_dir() {
        return match cache {
            Some(cache) => cache.digest(path, &meta),
            None => digest_file(path),
        };
    }
    digest_tree(path, cache)
}

/// A walked tree: every entry in sorted path order, depth first (as
/// `walkdir` with `sort_by_file_name` would give), with its names kept in two
/// arenas rather than one allocation per entry.
struct Tree {
    /// Every entry's relative path (lossy UTF-8, as the digest encodes it),
    /// back to back; `TreeEntry::rel` indexes it.
    rels: Vec<u8>,
    /// Every entry's raw file name, each NUL-terminated, for `statx`
    /// relative to its folder.
    names: Vec<u8>,
    /// Folders by index, as paths (0 is the root).
    dirs: Vec<PathBuf>,
    entries: Vec<TreeEntry>,
}

struct TreeEntry {
    rel: Range<usize>,
    /// Offset of the NUL-terminated name in `Tree::names`.
    name: usize,
    /// Index of the containing folder in `Tree::dirs`.
    dir: usize,
    kind: EntryKind,
}

enum EntryKind {
    Dir,
    Symlink { target: String },
    File { stat: Option<FileStat>, digest: Option<[u8; 32]> },
}

impl Tree {
    fn name(&self, entry: &TreeEntry) -> &CStr {
        // Every name was pushed with its NUL; an empty name is never looked up.
        CStr::from_bytes_until_nul(&self.names[entry.name..]).unwrap_or_default()
    }

    fn path(&self, entry: &TreeEntry) -> PathBuf {
        self.dirs[entry.dir].join(OsStr::from_bytes(self.name(entry).to_bytes()))
    }
}

/// What a file entry needs from `statx`: the cache's stat tuple and the
/// executable bit. The device number always comes with the answer.
const STATX_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME);

/// Digest of a folder tree (see the module docs for what it covers).
///
/// A no-op plan over a big tree is dominated by one stat per file, so the
/// walk reads each folder once with `getdents` and stats its files with
/// `statx` relative to the folder's descriptor (one path component to look
/// up, not the whole path), on a few threads; cache lookups run on the stats
/// after, and only misses are hashed (in parallel too).
pub fn digest_tree(root: &Path, mut cache: Option<&mut StatCache>) -> io::Result<String> {
    let mut tree = walk_tree(root)?;
    stat_files_parallel(&mut tree)?;
    // Cache hits first; what is left is hashed in parallel.
    let mut misses: Vec<usize> = Vec::new();
    let mut miss_bytes = 0u64;
    for (idx, entry) in tree.entries.iter_mut().enumerate() {
        if let EntryKind::File { stat: Some(stat), digest } = &mut entry.kind {
            *digest = cache.as_deref_mut().and_then(|cache| cache.lookup(stat));
            if digest.is_none() {
                misses.push(idx);
                miss_bytes += stat.size;
            }
        }
    }
    let started_ns = crate::store::statcache::now_ns();
    let paths: Vec<PathBuf> = misses.iter().map(|idx| tree.path(&tree.entries[*idx])).collect();
    let hashed = hash_files_parallel(&paths, miss_bytes)?;
    for (idx, raw) in misses.iter().zip(hashed) {
        if let EntryKind::File { stat: Some(stat), digest } = &mut tree.entries[*idx].kind {
            if let Some(cache) = cache.as_deref_mut() {
                cache.insert(stat, started_ns, raw);
            }
            *digest = Some(raw);
        }
    }

    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(256);
    for entry in &tree.entries {
        line.clear();
        let rel = &tree.rels[entry.rel.clone()];
        match &entry.kind {
            EntryKind::Dir => {
                line.extend_from_slice(b"d ");
                line.extend_from_slice(rel);
                line.push(0);
            }
            EntryKind::Symlink { target } => {
                line.extend_from_slice(b"l ");
                line.extend_from_slice(rel);
                line.push(0);
                line.extend_from_slice(target.as_bytes());
                line.push(0);
            }
            EntryKind::File { stat, digest } => {
                let exec = stat.as_ref().is_some_and(|stat| stat.mode & 0o111 != 0);
                line.extend_from_slice(b"f ");
                line.extend_from_slice(rel);
                line.push(0);
                line.push(if exec { b'x' } else { b'-' });
                line.push(0);
                line.extend_from_slice(b"sha256:");
                let mut hex_buf = [0u8; 64];
                // Every file entry got a digest above (hit or hashed).
                let raw = digest.unwrap_or_default();
                hex::encode_to_slice(raw, &mut hex_buf).map_err(io::Error::other)?;
                line.extend_from_slice(&hex_buf);
                line.push(0);
            }
        }
        hasher.update(&line);
    }
    Ok(format_digest(&hasher.finalize().into()))
}

/// Lists the tree under `root`; files are not stat'ed yet (the listing's
/// file types need no syscall).
fn walk_tree(root: &Path) -> io::Result<Tree> {
    let mut tree = Tree { rels: Vec::new(), names: Vec::new(), dirs: vec![root.to_path_buf()], entries: Vec::new() };
    // The root as `read_dir` would open it: a symlink to a folder is followed.
    let fd = open_dir(CWD, root, OFlags::empty()).map_err(|err| with_path(err, root))?;
    // One read buffer serves every level: a folder is listed whole before
    // its subfolders are walked. 32 KiB holds any entry (names are at most
    // 255 bytes) and a few hundred at once.
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    walk_dir(&mut tree, &fd, 0, 0..0, &mut buf)?;
    Ok(tree)
}

/// Appends the folder `tree.dirs[dir_idx]` (open as `fd`, relative path
/// `tree.rels[rel]`) and everything below it.
fn walk_dir(tree: &mut Tree, fd: &OwnedFd, dir_idx: usize, rel: Range<usize>, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut names: Vec<u8> = Vec::new();
    let mut children: Vec<(Range<usize>, FileType)> = Vec::new();
    let mut listing = RawDir::new(fd, buf.spare_capacity_mut());
    while let Some(child) = listing.next() {
        let child = child.map_err(|err| with_path(err.into(), &tree.dirs[dir_idx]))?;
        let name = child.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let start = names.len();
        names.extend_from_slice(name);
        children.push((start..names.len(), child.file_type()));
    }
    children.sort_unstable_by(|a, b| names[a.0.clone()].cmp(&names[b.0.clone()]));
    for (range, file_type) in children {
        let name = &names[range];
        let name_at = tree.names.len();
        tree.names.extend_from_slice(name);
        tree.names.push(0);
        let rel_start = tree.rels.len();
        if !rel.is_empty() {
            tree.rels.extend_from_within(rel.clone());
            tree.rels.push(b'/');
        }
        tree.rels.extend_from_slice(String::from_utf8_lossy(name).as_bytes());
        let child_rel = rel_start..tree.rels.len();
        let c_name = CStr::from_bytes_until_nul(&tree.names[name_at..]).map_err(io::Error::other)?;
        let child_path = || tree.dirs[dir_idx].join(OsStr::from_bytes(name));
        let file_type = match file_type {
            // Some filesystems leave the type out of the listing: ask.
            FileType::Unknown => FileType::from_raw_mode(
                statx(fd, c_name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::TYPE)
                    .map_err(|err| with_path(err.into(), &child_path()))?
                    .stx_mode
                    .into(),
            ),
            known => known,
        };
        let entry = TreeEntry { rel: child_rel.clone(), name: name_at, dir: dir_idx, kind: EntryKind::Dir };
        match file_type {
            FileType::Directory => {
                // Listed as a folder: one swapped for a symlink since is not followed.
                let child_fd = open_dir(fd, c_name, OFlags::NOFOLLOW).map_err(|err| with_path(err, &child_path()))?;
                let path = child_path();
                tree.entries.push(entry);
                tree.dirs.push(path);
                let child_idx = tree.dirs.len() - 1;
                walk_dir(tree, &child_fd, child_idx, child_rel, buf)?;
            }
            FileType::Symlink => {
                let target = readlinkat(fd, c_name, Vec::new()).map_err(|err| with_path(err.into(), &child_path()))?;
                let target = target.to_string_lossy().into_owned();
                tree.entries.push(TreeEntry { kind: EntryKind::Symlink { target }, ..entry });
            }
            _ => tree.entries.push(TreeEntry { kind: EntryKind::File { stat: None, digest: None }, ..entry }),
        }
    }
    Ok(())
}

fn open_dir<Fd: AsFd, P: rustix::path::Arg>(at: Fd, path: P, extra: OFlags) -> io::Result<OwnedFd> {
    Ok(openat(at, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra, Mode::empty())?)
}

/// Stats every file entry, relative to its folder, on a few threads when
/// there are many.
fn stat_files_parallel(tree: &mut Tree) -> io::Result<()> {
    let Tree { names, dirs, entries, .. } = tree;
    let (names, dirs) = (&*names, &*dirs);
    let stat_all = |part: &mut [TreeEntry]| -> io::Result<()> {
        // Entries of one folder are contiguous: each part opens each of its
        // folders once (O_PATH: only for lookups relative to it).
        let mut open: Option<(usize, OwnedFd)> = None;
        for entry in part {
            let EntryKind::File { stat, .. } = &mut entry.kind else { continue };
            let dir = &dirs[entry.dir];
            let fd = match open.take() {
                Some((idx, fd)) if idx == entry.dir => fd,
                _ => openat(CWD, dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|err| with_path(err.into(), dir))?,
            };
            let name = CStr::from_bytes_until_nul(&names[entry.name..]).map_err(io::Error::other)?;
            let answer = statx(&fd, name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK)
                .map_err(|err| with_path(err.into(), &dir.join(OsStr::from_bytes(name.to_bytes()))))?;
            *stat = Some(file_stat(&answer));
            open = Some((entry.dir, fd));
        }
        Ok(())
    };
    let n_threads = hash_threads();
    if n_threads < 2 || entries.len() < 512 {
        return stat_all(entries);
    }
    let chunk = entries.len().div_ceil(n_threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries.chunks_mut(chunk).map(|part| scope.spawn(move || stat_all(part))).collect();
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().unwrap_or_else(|_| Err(io::Error::other("a stat thread panicked"))))
    })
}

/// The cache's view of a `statx` answer, with the numbers `std::fs::Metadata`
/// gives for the same file. A filesystem that cannot say when the file last
/// changed gets a change time in the future, so its entries are never trusted.
fn file_stat(answer: &Statx) -> FileStat {
    let times = |ts: &rustix::fs::StatxTimestamp| nanos(ts.tv_sec, i64::from(ts.tv_nsec));
    let complete = StatxFlags::from_bits_retain(answer.stx_mask).contains(STATX_MASK);
    FileStat {
        dev: makedev(answer.stx_dev_major, answer.stx_dev_minor),
        ino: answer.stx_ino,
        size: answer.stx_size,
        mtime_ns: times(&answer.stx_mtime),
        ctime_ns: if complete { times(&answer.stx_ctime) } else { i64::MAX },
        mode: u32::from(answer.stx_mode),
    }
}

fn hash_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_HASH_THREADS)
}

fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Hashes `paths` (`bytes` in all) on up to `MAX_HASH_THREADS` threads;
/// results are in `paths`' order.
fn hash_files_parallel(paths: &[PathBuf], bytes: u64) -> io::Result<Vec<[u8; 32]>> {
    let n_threads = hash_threads();
    // Threads pay off only when there is real work to share.
    if n_threads < 2 || paths.len() < 2 || bytes < 4 * 1024 * 1024 {
        return paths.iter().map(|path| digest_file_raw(path)).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<io::Result<[u8; 32]>>> = (0..paths.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n_threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let slot = next.fetch_add(1, Ordering::Relaxed);
                        if slot >= paths.len() {
                            break;
                        }
                        done.push((slot, digest_file_raw(&paths[slot])));
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            // A panicking hasher is our bug; its slots stay empty and fail below.
            if let Ok(done) = worker.join() {
                for (slot, result) in done {
                    results[slot] = Some(result);
                }
            }
        }
    });
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(io::Error::other("a hashing thread panicked"))))
        .collect()
}
