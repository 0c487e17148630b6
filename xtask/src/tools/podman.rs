//! podman: container builds, OCI archives, pushes, and the RHEL world's
//! `registry:2` container. The only code that knows podman's flags.
//!
//! Builds are made reproducible: `--timestamp 0` pins every created time and
//! file mtime, `--no-cache --layers=false` keeps the local layer cache (whose
//! intermediate image ids leak into history) out of the result, and a base
//! image is always named by a content-addressed tag. Identical inputs then
//! give an identical image id (the config digest), which is what lets an
//! unchanged rebuild cut off downstream work.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "podman",
    debian: Some("podman"),
    rhel: Some("podman"),
    pip: None,
    version_args: &["--version"],
}];

/// One `podman build`.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    /// The build context folder, holding `Containerfile`.
    pub context: &'a Path,
    /// Replaces the Containerfile's first `FROM` (a local image id), so a
    /// build on another build never pulls.
    pub from_image: Option<&'a str>,
    /// Where podman writes the new image's id.
    pub iidfile: &'a Path,
}

/// Builds an image and returns its id (`sha256:<config digest hex>`).
pub fn build(spec: &BuildSpec) -> anyhow::Result<String> {
    super::require("podman")?;
    let mut cmd = Cmd::new("podman")
        .args(["build", "--pull=never", "--no-cache", "--layers=false", "--timestamp", "0"])
        .arg("--iidfile")
        .arg(spec.iidfile);
    if let Some(base) = spec.from_image {
        // A fixed, content-addressed name: buildah records the name it was
        // given in the image history, so it must not depend on local state.
        let name = base_image_name(base);
        Cmd::new("podman").args(["tag", base, &name]).run().with_context(|| format!("naming base image {base}"))?;
        cmd = cmd.arg("--from").arg(name);
    }
    cmd.arg("-f").arg(spec.context.join("Containerfile")).arg(spec.context).timeout(Duration::from_secs(600)).run()?;
    let id = std::fs::read_to_string(spec.iidfile)
        .with_context(|| format!("reading the image id podman wrote to {}", spec.iidfile.display()))?;
    Ok(normalise_id(id.trim()))
}

/// Writes image `id` as an OCI archive.
pub fn save_oci_archive(id: &str, archive: &Path) -> anyhow::Result<()> {
    Cmd::new("podman").args(["save", "--format", "oci-archive", "-o"]).arg(archive).arg(id).run()?;
    Ok(())
}

/// Makes image `id` present in local storage, loading `archive` if needed.
pub fn ensure_image(id: &str, archive: &Path) -> anyhow::Result<()> {
    super::require("podman")?;
    let exists = Cmd::new("podman").args(["image", "exists", id]).run_unchecked()?;
    if exists.status.success() {
        return Ok(());
    }
    Cmd::new("podman").args(["load", "-i"]).arg(archive).timeout(Duration::from_secs(600)).run()?;
    Ok(())
}

/// Pushes image `id` to `registry` as `repository:tag` over plain HTTP and
/// returns the pushed manifest digest.
pub fn push(id: &str, registry: SocketAddr, repository: &str, tag: &str, digestfile: &Path) -> anyhow::Result<String> {
    super::require("podman")?;
    let destination = format!("docker://{registry}/{repository}:{tag}");
    Cmd::new("podman")
        .args(["push", "--tls-verify=false", "--digestfile"])
        .arg(digestfile)
        .arg(id)
        .arg(&destination)
        .timeout(Duration::from_secs(600))
        .run()?;
    let digest = std::fs::read_to_string(digestfile)
        .with_context(|| format!("reading the digest podman wrote to {}", digestfile.display()))?;
    Ok(digest.trim().to_string())
}

/// The `ExecStart=` command of the RHEL world's registry unit: `registry:2`
/// under podman, storage in `data_dir`, published on `listen`.
pub fn registry_container_command(podman: &Path, listen: SocketAddr, data_dir: &Path) -> String {
    format!(
        "{} run --rm --replace --name edgelab-registry --publish {listen}:5000 \
         --volume {}:/var/lib/registry:Z docker.io/library/registry:2",
        podman.display(),
        data_dir.display()
    )
}

fn base_image_name(id: &str) -> String {
    format!("localhost/edgelab-base:{}", id.trim_start_matches("sha256:"))
}

fn normalise_id(id: &str) -> String {
    match id.starts_with("sha256:") {
        true => id.to_string(),
        false => format!("sha256:{id}"),
    }
}
