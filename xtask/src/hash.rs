//! Content digests of files and folders, as `sha256:<hex>`.
//!
//! A folder's digest covers, in sorted path order, each entry's relative path,
//! type, executable bit, and content digest (or symlink target), so renaming,
//! chmod +x and edits all change it while timestamps and ownership do not.
//! The stat cache (`store::StatCache`) lets unchanged files skip rehashing.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use sha2::{Digest as _, Sha256};

use crate::store::StatCache;

/// Hashes a file's bytes.
pub fn digest_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
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

/// Digest of a folder tree (see the module docs for what it covers).
pub fn digest_tree(root: &Path, mut cache: Option<&mut StatCache>) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let walker = walkdir::WalkDir::new(root).sort_by_file_name().follow_links(false);
    for entry in walker {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let rel = rel.to_string_lossy();
        if rel.is_empty() {
            continue;
        }
        let file_type = entry.file_type();
        if file_type.is_dir() {
            hasher.update(format!("d {rel}\0").as_bytes());
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            hasher.update(format!("l {rel}\0{}\0", target.to_string_lossy()).as_bytes());
        } else {
            let meta = entry.metadata().map_err(io::Error::other)?;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let digest = match cache.as_deref_mut() {
                Some(cache) => cache.digest(entry.path(), &meta)?,
                None => digest_file(entry.path())?,
            };
            hasher.update(format!("f {rel}\0{}\0{digest}\0", if exec { "x" } else { "-" }).as_bytes());
        }
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}
