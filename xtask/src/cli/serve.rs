//! `cargo xtask serve v2`: the original demo's "serve the v2 folder" step.
//! The image's compose artifact (`out/<image>-commit.tar`: `compose.json`
//! and `repo/`) is extracted once into the store's run state and served in
//! the foreground by edgelab-serve, whose per-request lines (count,
//! cumulative MB, client, path) are the live counts. `--dir` serves any
//! folder instead.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Component, Path, PathBuf},
};

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::{
    graph::{StageId, StageKind},
    store::{Manifest, Store},
    tools::{self, serve::ServeArgs},
};

/// The run-state folder holding extracted images.
const RUN_DIR_NAME: &str = "serve";

/// Marks a finished extraction, so a crash midway is not taken for one.
const EXTRACTED_MARKER: &str = ".edgelab-extracted";

/// What to serve and where.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// An image of the lab (`v2`).
    pub image: Option<String>,
    /// Any folder, instead of an image.
    pub dir: Option<PathBuf>,
    /// Overrides the lab's file-server address.
    pub address: Option<IpAddr>,
    /// Overrides the lab's file-server port.
    pub port: Option<u16>,
}

/// An image's compose artifact, extracted and ready to serve.
#[derive(Debug, Clone)]
pub struct ExtractedImage {
    /// Holds `compose.json` and `repo/`.
    pub root: PathBuf,
    /// The compose's output digest (the OSTree commit id).
    pub commit: String,
}

/// Serves the image or folder in the foreground until Ctrl-C.
pub fn run(global: &Global, options: &ServeOptions) -> anyhow::Result<()> {
    let (root, lab_listen) = match (&options.image, &options.dir) {
        (Some(_), Some(_)) => bail!("give an image or --dir, not both"),
        (None, None) => bail!("what to serve: an image of the lab (`cargo xtask serve v2`) or --dir FOLDER"),
        (None, Some(dir)) => (dir.clone(), None),
        (Some(image), None) => {
            let session = Session::load(global)?;
            if !session.lab.images.iter().any(|known| known.name == *image) {
                let names: Vec<&str> = session.lab.images.iter().map(|known| known.name.as_str()).collect();
                bail!("no image `{image}` in {}; its images: {}", session.lab.file.display(), names.join(", "));
            }
            let stage = StageId::new(StageKind::Compose, image.clone());
            let manifest = session.current()?.manifest(&session.store, &stage)?;
            let extracted = extract_image(&session.store, &manifest)?;
            println!("image {image}: commit {}", extracted.commit);
            (extracted.root, Some(crate::services::file_server::listen_address(&session.lab)))
        }
    };
    let default_listen = lab_listen.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000));
    let listen =
        SocketAddr::new(options.address.unwrap_or(default_listen.ip()), options.port.unwrap_or(default_listen.port()));
    let binary = tools::serve::binary()?;
    if root.join("repo").is_dir() {
        println!("ostree remote URL: http://HOST:{}/repo/   (Ctrl-C stops and prints the totals)", listen.port());
    }
    let args = ServeArgs { root, listen, quiet: false, log: None };
    let status = tools::serve::run_foreground(&binary, &args)?;
    match status.success() {
        true => Ok(()),
        false => bail!("edgelab-serve ended with {status}"),
    }
}

/// Extracts a compose artifact (the image's current one, from
/// `Current::manifest`) into the store's run state, unless that artifact is
/// already extracted there.
pub fn extract_image(store: &Store, manifest: &Manifest) -> anyhow::Result<ExtractedImage> {
    let stage = StageId::parse(&manifest.stage).unwrap_or(StageId::new(manifest.kind, manifest.stage.clone()));
    let image = &stage.name;
    let tarball = store.artifact_out(&manifest.key).join(format!("{image}-commit.tar"));
    let root = store.run_dir(RUN_DIR_NAME)?.join(format!("{image}-{}", manifest.key.short()));
    if !root.join(EXTRACTED_MARKER).exists() {
        extract_tarball(&tarball, &root)?;
    }
    Ok(ExtractedImage { root, commit: manifest.output_digest.clone() })
}

/// Unpacks `tarball` into `dest` (replaced whole): only regular files and
/// folders, at relative paths without `..`; anything else fails the
/// extraction. Unpacks beside `dest` and renames, so `dest` is either
/// complete or absent.
pub fn extract_tarball(tarball: &Path, dest: &Path) -> anyhow::Result<()> {
    let partial = dest.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let file = std::fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let what = || format!("extracting {}", tarball.display());
    for entry in archive.entries().with_context(what)? {
        let mut entry = entry.with_context(what)?;
        let path = entry.path().with_context(what)?.into_owned();
        let is_safe = path.components().all(|component| matches!(component, Component::Normal(_) | Component::CurDir));
        if !is_safe {
            bail!("{} holds an unsafe path `{}`: refusing to extract it", tarball.display(), path.display());
        }
        let entry_type = entry.header().entry_type();
        if !(entry_type.is_file() || entry_type.is_dir()) {
            bail!(
                "{} holds `{}` of type {entry_type:?}: only files and folders are extracted",
                tarball.display(),
                path.display()
            );
        }
        // `unpack_in` checks again that the target stays inside `partial`.
        if !entry.unpack_in(&partial).with_context(what)? {
            bail!("{} holds `{}`, which would land outside the folder", tarball.display(), path.display());
        }
    }
    std::fs::write(partial.join(EXTRACTED_MARKER), b"").with_context(what)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    std::fs::rename(&partial, dest).with_context(|| format!("renaming {} into place", partial.display()))
}
