//! The local composer's files and folders: writes that never leave a
//! half-written file, the cache lock, and work folders that are emptied
//! however a compose ends (immutable deployment dirs and stray mounts
//! included).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;

pub(super) fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let partial = path.with_extension("partial");
    let result = fs::write(&partial, bytes).and_then(|()| fs::rename(&partial, path));
    if result.is_err() {
        fs::remove_file(&partial).ok();
    }
    result.with_context(|| format!("writing {}", path.display()))
}

pub(super) fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::rename(from, to).with_context(|| format!("moving {} to {}", from.display(), to.display()))
}

pub(super) fn remove_any(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => Err(err),
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// Holds the cache's lock file for the duration of a compose.
pub(super) fn lock_cache(cache_dir: &Path) -> anyhow::Result<fs::File> {
    let path = cache_dir.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// A work folder removed when dropped, unless something is still mounted
/// inside it: deleting through a leftover bind mount of /dev or the apt
/// cache would delete the host's files.
pub(super) struct WorkDir(pub(super) Option<tempfile::TempDir>);

impl WorkDir {
    pub(super) fn path(&self) -> &Path {
        self.0.as_ref().map(|dir| dir.path()).unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        let path = dir.keep();
        if mounted_under(&path) {
            eprintln!("warning: leaving {} in place: something is still mounted inside it", path.display());
            return;
        }
        // Deleting a rootfs (tens of thousands of files) takes seconds: move
        // it to the trash and delete it off the compose's critical path. What
        // a finished process leaves there, the next compose deletes.
        let trash = path.parent().map(|work| work.join("trash")).unwrap_or_else(|| path.clone());
        let target = trash.join(path.file_name().unwrap_or_default());
        let doomed = match fs::create_dir_all(&trash).and_then(|()| fs::rename(&path, &target)) {
            Ok(()) => target,
            Err(_) => path,
        };
        std::thread::spawn(move || fs::remove_dir_all(doomed));
    }
}

/// Deletes what earlier composes left in the trash, in the background.
pub(super) fn empty_trash(work_root: &Path) {
    let trash = work_root.join("trash");
    if mounted_under(&trash) {
        return;
    }
    if let Ok(entries) = fs::read_dir(&trash) {
        let doomed: Vec<PathBuf> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
        std::thread::spawn(move || doomed.iter().for_each(|path| drop(fs::remove_dir_all(path))));
    }
}

/// Whether any mount point lies inside `dir` (from /proc/self/mountinfo).
pub(super) fn mounted_under(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    text.lines().filter_map(|line| line.split(' ').nth(4)).any(|point| Path::new(point).starts_with(dir))
}
