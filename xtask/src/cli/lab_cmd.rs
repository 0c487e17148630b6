//! `cargo xtask lab up|plan|status|down` and `cargo xtask graph`.

use anyhow::{Context, bail};

use super::{Global, Session};
use crate::{
    graph::{StageId, StageKind},
    plan::{self, Plan},
    progress::Progress,
    runner, stages,
};

pub fn plan_cmd(global: &Global, explain: bool, json: bool) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let plan = compute_plan(&session)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.render(explain));
    }
    Ok(())
}

pub fn compute_plan(session: &Session) -> anyhow::Result<Plan> {
    let facts = session.facts()?;
    let mut plan = plan::plan(&session.graph, &facts, &session.store, &stages::capability);
    plan.warnings = stages::blueprint::plan_warnings(&session.lab);
    Ok(plan)
}

/// What `lab up` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Only these stages and what they need (all when empty).
    pub only: Vec<String>,
    /// Run these stages even when cached (`--rebuild`).
    pub rebuild: Vec<String>,
    /// Guests whose disks are replaced with their current install.
    pub reinstall: Vec<String>,
    /// Start the guests (`--no-guests` leaves them as they are).
    pub guests: bool,
}

pub fn up(global: &Global, options: &UpOptions) -> anyhow::Result<()> {
    up_in(&Session::load(global)?, global, options)
}

/// `lab up` on a loaded session (`lab watch` brings a variant graph).
pub fn up_in(session: &Session, global: &Global, options: &UpOptions) -> anyhow::Result<()> {
    let mut targets = runner::Targets::default();
    for name in &options.only {
        targets.wanted.push(parse_stage(session, name).context("--only")?);
    }
    for name in &options.rebuild {
        targets.rebuild.insert(parse_stage(session, name).context("--rebuild")?);
    }
    let lock = session.store.lock(global.lock_wait())?;
    let progress = Progress::new(global.quiet);
    // The host's prerequisites before anything else: the network and every
    // other stage run programs this stage installs.
    let prereqs = StageId::new(StageKind::Prereqs, "host");
    // The prereqs stage reads no file and names no tool, so its key needs no
    // facts: the inputs are hashed once, after it ran.
    let facts = crate::key::Facts::default();
    // Only a forced prereqs belongs to this first run: any other stage in
    // `--rebuild` would pull its upstream in here, keyed without facts.
    let first_rebuild = targets.rebuild.iter().filter(|id| **id == prereqs).cloned().collect();
    let first = runner::Targets { wanted: vec![prereqs.clone()], rebuild: first_rebuild };
    let mut summary =
        runner::run_targets(&session.lab, &session.graph, &facts, &session.store, &lock, &first, &progress);
    if summary.failed() {
        print!("{}", summary.render());
        bail!("the host's prerequisites are not all installed (see above); nothing else ran");
    }
    // Facts again: the identities of the tools just installed go into keys.
    let facts = session.facts()?;
    // Local world: the lab network first, so the services the stages start
    // (the registry for pushes) live inside it.
    if let Some(netns) = crate::guests::netns::lab_netns(&session.lab) {
        let segment = crate::guests::netns::segment(&session.lab);
        crate::guests::netns::up(&session.store, &segment)
            .with_context(|| format!("bringing up the lab network (namespace {netns})"))?;
    }
    if targets.wanted.is_empty() {
        targets.wanted =
            session.graph.stages.iter().map(|stage| stage.id.clone()).filter(|id| *id != prereqs).collect();
    }
    let rest = runner::run_targets(&session.lab, &session.graph, &facts, &session.store, &lock, &targets, &progress);
    summary.reports.extend(rest.reports.into_iter().filter(|report| report.stage != prereqs));
    print!("{}", summary.render());
    if summary.failed() {
        bail!("some stages failed (see above)");
    }
    drop(lock);
    ensure_services(session)?;
    if options.guests {
        crate::world::guests(&session.lab).up(session, &options.reinstall)?;
    }
    let missing = summary.missing();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|report| report.stage.to_string()).collect();
        bail!(
            "the lab is not fully up: {} stage(s) need capabilities edgelab does not have yet: {}",
            names.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// Every service the lab uses up (the registry when it has container apps,
/// the file server serving the session's current publish once the stages
/// have built it).
pub fn ensure_services(session: &Session) -> anyhow::Result<()> {
    let published = match session.lab.images.is_empty() {
        true => None,
        false => crate::services::file_server::served_root_of(&session.store, &session.current()?).ok(),
    };
    for service in crate::services::Service::ALL {
        let ensured = match service {
            crate::services::Service::Registry if !session.lab.containers.is_empty() => {
                crate::services::ensure(&session.lab, &session.store, service)?
            }
            crate::services::Service::FileServer => match &published {
                Some(root) => crate::services::ensure_file_server_at(&session.lab, &session.store, root)?,
                None => continue,
            },
            crate::services::Service::Registry => continue,
        };
        match ensured {
            crate::services::Ensured::Started { pid } => println!("lab {service}: started (pid {pid})"),
            crate::services::Ensured::Restarted { pid, why } => {
                println!("lab {service}: restarted (pid {pid}): {why}")
            }
            crate::services::Ensured::AlreadyRunning { .. } => {}
        }
    }
    Ok(())
}

pub fn status(global: &Global) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let plan = compute_plan(&session)?;
    println!("lab {} ({})", session.lab.name, session.lab.file.display());
    println!("store {}", session.store.root().display());
    print!("{}", plan.render(false));
    for line in super::image_promote::status_lines(&session, &plan) {
        println!("{line}");
    }
    for line in crate::services::status(&session.lab, &session.store) {
        println!("{line}");
    }
    for line in crate::world::guests(&session.lab).status(&session)? {
        println!("{line}");
    }
    Ok(())
}

pub fn down(global: &Global) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    crate::world::guests(&session.lab).down(&session)?;
    for service in crate::services::Service::ALL {
        if crate::services::stop(&session.lab, &session.store, service)? {
            println!("stopped the lab {service}");
        }
    }
    super::guest::network_down(&session)?;
    println!("lab {}: services stopped (store kept at {})", session.lab.name, session.store.root().display());
    Ok(())
}

pub fn graph_cmd(global: &Global, format: &str) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let dot = session.graph.to_dot();
    match format {
        "dot" => print!("{dot}"),
        "svg" => print!("{}", crate::tools::graphviz::render_svg(&dot)?),
        other => bail!("unknown graph format `{other}`: use dot or svg"),
    }
    Ok(())
}

/// `compose v2`, `compose:v2`, or a unique stage name like `v2`.
pub fn parse_stage(session: &Session, text: &str) -> anyhow::Result<StageId> {
    if let Some(id) = StageId::parse(text)
        && session.graph.stage(&id).is_some()
    {
        return Ok(id);
    }
    let matching: Vec<&StageId> =
        session.graph.stages.iter().map(|stage| &stage.id).filter(|id| id.name == text).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let names: Vec<String> = session.graph.stages.iter().map(|stage| stage.id.to_string()).collect();
            Err(anyhow::anyhow!("no stage `{text}` in the lab; stages are: {}", names.join(", ")))
        }
        many => {
            let names: Vec<String> = many.iter().map(|id| format!("`{id}`")).collect();
            Err(anyhow::anyhow!("`{text}` is ambiguous: say {}", names.join(" or ")))
        }
    }
}
