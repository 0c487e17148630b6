//! The `container` stage: one build of a container app, as an OCI archive.
//!
//! The build context is copied into `out/context`, its page template
//! rendered (figlet, cowsay) and, for a build with no base, the statically
//! linked `httpd` built into it; podman builds it reproducibly (see `tools::podman`) and saves it as
//! `out/image.oci.tar`. The output digest is the image id (the config
//! digest), identical for identical inputs: a rebuild that changed nothing
//! leaves the push and tag stages cached.

use anyhow::{Context, bail};
use serde_json::json;

use super::{StageCtx, StageOutput};
use crate::{
    lab::{Container, ContainerBuild, Lab},
    tools,
};

/// The OCI archive's file name in `out/`.
pub const ARCHIVE: &str = "image.oci.tar";
/// The page template in a build context.
pub const PAGE_TEMPLATE: &str = "index.html.in";

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let app = param(ctx, "app")?;
    let build_name = param(ctx, "build")?;
    let (_, build) = find_build(ctx.lab, app, build_name)?;
    check_context(ctx.lab, app, build)?;
    tools::require("podman")?;

    let context = ctx.out.join("context");
    crate::store::copy_tree(&build.context, &context)?;
    let template = context.join(PAGE_TEMPLATE);
    if template.exists() {
        let text = std::fs::read_to_string(&template).with_context(|| format!("reading {}", template.display()))?;
        let page = render_page(&text)
            .with_context(|| format!("rendering {}", ctx.lab.display_path(&build.context.join(PAGE_TEMPLATE))))?;
        std::fs::write(context.join("index.html"), page)?;
    }

    // A build on another build inherits its server from the base image.
    if build.from.is_none() {
        ctx.progress.note("building httpd (static)");
        let target_dir = ctx.out.join("cargo-target");
        let manifest = crate::graph::httpd_crate(ctx.lab).join("Cargo.toml");
        let binary = tools::cargo::build_static_binary(&manifest, "httpd", &target_dir)?;
        std::fs::copy(&binary, context.join("httpd")).with_context(|| format!("copying {}", binary.display()))?;
        std::fs::remove_dir_all(&target_dir).ok();
    }

    let base_id = match &build.from {
        Some(from) => {
            let base =
                ctx.inputs.get("base").with_context(|| format!("build `{build_name}` has no base input `{from}`"))?;
            let id = base.extra["image_id"].as_str().context("the base artifact records no image id")?.to_string();
            tools::podman::ensure_image(&id, &base.out.join(ARCHIVE))?;
            Some(id)
        }
        None => None,
    };
    ctx.progress.note(&format!("podman build {app}:{build_name}"));
    let spec = tools::podman::BuildSpec {
        context: &context,
        from_image: base_id.as_deref(),
        iidfile: &ctx.out.join("image-id"),
    };
    let image_id = tools::podman::build(&spec).with_context(|| format!("building {app}:{build_name}"))?;
    tools::podman::save_oci_archive(&image_id, &ctx.out.join(ARCHIVE))?;
    Ok(StageOutput {
        output_digest: image_id.clone(),
        extra: json!({ "image_id": image_id, "archive": ARCHIVE, "app": app, "build": build_name, "base": base_id }),
    })
}

/// The app `app` and its build `build`, or an error naming what exists.
pub fn find_build<'a>(lab: &'a Lab, app: &str, build: &str) -> anyhow::Result<(&'a Container, &'a ContainerBuild)> {
    let Some(container) = lab.container(app) else {
        let names: Vec<&str> = lab.containers.iter().map(|it| it.name.as_str()).collect();
        bail!("the lab has no container app `{app}` (it has: {})", list_or_none(&names));
    };
    match container.builds.iter().find(|it| it.name == build) {
        Some(found) => Ok((container, found)),
        None => {
            let names: Vec<&str> = container.builds.iter().map(|it| it.name.as_str()).collect();
            bail!("container `{app}` has no build `{build}` (its builds are: {})", list_or_none(&names))
        }
    }
}

/// A build context must be a folder with a Containerfile.
pub fn check_context(lab: &Lab, app: &str, build: &ContainerBuild) -> anyhow::Result<()> {
    let shown = lab.display_path(&build.context);
    if !build.context.is_dir() {
        bail!("container `{app}` build `{}`: the context {shown} is not a folder", build.name);
    }
    if !build.context.join("Containerfile").is_file() {
        bail!(
            "container `{app}` build `{}`: no Containerfile in {shown} (every build context needs one; \
             see guest/app/v1/Containerfile)",
            build.name
        );
    }
    Ok(())
}

/// Renders a page template: `{{figlet TEXT}}` and `{{cowsay FIGURE TEXT}}`
/// are replaced by the programs' output, HTML-escaped.
pub fn render_page(template: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unclosed `{{{{` at line {}", line_of(template, rest, start));
        };
        let directive = after[..end].trim();
        let drawn = match directive.split_once(' ') {
            Some(("figlet", text)) => tools::figlet::banner(text.trim())?,
            Some(("cowsay", args)) => match args.trim().split_once(' ') {
                Some((figure, text)) => tools::cowsay::say(figure, text.trim())?,
                None => bail!("`{{{{cowsay FIGURE TEXT}}}}` needs a figure and a text, got `{directive}`"),
            },
            _ => bail!(
                "unknown directive `{{{{{directive}}}}}` at line {} (known: figlet TEXT, cowsay FIGURE TEXT)",
                line_of(template, rest, start)
            ),
        };
        out.push_str(&escape_html(drawn.trim_end_matches('\n')));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn line_of(template: &str, rest: &str, offset: usize) -> usize {
    let consumed = template.len() - rest.len() + offset;
    template[..consumed].matches('\n').count() + 1
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn param<'a>(ctx: &'a StageCtx, name: &str) -> anyhow::Result<&'a str> {
    ctx.stage.params.get(name).and_then(|value| value.as_str()).with_context(|| format!("stage parameter `{name}`"))
}

fn list_or_none(names: &[&str]) -> String {
    match names.is_empty() {
        true => "none".into(),
        false => names.join(", "),
    }
}
