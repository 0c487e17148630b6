//! The demo `Lab` for tests: the repository's `lab.kdl`, parsed, so a test
//! starts from what the demo declares and changes only what it needs
//! (backends, addresses, folders). Included with
//! `#[path = "support/demo_lab.rs"] mod demo_lab;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edgelab::lab::{self, Backend, Backends, Lab};

/// The repository root: `lab.kdl`, `guest/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The text of the repository's `lab.kdl`.
pub fn demo_lab_text() -> String {
    let path = repo_root().join("lab.kdl");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// The repository's `lab.kdl`, parsed: its paths are absolute under `repo_root`.
pub fn demo_lab() -> Lab {
    lab::parse_lab_file(&repo_root().join("lab.kdl"))
        .unwrap_or_else(|err| panic!("lab.kdl does not parse:\n{}", err.to_plain()))
}

/// Every stage kind pinned to `backend`.
pub fn all_backends(backend: Backend) -> Backends {
    Backends {
        default: backend,
        registry: Some(backend),
        compose: Some(backend),
        boot_media: Some(backend),
        guests: Some(backend),
    }
}

/// Only composes pinned to `backend`, the rest left to the default.
pub fn compose_backend(backend: Backend) -> Backends {
    Backends { default: backend, registry: None, compose: Some(backend), boot_media: None, guests: None }
}
