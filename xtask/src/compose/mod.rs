//! The compose backend interface: both worlds produce the same artifact, an
//! edge-commit tarball (`compose.json` + `repo/`, as osbuild-composer makes
//! it) whose OSTree commit id is the stage's output digest.
//!
//! `weldr` talks to osbuild-composer (RHEL world); `local` composes with
//! mmdebstrap and ostree (local world). The `compose` stage (stages/compose.rs)
//! picks one by the stage's resolved backend.

pub mod local;
pub mod tarball;
pub mod weldr;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::progress::Progress;

/// What a compose is asked to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposeRequest {
    /// The lab's image name (`v2`), for messages and compose lookup.
    pub image: String,
    /// The blueprint to compose, already validated and with the image's extra
    /// packages added and its version bumped (`blueprint.json` of the
    /// blueprint stage, adjusted by the compose stage).
    pub blueprint: crate::blueprint::Blueprint,
    /// OSTree ref, e.g. `rhel/8/x86_64/edge`.
    pub ostree_ref: String,
    /// The parent commit (64 hex) when the image has a parent.
    pub parent_commit: Option<String>,
    /// Where the parent commit can be fetched from (the lab's served repo
    /// URL, required by composer when a parent is given).
    pub parent_url: Option<String>,
    /// A local OSTree repo holding the parent commit (the parent compose's
    /// extracted `repo/`), for backends that can use it directly.
    pub parent_repo: Option<PathBuf>,
    /// Blueprint package names mapped for Debian (local backend only).
    pub package_map: serde_json::Value,
}

/// What a compose produced, in the stage's `out/` folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposeResult {
    /// `out/<image>-commit.tar`: `compose.json` + `repo/`.
    pub tarball: PathBuf,
    /// The OSTree commit id (64 hex): the output digest.
    pub commit: String,
    /// sha256 of the tarball.
    pub tarball_sha256: String,
    /// The fields of `compose.json`.
    pub compose_json: serde_json::Value,
    /// Backend-specific identity: the Weldr compose UUID, or the local
    /// composer's base rootfs key.
    pub backend_id: String,
    /// Resolved package versions (NEVRAs or Debian name=version), sorted.
    pub packages: Vec<String>,
}

/// A world's way of composing edge commits.
pub trait ComposeBackend {
    /// `weldr` or `local`.
    fn name(&self) -> &'static str;
    /// Composes into `out` (an empty folder), reporting progress.
    fn compose(&self, request: &ComposeRequest, out: &Path, progress: &Progress) -> anyhow::Result<ComposeResult>;
}
