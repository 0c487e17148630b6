//! `cargo xtask bench ...`: measurements written as JSON under
//! `bench/results/`. Each benchmark is one `BenchCommand` variant.
//!
//! `bench plan` times the no-op `lab plan` on a temporary copy of the demo lab
//! whose container context holds tens of thousands of generated files, with
//! the stat cache enabled and disabled side by side in one run, in-process and
//! as a separate `xtask` process, plus raw hashing throughput. The machine is
//! shared, so process CPU time is reported beside wall time.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::json;

use super::{
    Global, Session,
    bench_meta::{self, Stats, cpu_time_ms, median},
    project_root,
};
use crate::{
    plan, stages,
    store::{StatCache, statcache::RACY_WINDOW_NS},
    tools::Cmd,
};

/// The benchmarks.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// The no-op `lab plan` with and without the stat cache, and hashing throughput.
    Plan(PlanBenchArgs),
    /// The local composer on the demo's images: a cold compose (empty cache)
    /// and a warm one (the shared cache) side by side.
    Compose(super::bench_compose::ComposeBenchArgs),
    /// The file server against the demo's Go server, nginx and python:
    /// `ostree pull` wall time and wrk requests per second on one repo.
    Serve {
        /// Where serve.json goes (default bench/results/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The lab's guests from qemu's start to their health verdict, all
    /// booting at once: the median of N boots per accelerator.
    Boot(super::bench_boot::BootBenchArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanBenchArgs {
    /// Timed runs of each variant.
    #[arg(long, default_value_t = 15)]
    pub runs: usize,
    /// Files generated into the container context.
    #[arg(long, default_value_t = 20_000)]
    pub files: usize,
    /// Where the JSON goes (default: bench/results/plan.json in the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temporary lab (its path is printed).
    #[arg(long)]
    pub keep: bool,
}

/// The goals `bench plan` checks.
const GOAL_OVER_STAT_FLOOR: f64 = 1.5;
const GOAL_CACHED_MS: f64 = 50.0;
const GOAL_HASH_MB_PER_S: f64 = 1000.0;
/// The file `bench plan` hashes for raw throughput.
const BIG_FILE_BYTES: usize = 256 << 20;

pub fn run(global: &Global, command: &BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Plan(args) => plan_bench(global, args),
        BenchCommand::Compose(args) => super::bench_compose::run(global, args),
        BenchCommand::Serve { out } => {
            let out_dir = out.clone().unwrap_or_else(|| project_root().join("bench/results"));
            super::bench_serve::run(&out_dir)
        }
        BenchCommand::Boot(args) => super::bench_boot::run(global, args),
    }
}

fn plan_bench(global: &Global, args: &PlanBenchArgs) -> anyhow::Result<()> {
    let demo_lab = global.lab.clone().unwrap_or_else(|| project_root().join("lab.kdl"));
    let demo_root = demo_lab.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let tmp = std::env::temp_dir().join(format!("edgelab-bench-plan-{}", std::process::id()));
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = plan_bench_in(&tmp, &demo_lab, &demo_root, args);
    if args.keep {
        eprintln!("kept the benchmark lab in {}", tmp.display());
    } else {
        fs::remove_dir_all(&tmp).ok();
    }
    let report = result?;
    let out = args.out.clone().unwrap_or_else(|| project_root().join("bench/results/plan.json"));
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}

fn plan_bench_in(
    tmp: &Path,
    demo_lab: &Path,
    demo_root: &Path,
    args: &PlanBenchArgs,
) -> anyhow::Result<serde_json::Value> {
    // The demo lab, copied, with a big container context.
    let lab_file = tmp.join("lab.kdl");
    fs::copy(demo_lab, &lab_file).with_context(|| format!("copying {}", demo_lab.display()))?;
    // The golden-test fixtures stand in for guest files the repository does
    // not have (yet); the repository's own files win.
    let fixtures = project_root().join("xtask/test_data/labs/guest");
    if fixtures.is_dir() {
        crate::store::copy_tree(&fixtures, &tmp.join("guest"))?;
    }
    crate::store::copy_tree(&demo_root.join("guest"), &tmp.join("guest"))?;
    let global =
        Global { lab: Some(lab_file.clone()), store: Some(tmp.join("artifacts")), no_wait: false, quiet: true };
    let session = Session::load(&global).context("loading the copied demo lab")?;
    let context = session
        .lab
        .containers
        .iter()
        .flat_map(|container| &container.builds)
        .map(|build| build.context.clone())
        .next()
        .context("the demo lab declares no container build, so it has no context to fill")?;
    eprintln!("generating {} files into {}", args.files, context.display());
    let (n_files, bytes) = generate_context(&context.join("generated"), args.files)?;
    drop(session);
    // Let every generated file leave the racy window, as a user's would.
    std::thread::sleep(Duration::from_nanos(RACY_WINDOW_NS as u64) + Duration::from_millis(200));

    // Warm up: hash everything once and save the cache, as a first plan does.
    let warm = plan_once(&global, true)?;
    eprintln!("first plan hashed {} files ({:.0} MB)", warm.n_hashed, warm.bytes_hashed as f64 / 1e6);

    // Every variant once per round, so a change in the shared machine's load
    // hits all of them alike.
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let floor_files = list_files(&context);
    let machine = bench_meta::machine();
    let mut samples = Samples::default();
    let mut last_cached = warm;
    for _ in 0..args.runs {
        let (floor_ms, floor_cpu_ms) = stat_floor_once(&floor_files);
        samples.floor.push(floor_ms);
        samples.floor_cpu.push(floor_cpu_ms);
        let (wall, cpu) = plan_process(&exe, &global, true)?;
        samples.process_cached.push(wall);
        samples.process_cached_cpu.push(cpu);
        let (wall, cpu) = plan_process(&exe, &global, false)?;
        samples.process_uncached.push(wall);
        samples.process_uncached_cpu.push(cpu);
        let run = plan_once(&global, true)?;
        samples.cached.push(run.wall_ms);
        samples.cached_cpu.push(run.cpu_ms);
        last_cached = run;
        samples.uncached.push(plan_once(&global, false)?.wall_ms);
    }
    if last_cached.n_hashed != 0 {
        anyhow::bail!("the cached no-op plan rehashed {} files: the stat cache is not working", last_cached.n_hashed);
    }

    let (hash_mb_per_s, hash_mb_per_cpu_s) = hash_throughput(tmp)?;
    let tree_mb_per_s = bytes as f64 / 1e6 / (median(&samples.uncached) / 1e3);
    let ratio = |plan: &[f64], floor: &[f64]| (median(plan) / median(floor) * 100.0).round() / 100.0;
    let wall_ratio = ratio(&samples.process_cached, &samples.floor);
    let cpu_ratio = ratio(&samples.process_cached_cpu, &samples.floor_cpu);
    let report = json!({
        "date": bench_meta::utc_now(),
        "machine": machine,
        "load_average_at_end": bench_meta::load_average(),
        "n_files": n_files,
        "bytes": bytes,
        "runs": args.runs,
        "what": {
            "stat_floor": "one lstat per file of the context, listed beforehand, on one thread, in this process",
            "process_cached": "`xtask lab plan` as its own process, no-op (every file a stat cache hit)",
            "process_uncached": "the same with EDGELAB_STAT_CACHE=off: every file rehashed",
            "cached": "the same no-op plan in this process (no process start)",
            "cpu": "user + system time, from getrusage (children's for the process variants)",
        },
        "stat_floor_ms": Stats::of(&samples.floor),
        "stat_floor_cpu_ms": Stats::of(&samples.floor_cpu),
        "process_cached_ms": Stats::of(&samples.process_cached),
        "process_cached_cpu_ms": Stats::of(&samples.process_cached_cpu),
        "process_uncached_ms": Stats::of(&samples.process_uncached),
        "process_uncached_cpu_ms": Stats::of(&samples.process_uncached_cpu),
        "cached_ms": Stats::of(&samples.cached),
        "cached_cpu_ms": Stats::of(&samples.cached_cpu),
        "uncached_ms": Stats::of(&samples.uncached),
        "noop_plan_over_stat_floor": { "wall": wall_ratio, "cpu": cpu_ratio },
        "cached_run": { "files_hashed": last_cached.n_hashed, "cache_hits": last_cached.n_hits },
        "hash_mb_per_s": hash_mb_per_s.round(),
        "hash_mb_per_cpu_s": hash_mb_per_cpu_s.round(),
        "uncached_tree_mb_per_s": tree_mb_per_s.round(),
        "goal_met": {
            "process_cached_at_most_1_5x_stat_floor": wall_ratio <= GOAL_OVER_STAT_FLOOR,
            "cached_under_50ms": median(&samples.cached) < GOAL_CACHED_MS,
            "process_cached_under_50ms": median(&samples.process_cached) < GOAL_CACHED_MS,
            "hash_at_least_1gb_per_s": hash_mb_per_s >= GOAL_HASH_MB_PER_S,
            "hash_at_least_1gb_per_cpu_s": hash_mb_per_cpu_s >= GOAL_HASH_MB_PER_S,
        },
    });
    print_table(
        &report,
        n_files,
        bytes,
        &[
            ("stat floor (lstat each file)", &samples.floor),
            ("xtask process, stat cache", &samples.process_cached),
            ("xtask process, no stat cache", &samples.process_uncached),
            ("in-process, stat cache", &samples.cached),
            ("in-process, no stat cache", &samples.uncached),
        ],
    );
    println!(
        "CPU medians: stat floor {:.1} ms, no-op process {:.1} ms, in-process {:.1} ms",
        median(&samples.floor_cpu),
        median(&samples.process_cached_cpu),
        median(&samples.cached_cpu)
    );
    println!("no-op plan over the stat floor: {wall_ratio:.2}x wall, {cpu_ratio:.2}x CPU");
    println!(
        "hashing one {} MiB file: {hash_mb_per_s:.0} MB/s; uncached tree: {tree_mb_per_s:.0} MB/s",
        BIG_FILE_BYTES >> 20
    );
    Ok(report)
}

/// Timed samples, one per round, by variant (ms).
#[derive(Default)]
struct Samples {
    floor: Vec<f64>,
    floor_cpu: Vec<f64>,
    process_cached: Vec<f64>,
    process_cached_cpu: Vec<f64>,
    process_uncached: Vec<f64>,
    process_uncached_cpu: Vec<f64>,
    cached: Vec<f64>,
    cached_cpu: Vec<f64>,
    uncached: Vec<f64>,
}

/// What one timed plan did.
struct PlanRun {
    wall_ms: f64,
    cpu_ms: f64,
    n_hashed: u64,
    n_hits: u64,
    bytes_hashed: u64,
}

/// One whole no-op `lab plan`, in-process: load the lab, gather facts
/// (through the stat cache, or with it disabled), plan.
fn plan_once(global: &Global, use_cache: bool) -> anyhow::Result<PlanRun> {
    let (started, cpu_started) = (Instant::now(), cpu_time_ms());
    let session = Session::load(global)?;
    let mut cache = if use_cache { session.store.load_stat_cache() } else { StatCache::disabled() };
    let (facts, stats) = session.facts_with(&mut cache)?;
    let plan = plan::plan(&session.graph, &facts, &session.store, &stages::capability);
    if use_cache {
        session.store.save_stat_cache(&cache);
    }
    std::hint::black_box(plan.render(false));
    Ok(PlanRun {
        wall_ms: started.elapsed().as_secs_f64() * 1e3,
        cpu_ms: cpu_time_ms() - cpu_started,
        n_hashed: stats.n_files_hashed,
        n_hits: stats.n_cache_hits,
        bytes_hashed: stats.bytes_hashed,
    })
}

/// Wall and CPU time of `xtask lab plan` as its own process.
fn plan_process(exe: &Path, global: &Global, use_cache: bool) -> anyhow::Result<(f64, f64)> {
    let mut cmd = Cmd::new(exe).args(["lab", "plan", "--quiet"]);
    if let Some(lab) = &global.lab {
        cmd = cmd.arg("--lab").arg(lab);
    }
    if let Some(store) = &global.store {
        cmd = cmd.arg("--store").arg(store);
    }
    if !use_cache {
        cmd = cmd.env(super::STAT_CACHE_ENV, "off");
    }
    let (started, cpu_started) = (Instant::now(), bench_meta::children_cpu_time_ms());
    cmd.run()?;
    Ok((started.elapsed().as_secs_f64() * 1e3, bench_meta::children_cpu_time_ms() - cpu_started))
}

/// Writes `n_files` files of mixed sizes (mostly small sources, some
/// medium, a few large blobs: about 150 MB for 20,000) in a two-level tree.
/// Contents are pseudo-random and fixed by a seed, so runs are comparable.
fn generate_context(root: &Path, n_files: usize) -> anyhow::Result<(usize, u64)> {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut bytes = 0u64;
    let mut buf = Vec::new();
    for idx in 0..n_files {
        let dir = root.join(format!("pkg{:02}/mod{:03}", idx % 20, idx % 400));
        if idx < 400 {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let size = match idx % 200 {
            0 => 500_000 + rng.below(500_000),
            1..=19 => 8_192 + rng.below(32_768),
            _ => 128 + rng.below(3_200),
        };
        buf.clear();
        while buf.len() < size {
            buf.extend_from_slice(&rng.next().to_le_bytes());
        }
        buf.truncate(size);
        let path = dir.join(format!("file{idx:05}.dat"));
        fs::write(&path, &buf).with_context(|| format!("writing {}", path.display()))?;
        bytes += size as u64;
    }
    Ok((n_files, bytes))
}

/// The files of `root`, listed once for the stat floor.
fn list_files(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .collect()
}

/// The cost the issue measures a plan against: one `lstat` per file,
/// listed beforehand, on one thread; wall and CPU ms.
fn stat_floor_once(files: &[PathBuf]) -> (f64, f64) {
    let (started, cpu_started) = (Instant::now(), cpu_time_ms());
    for file in files {
        std::hint::black_box(fs::symlink_metadata(file).ok());
    }
    (started.elapsed().as_secs_f64() * 1e3, cpu_time_ms() - cpu_started)
}

/// MB/s hashing one large file, best of three by wall time and by CPU time
/// (the page cache is warm after the first read, so this is the hashing
/// rate, not the disk's; on a shared machine wall time includes waiting).
fn hash_throughput(tmp: &Path) -> anyhow::Result<(f64, f64)> {
    use std::io::Write;
    let path = tmp.join("big.bin");
    let mut rng = XorShift(7);
    let mut file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    for _ in 0..BIG_FILE_BYTES >> 20 {
        let block: Vec<u8> = (0..(1 << 17)).flat_map(|_| rng.next().to_le_bytes()).collect();
        file.write_all(&block).with_context(|| format!("writing {}", path.display()))?;
    }
    drop(file);
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let (started, cpu_started) = (Instant::now(), cpu_time_ms());
        crate::hash::digest_file_raw(&path).with_context(|| format!("hashing {}", path.display()))?;
        best = best.min(started.elapsed().as_secs_f64());
        best_cpu = best_cpu.min((cpu_time_ms() - cpu_started) / 1e3);
    }
    fs::remove_file(&path).ok();
    let mb = BIG_FILE_BYTES as f64 / 1e6;
    Ok((mb / best, mb / best_cpu))
}

fn print_table(report: &serde_json::Value, n_files: usize, bytes: u64, rows: &[(&str, &Vec<f64>)]) {
    println!(
        "no-op `lab plan`, demo lab + {n_files} files ({:.0} MB) in the container context, {} runs each",
        bytes as f64 / 1e6,
        report["runs"]
    );
    println!("{:30}  {:>9}  {:>9}  {:>9}", "variant", "min ms", "median ms", "p90 ms");
    for (name, samples) in rows {
        let stats = Stats::of(samples);
        println!("{name:30}  {:>9.1}  {:>9.1}  {:>9.1}", stats.min, stats.median, stats.p90);
    }
}

/// A small deterministic generator for benchmark file contents (no dependency).
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, limit: usize) -> usize {
        (self.next() % limit as u64) as usize
    }
}
