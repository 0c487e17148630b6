//! The commands behind `cargo xtask`: each loads the lab and the store the
//! same way (`Session`) and then does one thing.

pub mod artifacts;
pub mod bench;
pub mod bench_boot;
pub mod bench_compose;
pub mod bench_meta;
pub mod bench_serve;
pub mod container;
pub mod demo;
pub mod guest;
pub mod guest_libvirt;
pub mod host_setup;
pub mod image;
pub mod image_diff;
pub mod image_promote;
pub mod lab_cmd;
pub mod lab_watch;
pub mod serve;
pub mod test_cmd;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::{
    graph::{self, Graph},
    key::Facts,
    lab::{self, Lab},
    store::{LockWait, StatCache, Store},
};

/// `EDGELAB_STAT_CACHE=off` hashes every input as if the stat cache were empty.
pub const STAT_CACHE_ENV: &str = "EDGELAB_STAT_CACHE";

/// Options every command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The lab file.
    #[arg(long, global = true, env = "EDGELAB_LAB")]
    pub lab: Option<PathBuf>,
    /// The store folder (default: `artifacts/` beside the lab file).
    #[arg(long, global = true, env = "EDGELAB_STORE")]
    pub store: Option<PathBuf>,
    /// Fail at once when another edgelab process holds the store, instead of waiting.
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// No progress lines.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// A loaded lab, its graph and its store.
pub struct Session {
    pub lab: Lab,
    pub graph: Graph,
    pub store: Store,
}

impl Global {
    pub fn lock_wait(&self) -> LockWait {
        if self.no_wait { LockWait::NoWait } else { LockWait::Wait }
    }
}

/// The repository root: where `lab.kdl` lives by default.
pub fn project_root() -> PathBuf {
    // Under `cargo xtask` the manifest dir is xtask/; its parent is the root.
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => Path::new(&dir).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
        // Run as target/*/xtask directly: the workspace holding the binary.
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.ancestors().find(|dir| dir.join("xtask/Cargo.toml").is_file()).map(Path::to_path_buf))
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from(".")),
    }
}

impl Session {
    /// Parses the lab (all mistakes at once, drawn by miette), resolves its
    /// `auto` backends and opens the store.
    pub fn load(global: &Global) -> anyhow::Result<Session> {
        let lab_file = match &global.lab {
            Some(path) => path.clone(),
            None => project_root().join("lab.kdl"),
        };
        if !lab_file.exists() {
            anyhow::bail!(
                "no lab file at {}: create one (see lab.kdl in the edgelab repository) or pass --lab FILE",
                lab_file.display()
            );
        }
        let lab = lab::parse_lab_file(&lab_file).map_err(|err| anyhow::anyhow!("{:?}", miette::Report::new(err)))?;
        let lab = graph::resolve_backends(&lab, rhel_world_available());
        let guest_world = crate::world::GuestWorld::of(&lab);
        let needs_route = lab.network.host_address == crate::lab::Auto::Auto && guest_world.auto_host(None).is_err();
        let default_route = if needs_route { crate::tools::ip::default_route_address().ok() } else { None };
        let lab = graph::resolve_network(&lab, default_route)
            .map_err(|err| anyhow::anyhow!("{}: {err}", lab_file.display()))?;
        let store_root = match &global.store {
            Some(path) => path.clone(),
            None => lab.root.join("artifacts"),
        };
        let store = Store::open(&store_root).with_context(|| format!("opening the store {}", store_root.display()))?;
        // The RHEL world's scenarios reach guests with the lab's key, which
        // the kickstarts install: made once per store, an input of theirs.
        let mut lab = lab;
        if guest_world.uses_lab_key() {
            lab.check_key = Some(crate::guests::channel::lab_key(&store, &lab.name)?.public_file);
        }
        let graph = graph::build(&lab);
        Ok(Session { lab, graph, store })
    }

    /// Digests and tool identities for the whole graph, through the stat
    /// cache (unless `EDGELAB_STAT_CACHE=off`, for benchmarks and doubt).
    pub fn facts(&self) -> anyhow::Result<Facts> {
        let mut cache = match std::env::var(STAT_CACHE_ENV).as_deref() {
            Ok("off") => StatCache::disabled(),
            _ => self.store.load_stat_cache(),
        };
        let (facts, _stats) = crate::facts::gather(&self.graph, &self.store, &mut cache)?;
        self.store.save_stat_cache(&cache);
        Ok(facts)
    }

    /// Which artifact of each stage is current: the one `lab plan` calls
    /// fresh. Commands show, serve and boot these, never the newest build.
    pub fn current(&self) -> anyhow::Result<crate::current::Current> {
        let facts = self.facts()?;
        let plan = crate::plan::plan(&self.graph, &facts, &self.store, &crate::stages::capability);
        Ok(crate::current::Current::from_plan(plan))
    }

    /// Like `facts`, with a caller-owned cache (for benchmarks).
    pub fn facts_with(&self, cache: &mut StatCache) -> anyhow::Result<(Facts, crate::facts::GatherStats)> {
        crate::facts::gather(&self.graph, &self.store, cache)
    }
}

/// The RHEL world needs osbuild-composer's socket and virt-install.
fn rhel_world_available() -> bool {
    Path::new("/run/weldr/api.socket").exists() && crate::tools::which("virt-install").is_some()
}

/// A diagnostic's plain lines, then miette's drawing with a caret under each
/// span (the drawing lives here, not in the core, which draws nothing).
pub fn render_diagnostics(diagnostics: &crate::diag::Diagnostics) -> String {
    let mut drawn = String::new();
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    if handler.render_report(&mut drawn, diagnostics).is_err() {
        drawn.clear();
    }
    format!("{}{drawn}", diagnostics.to_plain())
}

#[cfg(test)]
mod tests {
    #[test]
    fn miette_draws_a_caret() {
        let err = crate::blueprint::parse_blueprint("RFE.toml", "name = \"RFE\"\nversion = \"x\"\n").unwrap_err();
        let drawn = super::render_diagnostics(&err);
        assert!(drawn.contains("RFE.toml:2:11"), "{drawn}");
        assert!(drawn.contains("not MAJOR.MINOR.PATCH"), "{drawn}");
        assert!(drawn.contains('^') || drawn.contains('─'), "no caret drawn:\n{drawn}");
    }
}
