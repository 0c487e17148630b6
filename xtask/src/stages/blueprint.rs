//! The `blueprint` stage: an osbuild blueprint TOML, parsed, validated and
//! written out normalised (`blueprint.json`), so composes read a checked value.

use anyhow::Context;
use serde_json::json;

use super::{StageCtx, StageOutput};

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let blueprint = ctx
        .lab
        .blueprint(&ctx.stage.id.name)
        .with_context(|| format!("blueprint `{}` is not in the lab", ctx.stage.id.name))?;
    let text = std::fs::read_to_string(&blueprint.file)
        .with_context(|| format!("reading blueprint {}", blueprint.file.display()))?;
    let value: toml::Value = toml::from_str(&text)
        .map_err(|err| anyhow::anyhow!("{}: {}", blueprint.file.display(), err.to_string().trim_end()))?;
    let json = serde_json::to_value(&value)?;
    std::fs::write(ctx.out.join("blueprint.json"), serde_json::to_vec_pretty(&json)?)?;
    std::fs::write(ctx.out.join("blueprint.toml"), &text)?;
    // The package names alone, one per line, for composers that install a list.
    let packages: Vec<&str> = value
        .get("packages")
        .and_then(|list| list.as_array())
        .map(|list| list.iter().filter_map(|package| package.get("name")?.as_str()).collect())
        .unwrap_or_default();
    std::fs::write(ctx.out.join("packages.txt"), packages.iter().map(|name| format!("{name}\n")).collect::<String>())?;
    Ok(StageOutput { output_digest: super::digest_out(&ctx.out)?, extra: json!({ "name": value.get("name") }) })
}
