//! The `push` stage: a built image pushed to the lab registry as
//! `APP:BUILD`. The output digest is the pushed manifest digest. The push
//! lives outside the store, so `check_live` asks the registry whether the tag
//! still resolves to it: a registry that lost its data is repaired by
//! pushing again.

use anyhow::Context;
use serde_json::json;

use super::{StageCtx, StageOutput, container};
use crate::{key::short_digest, services::registry, tools};

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let (repository, tag) = (param(ctx, "repository")?, param(ctx, "tag")?);
    let image = ctx.inputs.get("image").context("the push stage has no image input")?;
    let image_id = image.extra["image_id"].as_str().context("the image artifact records no image id")?;
    let endpoint = registry::endpoint(ctx.lab);
    registry::check_reachable(endpoint)?;
    tools::podman::ensure_image(image_id, &image.out.join(container::ARCHIVE))?;
    ctx.progress.note(&format!("pushing {repository}:{tag} to {endpoint}"));
    let digest = tools::podman::push(image_id, endpoint, repository, tag, &ctx.out.join("digest"))
        .with_context(|| format!("pushing {repository}:{tag} to {endpoint}"))?;
    let extra = json!({ "repository": repository, "tag": tag, "digest": digest, "image_id": image_id });
    std::fs::write(ctx.out.join("pushed.json"), serde_json::to_vec_pretty(&extra)?)?;
    Ok(StageOutput { output_digest: digest, extra })
}

/// Does the registry still have `repository:tag` at the pushed digest?
pub fn check_live(ctx: &StageCtx, output_digest: &str) -> Result<(), String> {
    let (Ok(repository), Ok(tag)) = (param(ctx, "repository"), param(ctx, "tag")) else {
        return Err("stage parameters missing".into());
    };
    match registry::manifest_digest(registry::endpoint(ctx.lab), repository, tag) {
        Ok(Some(digest)) if digest == output_digest => Ok(()),
        Ok(Some(digest)) => Err(format!(
            "{repository}:{tag} in the registry is {}, not the pushed {}",
            short_digest(&digest),
            short_digest(output_digest)
        )),
        Ok(None) => Err(format!("the registry no longer has {repository}:{tag}")),
        Err(err) => Err(format!("{err:#}")),
    }
}

fn param<'a>(ctx: &'a StageCtx, name: &str) -> anyhow::Result<&'a str> {
    ctx.stage.params.get(name).and_then(|value| value.as_str()).with_context(|| format!("stage parameter `{name}`"))
}
