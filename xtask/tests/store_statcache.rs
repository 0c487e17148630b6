//! The stat cache and folder digests: unchanged files are not rehashed,
//! changes are caught (including same-size, same-mtime edits, through ctime
//! and the racy-clean rule), a damaged cache file is dropped, and the cache
//! loads fast at the size the benchmark uses.

use std::{
    fs::{self, File},
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use edgelab::{
    hash,
    store::{StatCache, Store, statcache::RACY_WINDOW_NS},
};
use sha2::{Digest as _, Sha256};

/// Long enough for every file written before it to leave the racy window.
fn wait_out_racy_window() {
    std::thread::sleep(Duration::from_nanos(RACY_WINDOW_NS as u64) + Duration::from_millis(100));
}

fn write_tree(root: &Path, n_files: usize) {
    for idx in 0..n_files {
        let dir = root.join(format!("d{}", idx % 7));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{idx}.txt")), format!("file {idx}\n").repeat(idx % 50 + 1)).unwrap();
    }
}

#[test]
fn unchanged_files_are_not_rehashed() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), 40);
    wait_out_racy_window();

    let mut cache = StatCache::new();
    let first = hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    assert_eq!((cache.n_hits, cache.n_hashed), (0, 40));
    assert!(cache.is_dirty());

    // Through the bytes, as a new process would see it.
    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    let second = hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    assert_eq!(second, first);
    assert_eq!((cache.n_hits, cache.n_hashed), (40, 0));
    assert!(!cache.is_dirty(), "an all-hits run has nothing to save");

    // The cached digest equals an uncached one.
    assert_eq!(hash::digest_tree(tmp.path(), None).unwrap(), first);

    // An edit that changes the size is caught, and only that file is rehashed.
    fs::write(tmp.path().join("d3/f3.txt"), "changed").unwrap();
    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    let third = hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    assert_ne!(third, first);
    assert_eq!((cache.n_hits, cache.n_hashed), (39, 1));
    assert_eq!(third, hash::digest_tree(tmp.path(), None).unwrap());
}

#[test]
fn a_file_changed_within_the_racy_window_is_rehashed() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("input.toml");
    fs::write(&file, "a = 1\n").unwrap();
    // Hashed right after the write: the entry is racy, so not trusted.
    let mut cache = StatCache::new();
    let meta = fs::symlink_metadata(&file).unwrap();
    let before = cache.digest(&file, &meta).unwrap();
    assert!(cache.contains(&file));
    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    let again = cache.digest(&file, &fs::symlink_metadata(&file).unwrap()).unwrap();
    assert_eq!(again, before);
    assert_eq!((cache.n_hits, cache.n_hashed), (0, 1), "a racy entry is rehashed even when unchanged");

    // Once quiet long enough, the (rehashed) entry is trusted.
    wait_out_racy_window();
    let mut cache = StatCache::new();
    cache.digest(&file, &fs::symlink_metadata(&file).unwrap()).unwrap();
    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    cache.digest(&file, &fs::symlink_metadata(&file).unwrap()).unwrap();
    assert_eq!((cache.n_hits, cache.n_hashed), (1, 0));
}

#[test]
fn same_size_same_mtime_edits_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("blueprint.toml");
    fs::write(&file, "packages = [\"jq\"]\n").unwrap();
    let old_mtime = SystemTime::now() - Duration::from_secs(3600);
    File::options().write(true).open(&file).unwrap().set_modified(old_mtime).unwrap();
    wait_out_racy_window();
    let mut cache = StatCache::new();
    let before = cache.digest(&file, &fs::symlink_metadata(&file).unwrap()).unwrap();
    let bytes = cache.to_bytes();

    // Same size, mtime put back: only ctime (and the content) differ.
    fs::write(&file, "packages = [\"vi\"]\n").unwrap();
    File::options().write(true).open(&file).unwrap().set_modified(old_mtime).unwrap();
    let meta = fs::symlink_metadata(&file).unwrap();
    assert_eq!(meta.len(), 18);
    let mut cache = StatCache::from_bytes(&bytes);
    let after = cache.digest(&file, &meta).unwrap();
    assert_ne!(after, before);
    assert_eq!((cache.n_hits, cache.n_hashed), (0, 1));
}

#[test]
fn a_damaged_cache_file_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), 10);
    let mut cache = StatCache::new();
    hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    let bytes = cache.to_bytes();
    assert_eq!(StatCache::from_bytes(&bytes).len(), 10);

    let mut flipped = bytes.clone();
    flipped[40] ^= 0x10;
    for damaged in [&bytes[..bytes.len() - 1], &bytes[..20], &flipped[..], b"{\"json\": 1}", b""] {
        let cache = StatCache::from_bytes(damaged);
        assert!(cache.is_empty() && cache.enabled);
    }

    // Through the store: garbage on disk loads as an empty cache, and a save replaces it.
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    fs::write(store_dir.path().join("statcache"), b"\0\0garbage").unwrap();
    let mut cache = store.load_stat_cache();
    assert!(cache.is_empty());
    hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    store.save_stat_cache(&cache);
    assert_eq!(store.load_stat_cache().len(), 10);
}

#[test]
fn a_disabled_cache_always_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), 5);
    wait_out_racy_window();
    let mut cache = StatCache::disabled();
    hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    assert_eq!((cache.n_hits, cache.n_hashed), (0, 10));
}

#[test]
fn files_no_longer_read_drop_out_of_the_saved_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    write_tree(&one, 3);
    write_tree(&two, 4);
    let mut cache = StatCache::new();
    hash::digest_tree(&one, Some(&mut cache)).unwrap();
    hash::digest_tree(&two, Some(&mut cache)).unwrap();
    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    assert_eq!(cache.len(), 7);
    // Racy entries are rehashed, which marks the cache dirty.
    hash::digest_tree(&two, Some(&mut cache)).unwrap();
    assert_eq!(StatCache::from_bytes(&cache.to_bytes()).len(), 4);
}

/// The folder digest's encoding is part of every key: pin it against an
/// independent implementation (sorted paths; `d`, `l`, `f` lines).
#[test]
fn folder_digest_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("b/c")).unwrap();
    fs::write(root.join("a.txt"), "hello").unwrap();
    fs::write(root.join("b/c/run.sh"), "#!/bin/sh\n").unwrap();
    set_mode(&root.join("b/c/run.sh"), 0o755);
    std::os::unix::fs::symlink("../a.txt", root.join("b/link")).unwrap();
    // Big enough that the parallel path is taken.
    fs::write(root.join("big1"), vec![1u8; 5 << 20]).unwrap();
    fs::write(root.join("big2"), vec![2u8; 5 << 20]).unwrap();

    let file = |bytes: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let mut expected = Sha256::new();
    expected.update(format!("f a.txt\0-\0{}\0", file(b"hello")));
    expected.update("d b\0");
    expected.update("d b/c\0");
    expected.update(format!("f b/c/run.sh\0x\0{}\0", file(b"#!/bin/sh\n")));
    expected.update("l b/link\0../a.txt\0");
    expected.update(format!("f big1\0-\0{}\0", file(&vec![1u8; 5 << 20])));
    expected.update(format!("f big2\0-\0{}\0", file(&vec![2u8; 5 << 20])));
    let expected = format!("sha256:{}", hex::encode(expected.finalize()));

    assert_eq!(hash::digest_tree(root, None).unwrap(), expected);
    assert_eq!(hash::digest_path(root, Some(&mut StatCache::new())).unwrap(), expected);
    assert_eq!(hash::digest_path(&root.join("a.txt"), None).unwrap(), file(b"hello"));
    assert_eq!(hash::digest_path(&root.join("nothing"), None).unwrap(), "missing");
}

/// `Store::load_stat_cache` reads the file on another thread; the first
/// lookup waits for it, so a plan sees every entry the last one saved.
#[test]
fn the_store_loads_the_cache_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), 30);
    wait_out_racy_window();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    assert!(store.load_stat_cache().is_empty(), "no file yet");
    let mut cache = store.load_stat_cache();
    let first = hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    store.save_stat_cache(&cache);

    let mut cache = store.load_stat_cache();
    assert_eq!(hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap(), first);
    assert_eq!((cache.n_hits, cache.n_hashed), (30, 0));
    assert!(!cache.is_dirty());
    // A save of an all-hits cache leaves the file alone.
    let saved = fs::metadata(store_dir.path().join("statcache")).unwrap().modified().unwrap();
    store.save_stat_cache(&cache);
    assert_eq!(fs::metadata(store_dir.path().join("statcache")).unwrap().modified().unwrap(), saved);
    assert_eq!(store.load_stat_cache().len(), 30);
}

/// The tree walk stats with `statx` relative to each folder, a single input
/// file goes through `std::fs`: both must give the cache the same numbers, or
/// a file read both ways would be rehashed every time.
#[test]
fn a_file_hashed_alone_is_a_hit_in_its_folders_walk() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), 3);
    wait_out_racy_window();
    let file = tmp.path().join("d1/f1.txt");
    let mut cache = StatCache::new();
    cache.digest(&file, &fs::symlink_metadata(&file).unwrap()).unwrap();
    assert_eq!((cache.n_hits, cache.n_hashed), (0, 1));
    hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    assert_eq!((cache.n_hits, cache.n_hashed), (1, 3), "the walk's stat of d1/f1.txt differs from std's");
}

/// Entries are keyed by (device, inode), not by path: a file replaced by
/// another of the same size at the same path (a new inode) is rehashed, a
/// renamed one is found under its new name, and the rest still hit.
#[test]
fn replaced_and_renamed_files_are_seen() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), 6);
    wait_out_racy_window();
    let mut cache = StatCache::new();
    hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();

    // Rename (most filesystems change ctime on rename, so it may be rehashed).
    fs::rename(tmp.path().join("d2/f2.txt"), tmp.path().join("d2/renamed.txt")).unwrap();
    // Replace: a new file (new inode) with the old size at the old path.
    let old = tmp.path().join("d3/f3.txt");
    let size = fs::metadata(&old).unwrap().len() as usize;
    fs::write(tmp.path().join("d3/new.tmp"), "x".repeat(size)).unwrap();
    fs::rename(tmp.path().join("d3/new.tmp"), &old).unwrap();
    wait_out_racy_window();

    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    let digest = hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    assert_eq!(digest, hash::digest_tree(tmp.path(), None).unwrap());
    assert_eq!(cache.n_hits + cache.n_hashed, 6);
    assert!(cache.n_hashed >= 1, "the replaced file was not rehashed");
    assert!(cache.n_hits >= 4, "unchanged files were rehashed: {} hits", cache.n_hits);
}

/// Past 512 entries the walk stats files on several threads: the
/// digest must still be the sorted encoding (against `walkdir`), every
/// unchanged file a hit, and an edit that keeps size and mtime caught.
#[test]
fn a_big_tree_walked_in_parallel_digests_and_catches_edits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for idx in 0..3000 {
        let dir = root.join(format!("p{}/m{:02}", idx % 3, idx % 40));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{idx:04}")), format!("{idx}\n").repeat(idx % 9 + 1)).unwrap();
    }
    fs::create_dir_all(root.join("p0/empty")).unwrap();
    fs::write(root.join("p1/run.sh"), "#!/bin/sh\n").unwrap();
    set_mode(&root.join("p1/run.sh"), 0o755);
    std::os::unix::fs::symlink("m00/f0000", root.join("p0/link")).unwrap();
    let old_mtime = SystemTime::now() - Duration::from_secs(3600);
    let edited = root.join("p2/m17/f1457");
    File::options().write(true).open(&edited).unwrap().set_modified(old_mtime).unwrap();
    wait_out_racy_window();

    assert_eq!(hash::digest_tree(root, None).unwrap(), walkdir_digest(root));
    let mut cache = StatCache::new();
    let first = hash::digest_tree(root, Some(&mut cache)).unwrap();
    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    assert_eq!(hash::digest_tree(root, Some(&mut cache)).unwrap(), first);
    assert_eq!((cache.n_hits, cache.n_hashed), (3001, 0));

    // Same size, mtime put back: only ctime tells.
    let before = fs::read(&edited).unwrap();
    let mut after = before.clone();
    after[0] = b'9';
    fs::write(&edited, &after).unwrap();
    File::options().write(true).open(&edited).unwrap().set_modified(old_mtime).unwrap();
    let mut cache = StatCache::from_bytes(&cache.to_bytes());
    let third = hash::digest_tree(root, Some(&mut cache)).unwrap();
    assert_ne!(third, first);
    assert_eq!((cache.n_hits, cache.n_hashed), (3000, 1));
    assert_eq!(third, walkdir_digest(root));
}

/// The folder encoding computed independently, with `walkdir` and `std::fs`.
fn walkdir_digest(root: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mut expected = Sha256::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let file_type = entry.file_type();
        if file_type.is_dir() {
            expected.update(format!("d {rel}\0"));
        } else if file_type.is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            expected.update(format!("l {rel}\0{}\0", target.to_string_lossy()));
        } else {
            let exec = entry.metadata().unwrap().permissions().mode() & 0o111 != 0;
            let digest = hex::encode(Sha256::digest(fs::read(entry.path()).unwrap()));
            expected.update(format!("f {rel}\0{}\0sha256:{digest}\0", if exec { 'x' } else { '-' }));
        }
    }
    format!("sha256:{}", hex::encode(expected.finalize()))
}

/// The benchmark's size: 20,000 entries must load and save in milliseconds.
#[test]
fn cache_of_20000_files_loads_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let n_files = 20_000;
    for idx in 0..n_files {
        let dir = tmp.path().join(format!("context/src/module{:03}", idx % 200));
        if idx < 200 {
            fs::create_dir_all(&dir).unwrap();
        }
        fs::write(dir.join(format!("source_file_{idx:05}.rs")), idx.to_string()).unwrap();
    }
    let mut cache = StatCache::new();
    hash::digest_tree(tmp.path(), Some(&mut cache)).unwrap();
    let started = Instant::now();
    let bytes = cache.to_bytes();
    let encode = started.elapsed();
    let started = Instant::now();
    let loaded = StatCache::from_bytes(&bytes);
    let decode = started.elapsed();
    assert_eq!(loaded.len(), n_files);
    eprintln!("stat cache of {n_files} entries: {} KiB, encode {encode:?}, decode {decode:?}", bytes.len() / 1024);
    // Generous bounds for a loaded, shared debug-build machine.
    assert!(decode < Duration::from_millis(40), "decoding took {decode:?}");
    assert!(encode < Duration::from_millis(40), "encoding took {encode:?}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}
