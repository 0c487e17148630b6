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
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::{Global, Session, project_root};
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
const GOAL_CACHED_MS: f64 = 50.0;
const GOAL_HASH_MB_PER_S: f64 = 1000.0;
/// The file `bench plan` hashes for raw throughput.
const BIG_FILE_BYTES: usize = 256 << 20;

#[derive(Debug, Serialize)]
struct Stats {
    min: f64,
    median: f64,
    p90: f64,
}

pub fn run(global: &Global, command: &BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Plan(args) => plan_bench(global, args),
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
        copy_tree(&fixtures, &tmp.join("guest"))?;
    }
    copy_tree(&demo_root.join("guest"), &tmp.join("guest"))?;
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

    let mut cached = Vec::new();
    let mut uncached = Vec::new();
    let mut cached_cpu = Vec::new();
    let mut last_cached = warm;
    for _ in 0..args.runs {
        let run = plan_once(&global, true)?;
        cached.push(run.wall_ms);
        cached_cpu.push(run.cpu_ms);
        last_cached = run;
        uncached.push(plan_once(&global, false)?.wall_ms);
    }
    if last_cached.n_hashed != 0 {
        anyhow::bail!("the cached no-op plan rehashed {} files: the stat cache is not working", last_cached.n_hashed);
    }

    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let mut process_cached = Vec::new();
    let mut process_uncached = Vec::new();
    for _ in 0..args.runs {
        process_cached.push(plan_process(&exe, &global, true)?);
        process_uncached.push(plan_process(&exe, &global, false)?);
    }

    let stat_floor = stat_floor_ms(&context, args.runs);
    let (hash_mb_per_s, hash_mb_per_cpu_s) = hash_throughput(tmp)?;
    let tree_mb_per_s = bytes as f64 / 1e6 / (median(&uncached) / 1e3);
    let report = json!({
        "date": utc_date(SystemTime::now()),
        "machine": machine(),
        "n_files": n_files,
        "bytes": bytes,
        "runs": args.runs,
        "cached_ms": stats(&cached),
        "cached_cpu_ms": stats(&cached_cpu),
        "uncached_ms": stats(&uncached),
        "process_cached_ms": stats(&process_cached),
        "process_uncached_ms": stats(&process_uncached),
        "cached_run": { "files_hashed": last_cached.n_hashed, "cache_hits": last_cached.n_hits },
        "stat_floor_ms": stat_floor,
        "hash_mb_per_s": hash_mb_per_s.round(),
        "hash_mb_per_cpu_s": hash_mb_per_cpu_s.round(),
        "uncached_tree_mb_per_s": tree_mb_per_s.round(),
        "goal_met": {
            "cached_under_50ms": median(&cached) < GOAL_CACHED_MS,
            "process_cached_under_50ms": median(&process_cached) < GOAL_CACHED_MS,
            "hash_at_least_1gb_per_s": hash_mb_per_s >= GOAL_HASH_MB_PER_S,
            "hash_at_least_1gb_per_cpu_s": hash_mb_per_cpu_s >= GOAL_HASH_MB_PER_S,
        },
    });
    print_table(
        &report,
        n_files,
        bytes,
        &[
            ("in-process, stat cache", &cached),
            ("in-process, no stat cache", &uncached),
            ("xtask process, stat cache", &process_cached),
            ("xtask process, no stat cache", &process_uncached),
        ],
    );
    println!("cached in-process CPU time: median {:.1} ms", median(&cached_cpu));
    println!(
        "hashing one {} MiB file: {hash_mb_per_s:.0} MB/s; uncached tree: {tree_mb_per_s:.0} MB/s",
        BIG_FILE_BYTES >> 20
    );
    Ok(report)
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

/// Wall time of `xtask lab plan` as its own process.
fn plan_process(exe: &Path, global: &Global, use_cache: bool) -> anyhow::Result<f64> {
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
    let started = Instant::now();
    cmd.run()?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
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

/// The cost no stat-based cache can avoid: one `lstat` per file of `root`,
/// listed beforehand, on one thread.
fn stat_floor_ms(root: &Path, runs: usize) -> Stats {
    let files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .collect();
    let samples: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            for file in &files {
                std::hint::black_box(fs::symlink_metadata(file).ok());
            }
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    stats(&samples)
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
        let stats = stats(samples);
        println!("{name:30}  {:>9.1}  {:>9.1}  {:>9.1}", stats.min, stats.median, stats.p90);
    }
}

fn stats(samples: &[f64]) -> Stats {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let at = |fraction: f64| {
        let idx = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
        sorted.get(idx).copied().unwrap_or(f64::NAN)
    };
    let round = |value: f64| (value * 10.0).round() / 10.0;
    Stats { min: round(at(0.0)), median: round(at(0.5)), p90: round(at(0.9)) }
}

pub(crate) fn median(samples: &[f64]) -> f64 {
    stats(samples).median
}

/// CPU time (user + system) this process used so far, in ms.
fn cpu_time_ms() -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ms = |tv: libc::timeval| tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

pub(crate) fn machine() -> serde_json::Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
        .map(|(_, model)| model.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let sha_ni =
        cpuinfo.lines().any(|line| line.starts_with("flags") && line.split_whitespace().any(|f| f == "sha_ni"));
    let load_avg_1m: Option<f64> =
        fs::read_to_string("/proc/loadavg").ok().and_then(|text| text.split_whitespace().next()?.parse().ok());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": cpu_model,
        "sha_ni": sha_ni,
        "load_avg_1m": load_avg_1m,
    })
}

/// `2026-11-27T11:44:36Z` (civil date from days since the epoch).
pub(crate) fn utc_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|it| it.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let target = to.join(entry.path().strip_prefix(from).unwrap_or(entry.path()));
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        } else if entry.file_type().is_file() {
            fs::copy(entry.path(), &target).with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
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
