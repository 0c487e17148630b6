//! Content digests of files and folders, as `sha256:<hex>`.
//!
//! A folder's digest covers, in sorted path order, each entry's relative path,
//! type, executable bit, and content digest (or symlink target), so renaming,
//! chmod +x and edits all change it while timestamps and ownership do not.
//! The stat cache (`store::StatCache`) lets unchanged files skip rehashing;
//! files that must be hashed are hashed on a few threads at once, since one
//! SHA-256 stream (SHA-NI) is CPU-bound well below what the page cache serves.

use std::{
    fs::{File, Metadata},
    io::{self, Read},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use sha2::{Digest as _, Sha256};

use crate::store::StatCache;

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

/// One entry of a walked tree, before its content digest is known. Files
/// dominate trees, so the variants' size difference costs little.
#[allow(clippy::large_enum_variant)]
enum TreeEntry {
    Dir { rel: String },
    Symlink { rel: String, target: String },
    File { rel: String, path: PathBuf, meta: Option<Metadata>, digest: Option<[u8; 32]> },
}

/// Digest of a folder tree (see the module docs for what it covers).
///
/// A no-op plan over a big tree is dominated by one `lstat` per file (the
/// cache needs the stat; the folder listing alone is cheap), so the stats are
/// shared between threads too, and cache lookups run on the stats after.
pub fn digest_tree(root: &Path, mut cache: Option<&mut StatCache>) -> io::Result<String> {
    let mut entries = Vec::new();
    walk_dir(root, "", &mut entries)?;
    stat_files_parallel(&mut entries)?;
    // Cache hits first; what is left is hashed in parallel.
    let mut misses: Vec<usize> = Vec::new();
    for (idx, entry) in entries.iter_mut().enumerate() {
        if let TreeEntry::File { path, meta: Some(meta), digest, .. } = entry {
            *digest = cache.as_deref_mut().and_then(|cache| cache.lookup(path, meta));
            if digest.is_none() {
                misses.push(idx);
            }
        }
    }
    let started_ns = crate::store::statcache::now_ns();
    let hashed = hash_files_parallel(&entries, &misses)?;
    for (idx, raw) in misses.iter().zip(hashed) {
        if let TreeEntry::File { path, meta: Some(meta), digest, .. } = &mut entries[*idx] {
            if let Some(cache) = cache.as_deref_mut() {
                cache.insert(path, meta, started_ns, raw);
            }
            *digest = Some(raw);
        }
    }

    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(256);
    for entry in &entries {
        line.clear();
        match entry {
            TreeEntry::Dir { rel } => {
                line.extend_from_slice(b"d ");
                line.extend_from_slice(rel.as_bytes());
                line.push(0);
            }
            TreeEntry::Symlink { rel, target } => {
                line.extend_from_slice(b"l ");
                line.extend_from_slice(rel.as_bytes());
                line.push(0);
                line.extend_from_slice(target.as_bytes());
                line.push(0);
            }
            TreeEntry::File { rel, meta, digest, .. } => {
                let exec = meta.as_ref().is_some_and(|meta| meta.permissions().mode() & 0o111 != 0);
                line.extend_from_slice(b"f ");
                line.extend_from_slice(rel.as_bytes());
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

/// Appends the tree under `dir` (relative path `rel`) in sorted path order,
/// depth first, as `walkdir` with `sort_by_file_name` would; files are not
/// stat'ed yet (the listing's file types need no syscall).
fn walk_dir(dir: &Path, rel: &str, entries: &mut Vec<TreeEntry>) -> io::Result<()> {
    let mut children: Vec<std::fs::DirEntry> =
        std::fs::read_dir(dir).map_err(|err| with_path(err, dir))?.collect::<io::Result<_>>()?;
    children.sort_by_key(|child| child.file_name());
    for child in children {
        let name = child.file_name();
        let child_rel = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        let path = child.path();
        let file_type = child.file_type().map_err(|err| with_path(err, &path))?;
        if file_type.is_dir() {
            entries.push(TreeEntry::Dir { rel: child_rel.clone() });
            walk_dir(&path, &child_rel, entries)?;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|err| with_path(err, &path))?;
            entries.push(TreeEntry::Symlink { rel: child_rel, target: target.to_string_lossy().into_owned() });
        } else {
            entries.push(TreeEntry::File { rel: child_rel, path, meta: None, digest: None });
        }
    }
    Ok(())
}

/// `lstat`s every file entry, on a few threads when there are many.
fn stat_files_parallel(entries: &mut [TreeEntry]) -> io::Result<()> {
    let stat_all = |part: &mut [TreeEntry]| -> io::Result<()> {
        for entry in part {
            if let TreeEntry::File { path, meta, .. } = entry {
                *meta = Some(std::fs::symlink_metadata(&*path).map_err(|err| with_path(err, path))?);
            }
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

fn hash_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_HASH_THREADS)
}

fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Hashes the files at `entries[idx]` for each `idx` of `wanted`, on up to
/// `MAX_HASH_THREADS` threads; results are in `wanted`'s order.
fn hash_files_parallel(entries: &[TreeEntry], wanted: &[usize]) -> io::Result<Vec<[u8; 32]>> {
    let path_of = |idx: usize| match &entries[idx] {
        TreeEntry::File { path, .. } => path.as_path(),
        _ => Path::new(""),
    };
    let bytes: u64 = wanted
        .iter()
        .map(|idx| match &entries[*idx] {
            TreeEntry::File { meta: Some(meta), .. } => meta.len(),
            _ => 0,
        })
        .sum();
    let n_threads = hash_threads();
    // Threads pay off only when there is real work to share.
    if n_threads < 2 || wanted.len() < 2 || bytes < 4 * 1024 * 1024 {
        return wanted.iter().map(|idx| digest_file_raw(path_of(*idx))).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<io::Result<[u8; 32]>>> = (0..wanted.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n_threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let slot = next.fetch_add(1, Ordering::Relaxed);
                        if slot >= wanted.len() {
                            break;
                        }
                        done.push((slot, digest_file_raw(path_of(wanted[slot]))));
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
