//! The edge-commit tarball (`compose.json` + `repo/`, the layout
//! osbuild-composer produces): packing it, and unpacking it safely. A
//! tarball comes from a composer we do not control, so extraction accepts
//! only plain files and folders at relative paths that stay inside the
//! destination: no absolute paths, no `..`, no links of any kind.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Component, Path, PathBuf},
};

use anyhow::{Context, bail};

/// Writes `<dest>` as a tarball holding `compose.json` (from `compose_json`)
/// and the archive-mode repo `repo_dir` under `repo/`. Written to a
/// `.partial` file renamed into place, so a failure (a full disk) leaves
/// nothing behind.
pub fn pack(dest: &Path, compose_json: &serde_json::Value, repo_dir: &Path) -> anyhow::Result<()> {
    let partial = dest.with_extension("tar.partial");
    let result = write_tarball(&partial, compose_json, repo_dir)
        .and_then(|()| std::fs::rename(&partial, dest).with_context(|| format!("renaming to {}", dest.display())));
    if result.is_err() {
        std::fs::remove_file(&partial).ok();
    }
    result.with_context(|| format!("writing the commit tarball {}", dest.display()))
}

/// Unpacks `tarball` into `dest` (created when missing), refusing any
/// entry that is not a plain file or folder inside `dest`.
pub fn extract(tarball: &Path, dest: &Path) -> anyhow::Result<()> {
    let file = File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    let entries = archive.entries().with_context(|| format!("reading {}", tarball.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading {}", tarball.display()))?;
        let path = entry.path().with_context(|| format!("{}: an entry with an unreadable path", tarball.display()))?;
        let path = checked_relative_path(&path)
            .with_context(|| format!("{}: refusing entry {}", tarball.display(), path.display()))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            bail!(
                "{}: refusing entry {}: only files and folders are allowed (no links or devices), not {kind:?}",
                tarball.display(),
                path.display()
            );
        }
        // Every folder on the way must be a real folder we made, never a link.
        let mut parent = dest.to_path_buf();
        for component in path.parent().into_iter().flat_map(Path::components) {
            parent.push(component);
            if let Ok(meta) = std::fs::symlink_metadata(&parent)
                && !meta.is_dir()
            {
                bail!("{}: refusing entry {}: {} is not a folder", tarball.display(), path.display(), parent.display());
            }
        }
        let unpacked = entry
            .unpack_in(dest)
            .with_context(|| format!("{}: unpacking {} into {}", tarball.display(), path.display(), dest.display()))?;
        if !unpacked {
            bail!("{}: refusing entry {}: it would land outside {}", tarball.display(), path.display(), dest.display());
        }
    }
    Ok(())
}

/// `compose.json` of an unpacked tarball.
pub fn read_compose_json(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let path = dir.join("compose.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// The path with `.` parts removed; an error for absolute paths and `..`.
fn checked_relative_path(path: &Path) -> anyhow::Result<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => bail!("it contains `..`"),
            Component::RootDir | Component::Prefix(_) => bail!("it is an absolute path"),
        }
    }
    if clean.as_os_str().is_empty() {
        return Ok(PathBuf::from("."));
    }
    Ok(clean)
}

fn write_tarball(partial: &Path, compose_json: &serde_json::Value, repo_dir: &Path) -> anyhow::Result<()> {
    let file = File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    let json = serde_json::to_vec_pretty(compose_json)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "compose.json", json.as_slice())?;
    builder.append_dir_all("repo", repo_dir).with_context(|| format!("adding {}", repo_dir.display()))?;
    let mut writer = builder.into_inner()?;
    writer.flush()?;
    let file = writer.into_inner().map_err(|err| err.into_error())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball_with(dir: &Path, build: impl FnOnce(&mut tar::Builder<File>)) -> PathBuf {
        let path = dir.join("evil.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        build(&mut builder);
        builder.finish().unwrap();
        path
    }

    fn raw_file(builder: &mut tar::Builder<File>, name: &str, data: &[u8]) {
        // set_path refuses `..`; write the name bytes directly as an attacker would.
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("objects/ab")).unwrap();
        std::fs::write(repo.join("config"), "[core]\n").unwrap();
        let tarball = dir.path().join("v1-commit.tar");
        pack(&tarball, &serde_json::json!({"ref": "a/b"}), &repo).unwrap();
        let out = dir.path().join("out");
        extract(&tarball, &out).unwrap();
        assert_eq!(read_compose_json(&out).unwrap()["ref"], "a/b");
        assert!(out.join("repo/objects/ab").is_dir());
        assert_eq!(std::fs::read_to_string(out.join("repo/config")).unwrap(), "[core]\n");
    }

    type BuildTarball = Box<dyn FnOnce(&mut tar::Builder<File>)>;

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, BuildTarball)> = vec![
            ("..", Box::new(|b| raw_file(b, "../escaped", b"x"))),
            ("absolute", Box::new(|b| raw_file(b, "/tmp/escaped", b"x"))),
            (
                "links",
                Box::new(|b| {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    b.append_link(&mut header, "repo", "/etc").unwrap();
                    raw_file(b, "repo/passwd", b"x");
                }),
            ),
        ];
        for (expected, build) in cases {
            let case_dir = dir.path().join(expected);
            std::fs::create_dir_all(&case_dir).unwrap();
            let tarball = tarball_with(&case_dir, build);
            let dest = case_dir.join("dest");
            let err = format!("{:#}", extract(&tarball, &dest).unwrap_err());
            assert!(err.contains(expected), "{expected}: {err}");
            assert!(!case_dir.join("escaped").exists() && !dir.path().join("escaped").exists());
        }
    }
}
