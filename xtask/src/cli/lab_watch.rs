//! `cargo xtask lab watch`: the developer's inner loop. Watches the lab's
//! inputs (lab.kdl and the folders beside it: blueprints, app contexts, the
//! kickstart's files; not the store, `target/` or `.git`) with `notify`
//! (inotify), a save being the changes until they pause for 400 ms, and on
//! each save:
//!
//! 1. re-plans;
//! 2. builds what is stale except the guests' installs (`lab up --only`
//!    every other stage, services moved onto what was built, guests left
//!    running on their disks); an undone edit finds everything cached. A
//!    changed image's served repo is built first without the installs'
//!    from-scratch delta (`Graph::without_install_deltas`: minutes of LZMA
//!    per new commit that no upgrade reads), and the lab's own repo, with
//!    it, after the guests are upgraded;
//! 3. rolls the lab forward: the running guests that do not boot the
//!    commit of the channel they follow (an OS change: its image was
//!    recomposed, or it was promoted) are upgraded as `guest upgrade --all`
//!    does, and the seconds from the save to their verdict are printed; an
//!    app change moved its tags (`tag` stages), which the guests' podman
//!    auto-update pulls; a kickstart change names the guests that need
//!    `lab up --reinstall`.
//!
//! A failed round (a parse error in lab.kdl, a stage that failed) is
//! printed and the watch goes on. Ctrl-C stops watching and leaves the lab
//! as it is (a build cut short is never published: the store's crash
//! rules).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use notify::{Event, EventKind, RecursiveMode, Watcher as _, event::ModifyKind};

use super::{
    Global, Session,
    guest::{channel_target, finish_upgrades, upgrade_guests},
    lab_cmd::{UpOptions, compute_plan, ensure_services, up_in},
};
use crate::{
    graph::{StageId, StageKind},
    guests::upgrade::{Verdict, short},
    plan::Status,
};

/// How long the watcher waits after the last change of a save (an editor
/// writes a temp file, renames it, touches the folder) before acting.
const DEBOUNCE: Duration = Duration::from_millis(400);

pub fn watch(global: &Global) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let root = session.lab.file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let root = root.canonicalize().with_context(|| format!("the lab's folder {}", root.display()))?;
    let store = session.store.root().canonicalize().unwrap_or_else(|_| session.store.root().to_path_buf());
    drop(session);

    let (events, received) = mpsc::channel::<notify::Result<Event>>();
    let mut watcher = notify::recommended_watcher(events).context("starting the file watcher")?;
    let mut watched = Vec::new();
    watcher.watch(&root, RecursiveMode::NonRecursive).context("watching the lab's folder")?;
    for entry in std::fs::read_dir(&root)?.flatten() {
        let path = entry.path();
        if path.is_dir() && !ignored(&path, &root, &store) {
            watcher.watch(&path, RecursiveMode::Recursive).with_context(|| format!("watching {}", path.display()))?;
            watched.push(path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default());
        }
    }
    println!(
        "watching {} (the lab file and {}/); Ctrl-C stops watching and leaves the lab as it is",
        root.display(),
        watched.join("/, ")
    );
    loop {
        // A save: the first change, then until the events pause.
        let mut changed = BTreeSet::new();
        let first = received.recv().context("the file watcher stopped")?;
        let saved = Instant::now();
        collect(first, &root, &store, &mut changed);
        loop {
            match received.recv_timeout(DEBOUNCE) {
                Ok(event) => collect(event, &root, &store, &mut changed),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the file watcher stopped"),
            }
        }
        if changed.is_empty() {
            continue;
        }
        println!("\nsaved: {}", changed.into_iter().collect::<Vec<_>>().join(", "));
        if let Err(err) = round(global, saved) {
            println!("watch: this round failed: {err:#}\nwatching for the next save");
        }
    }
}

/// Adds the inputs an event changed to `changed`: created, written,
/// renamed or removed files outside the store, `target/`, `.git` and
/// editor scratch (a file opened or read, or its times touched, is no
/// change: planning reads every input).
fn collect(event: notify::Result<Event>, root: &Path, store: &Path, changed: &mut BTreeSet<String>) {
    let event = match event {
        Ok(event) => event,
        Err(err) => {
            eprintln!("file watcher: {err}");
            return;
        }
    };
    let changes = match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    };
    if !changes {
        return;
    }
    for path in event.paths.iter().filter(|path| !ignored(path, root, store)) {
        changed.insert(path.strip_prefix(root).unwrap_or(path).display().to_string());
    }
}

/// One round after a save.
fn round(global: &Global, saved: Instant) -> anyhow::Result<()> {
    let session = Session::load(global)?;
    let plan = compute_plan(&session)?;
    let stale: Vec<StageId> = plan
        .entries
        .iter()
        .filter(|entry| entry.status != Status::Fresh)
        .filter_map(|entry| StageId::parse(&entry.stage))
        .collect();
    let has = |kind: StageKind| stale.iter().any(|id| id.kind == kind);
    // A new commit's from-scratch delta (minutes) is the installs' alone:
    // the guests upgrade from a served repo without it, built first, and
    // the lab's own repo follows once they are done.
    let deltas_after = has(StageKind::Repo);
    let session = match (stale.is_empty(), deltas_after) {
        // Every stage's artifact for the inputs as saved is in the store
        // (an edit undone): nothing to build, but the services move onto
        // them and the guests may follow.
        (true, _) => {
            println!("nothing to rebuild: every stage is cached for these inputs");
            ensure_services(&session)?;
            session
        }
        (false, false) => {
            build_all_but_installs(&session, global)?;
            Session::load(global)?
        }
        (false, true) => {
            println!("building the served repo without the installs' from-scratch delta first");
            let mut fast = Session::load(global)?;
            fast.graph = fast.graph.without_install_deltas();
            build_all_but_installs(&fast, global)?;
            fast
        }
    };
    if has(StageKind::Tag) {
        println!("app: its tags moved; the guests' podman auto-update pulls the new image on its next run");
    }
    if has(StageKind::Kickstart) {
        let names: Vec<&str> = session.lab.guests.iter().map(|guest| guest.name.as_str()).collect();
        println!(
            "kickstart: changed; it takes effect on install: `cargo xtask lab up --reinstall {}` replaces a disk",
            names.join(" ")
        );
    }
    let upgraded = upgrade_running(&session, global, saved);
    if deltas_after {
        println!("building what installs need (the from-scratch delta), off the upgrade's path");
        build_all_but_installs(&Session::load(global)?, global)?;
        println!("the lab is current: {:.1}s from the save", saved.elapsed().as_secs_f64());
    }
    upgraded
}

/// `lab up --only` every stage but the installs (running guests keep their
/// disks), then the services onto what was built.
fn build_all_but_installs(session: &Session, global: &Global) -> anyhow::Result<()> {
    let only: Vec<String> = session
        .graph
        .stages
        .iter()
        .map(|stage| &stage.id)
        .filter(|id| id.kind != StageKind::Install && id.kind != StageKind::Prereqs)
        .map(StageId::to_string)
        .collect();
    up_in(session, global, &UpOptions { only, guests: false, ..UpOptions::default() })
}

/// Upgrades the running guests that do not boot their channel's commit as
/// `session` has it published; prints the seconds from the save.
fn upgrade_running(session: &Session, global: &Global, saved: Instant) -> anyhow::Result<()> {
    let target = channel_target(session)?;
    let running: Vec<String> = session
        .lab
        .guests
        .iter()
        .map(|guest| guest.name.clone())
        .filter(|name| crate::guests::runs(&session.store, name))
        .collect();
    if running.is_empty() {
        println!("channel {}: at {} ({}); no guest is running", target.channel, target.image, short(&target.commit));
        return Ok(());
    }
    let reports = finish_upgrades(upgrade_guests(session, &running, &target, global.quiet), false)?;
    let moved: Vec<_> = reports.iter().filter(|report| report.verdict != Verdict::AlreadyCurrent).collect();
    if moved.is_empty() {
        return Ok(());
    }
    let healthy = moved.iter().filter(|report| report.verdict == Verdict::Healthy).count();
    println!(
        "{healthy} of {} guest(s) healthy on {} ({}), {:.1}s from the save",
        moved.len(),
        target.image,
        short(&target.commit),
        saved.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The store, `target/`, `.git` and editor scratch files are not inputs.
fn ignored(path: &Path, root: &Path, store: &Path) -> bool {
    if path.starts_with(store) {
        return true;
    }
    let relative = path.strip_prefix(root).unwrap_or(path);
    let scratch =
        |name: &str| name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".swx") || name == "4913";
    relative.components().any(|part| {
        let name = part.as_os_str().to_string_lossy();
        name == "target" || name == ".git" || scratch(&name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_build_output_and_editor_scratch_are_no_inputs() {
        let (root, store) = (Path::new("/lab"), Path::new("/lab/artifacts"));
        assert!(ignored(Path::new("/lab/artifacts/run/x.json"), root, store));
        assert!(ignored(Path::new("/lab/target/debug/xtask"), root, store));
        assert!(ignored(Path::new("/lab/.git/index"), root, store));
        assert!(ignored(Path::new("/lab/guest/blueprints/.RFE.toml.swp"), root, store));
        assert!(ignored(Path::new("/lab/guest/blueprints/RFE.toml~"), root, store));
        assert!(!ignored(Path::new("/lab/guest/blueprints/RFE.toml"), root, store));
        assert!(!ignored(Path::new("/lab/lab.kdl"), root, store));
    }
}
