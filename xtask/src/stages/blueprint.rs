//! The `blueprint` stage: an osbuild blueprint TOML, parsed and validated
//! (`crate::blueprint`), written out normalised as `blueprint.json` (what
//! composes read) and `blueprint.toml` (what a user would push with
//! composer-cli). A mistake fails the stage with every error at once, each
//! pointing at its TOML line and column. In the local world each key the
//! local composer and guests do not apply is said, by name and why
//! (`blueprint::no_local_effect`), here and in `lab plan`.

use anyhow::Context;
use serde_json::json;

use super::{StageCtx, StageOutput};
use crate::{
    blueprint::{self, Blueprint},
    lab::Lab,
};

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let lab_blueprint = ctx
        .lab
        .blueprint(&ctx.stage.id.name)
        .with_context(|| format!("blueprint `{}` is not in the lab", ctx.stage.id.name))?;
    let text = std::fs::read_to_string(&lab_blueprint.file)
        .with_context(|| format!("reading blueprint {}", lab_blueprint.file.display()))?;
    let file_name = ctx.lab.display_path(&lab_blueprint.file).into_owned();
    let parsed = blueprint::parse_blueprint(&file_name, &text)
        .map_err(|err| anyhow::anyhow!("{}", crate::cli::render_diagnostics(&err)))?;
    write_normalised(ctx, &parsed)?;
    let warnings =
        if crate::world::composes_locally(ctx.lab) { local_world_warnings(&file_name, &parsed) } else { Vec::new() };
    for warning in &warnings {
        ctx.progress.keep(&format!("warning: {warning}"));
    }
    Ok(StageOutput {
        output_digest: super::digest_out(&ctx.out)?,
        extra: json!({
            "name": parsed.name,
            "version": parsed.version,
            "n_packages": parsed.packages.len(),
            "warnings": warnings,
        }),
    })
}

/// The blueprint's keys without effect in the local world, one line each.
pub fn local_world_warnings(file_name: &str, parsed: &Blueprint) -> Vec<String> {
    blueprint::no_local_effect(parsed)
        .into_iter()
        .map(|gap| format!("{file_name}: `{}` has no effect in the local world: {}", gap.key, gap.why))
        .collect()
}

/// What `lab plan` warns of: every lab blueprint's keys without local
/// effect (a blueprint that does not parse is the stage's error to show).
pub fn plan_warnings(lab: &Lab) -> Vec<String> {
    if !crate::world::composes_locally(lab) {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    for lab_blueprint in &lab.blueprints {
        let file_name = lab.display_path(&lab_blueprint.file).into_owned();
        let parsed = std::fs::read_to_string(&lab_blueprint.file)
            .ok()
            .and_then(|text| blueprint::parse_blueprint(&file_name, &text).ok());
        if let Some(parsed) = parsed {
            warnings.extend(local_world_warnings(&file_name, &parsed));
        }
    }
    warnings
}

/// Reads the normalised blueprint a `blueprint` artifact holds.
pub fn read_output(out: &std::path::Path) -> anyhow::Result<Blueprint> {
    let path = out.join("blueprint.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn write_normalised(ctx: &StageCtx, parsed: &Blueprint) -> anyhow::Result<()> {
    let json_path = ctx.out.join("blueprint.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(parsed)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let toml_path = ctx.out.join("blueprint.toml");
    std::fs::write(&toml_path, parsed.to_toml()).with_context(|| format!("writing {}", toml_path.display()))?;
    // The package names alone, one per line, for composers that install a list.
    let names: String = parsed.packages.iter().map(|package| format!("{}\n", package.name)).collect();
    let list_path = ctx.out.join("packages.txt");
    std::fs::write(&list_path, names).with_context(|| format!("writing {}", list_path.display()))
}
