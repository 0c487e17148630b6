//! `cargo xtask bench serve`: edgelab's file server against the original
//! demo's Go server, nginx and `python3 -m http.server`, in one run on one
//! generated OSTree repository.
//!
//! Two figures per server, as issue 6 asks: the wall time of a full
//! `ostree pull` into a fresh repository (the median of a few runs), and
//! `wrk` requests per second on one small object and rotating through every
//! object of the repository (OSTree fetches one file per object, so many
//! small requests decide install time). Everything runs on 127.0.0.1 on free
//! ports, one server at a time, and each server is stopped after its turn.
//! The results go to `bench/results/serve.json` and a table on stdout.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;

use super::bench_meta::{Machine, machine, median, utc_now};
use crate::tools::{self, nginx::NginxSite, serve::ServeArgs, wrk::WrkLoad, wrk::WrkReport};

/// The branch the generated tree is committed on.
const BRANCH: &str = "bench/x86_64/edge";

/// The object size the "small object" figure aims for (OSTree objects are
/// mostly a few kilobytes).
const SMALL_OBJECT_BYTES: u64 = 2 * 1024;

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// edgelab-serve writing every request line to a file, as the demo runs it.
    EdgelabLogged,
    /// edgelab-serve with `--quiet`.
    EdgelabQuiet,
    /// The original demo's Go server, rebuilt from bench/servers/go/main.go.
    Go,
    Nginx,
    Python,
}

/// What a benchmark run does.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Files of 1-16 KB in the generated tree.
    pub n_small_files: usize,
    /// Files of 256 KB-4 MB in the generated tree.
    pub n_large_files: usize,
    pub servers: Vec<ServerKind>,
    /// Full pulls per server; the median is reported.
    pub pull_runs: usize,
    /// Each wrk run's length; `None` skips wrk.
    pub wrk_duration: Option<Duration>,
    pub wrk_threads: u32,
    pub wrk_connections: u32,
    /// Rounds of the edgelab (log file) against nginx comparison; 0 skips it.
    pub head_to_head_rounds: usize,
}

/// The whole result, as written to `serve.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// RFC 3339 UTC.
    pub date: String,
    pub machine: Machine,
    pub repo: RepoStats,
    pub settings: Settings,
    pub servers: Vec<ServerResult>,
    /// Servers not measured, and why.
    pub skipped: Vec<String>,
    /// edgelab (log file) and nginx (access log) under wrk in alternating
    /// rounds, both running throughout: the figure the goal is
    /// about, measured so that other load on a shared machine falls on
    /// both alike.
    pub head_to_head: Option<HeadToHead>,
    /// /proc/loadavg (1, 5, 15 minutes) when the run started and ended:
    /// other work on the machine shows here.
    pub load_average_start: [f64; 3],
    pub load_average_end: [f64; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadToHead {
    pub edgelab: String,
    pub against: String,
    pub rounds: Vec<HeadToHeadRound>,
    /// Median requests per second, edgelab over nginx (>= 1.0: edgelab at
    /// least as fast).
    pub rps_ratio: PerLoad<f64>,
    /// Median server CPU per request, nginx over edgelab (>= 1.0: edgelab
    /// spends no more CPU per request).
    pub cpu_ratio: PerLoad<f64>,
    pub edgelab_median_rps: PerLoad<f64>,
    pub against_median_rps: PerLoad<f64>,
    pub edgelab_median_cpu_us_per_request: PerLoad<f64>,
    pub against_median_cpu_us_per_request: PerLoad<f64>,
}

/// One round: each server's wrk runs, the order swapped every round.
#[derive(Debug, Clone, Serialize)]
pub struct HeadToHeadRound {
    pub first: String,
    pub edgelab_rps: PerLoad<f64>,
    pub against_rps: PerLoad<f64>,
    pub edgelab_cpu_us_per_request: PerLoad<f64>,
    pub against_cpu_us_per_request: PerLoad<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub pull_runs: usize,
    pub pull_client: String,
    pub wrk: String,
    pub small_object: String,
    pub small_object_bytes: u64,
    pub n_rotated_objects: usize,
}

/// The generated tree and the repository it was committed to.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStats {
    /// Files and bytes in the committed tree.
    pub files: usize,
    pub bytes: u64,
    /// Objects and bytes in the archive repository (what a pull fetches).
    pub objects: usize,
    pub object_bytes: u64,
    pub commit: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerResult {
    pub server: String,
    pub version: String,
    pub pull_seconds: PullSeconds,
    /// Requests per second: `small_object` and `objects` (rotating).
    pub wrk_rps: Option<PerLoad<f64>>,
    pub wrk_latency_ms: Option<PerLoad<Latency>>,
    /// CPU time the server's processes used per request during the wrk
    /// runs (user + system): a figure that holds up better than requests
    /// per second when other work shares the machine.
    pub wrk_server_cpu_us_per_request: Option<PerLoad<f64>>,
    pub notes: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PullSeconds {
    pub runs: Vec<f64>,
    pub median: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerLoad<T> {
    pub small_object: T,
    pub objects: T,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

/// The generated repository, ready to serve.
struct Fixture {
    /// The served folder: `repo/` is inside it, as in the demo's folders.
    served_root: PathBuf,
    stats: RepoStats,
    small_object_path: String,
    small_object_bytes: u64,
    object_paths: Vec<String>,
}

/// A server started for one turn; stopped when dropped.
struct RunningServer {
    child: Child,
    listen: SocketAddr,
}

/// Binaries built once per run.
struct Binaries {
    edgelab: Option<PathBuf>,
    go: Option<PathBuf>,
}

impl BenchConfig {
    /// What `cargo xtask bench serve` measures.
    pub fn full() -> BenchConfig {
        BenchConfig {
            n_small_files: 5_000,
            n_large_files: 20,
            servers: vec![
                ServerKind::EdgelabLogged,
                ServerKind::EdgelabQuiet,
                ServerKind::Go,
                ServerKind::Nginx,
                ServerKind::Python,
            ],
            pull_runs: 3,
            wrk_duration: Some(Duration::from_secs(5)),
            wrk_threads: 2,
            wrk_connections: 32,
            head_to_head_rounds: 5,
        }
    }
}

impl ServerKind {
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::EdgelabLogged => "edgelab (log file)",
            ServerKind::EdgelabQuiet => "edgelab (--quiet)",
            ServerKind::Go => "go demo server (log file)",
            ServerKind::Nginx => "nginx (access log)",
            ServerKind::Python => "python3 http.server",
        }
    }
}

/// Runs the full benchmark and writes `out_dir/serve.json`.
pub fn run(out_dir: &Path) -> anyhow::Result<()> {
    // The comparison needs its baselines: installed like any prerequisite
    // (nginx and the Go toolchain for the demo's server, wrk as the load).
    let programs = ["ostree", "wrk", "nginx", "go", "python3"].into_iter().collect();
    crate::stages::prereqs::ensure_programs(&programs, &crate::progress::Progress::new(false))
        .context("installing what `bench serve` compares")?;
    let work_dir =
        tempfile::Builder::new().prefix("edgelab-bench-serve.").tempdir().context("creating a temp folder")?;
    let report = measure(&BenchConfig::full(), work_dir.path())?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join("serve.json");
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    print!("{}", render_table(&report));
    println!("results: {}", path.display());
    Ok(())
}

/// Builds the repository in `work_dir` and measures every configured server.
pub fn measure(config: &BenchConfig, work_dir: &Path) -> anyhow::Result<BenchReport> {
    let load_average_start = load_average();
    eprintln!("bench serve: generating {} + {} files and committing them", config.n_small_files, config.n_large_files);
    let fixture = build_fixture(config, work_dir)?;
    eprintln!(
        "bench serve: repo has {} objects, {:.1} MB",
        fixture.stats.objects,
        fixture.stats.object_bytes as f64 / 1e6
    );
    // A server whose program is missing is left out and named in the
    // report, so one missing compiler does not cost the other figures.
    let mut skipped = Vec::new();
    let mut config = config.clone();
    for (kind, program, package) in [(ServerKind::Go, "go", "golang-go"), (ServerKind::Nginx, "nginx", "nginx-light")] {
        if config.servers.contains(&kind) && tools::which(program).is_none() {
            skipped.push(format!("{}: `{program}` not found (apt-get install {package})", kind.label()));
            config.servers.retain(|server| *server != kind);
        }
    }
    let config = &config;
    let binaries = build_binaries(config, work_dir)?;
    let mut servers = Vec::new();
    for &kind in &config.servers {
        eprintln!("bench serve: {}", kind.label());
        let result = measure_server(config, kind, &binaries, &fixture, work_dir)
            .with_context(|| format!("benchmarking {}", kind.label()))?;
        servers.push(result);
    }
    let has_nginx = config.servers.contains(&ServerKind::Nginx);
    let head_to_head = match (config.head_to_head_rounds, config.wrk_duration) {
        (0, _) | (_, None) => None,
        _ if !has_nginx => None,
        (rounds, Some(duration)) => {
            eprintln!("bench serve: edgelab against nginx, {rounds} alternating rounds");
            Some(
                head_to_head(config, rounds, duration, &binaries, &fixture, work_dir)
                    .context("comparing edgelab with nginx")?,
            )
        }
    };
    Ok(BenchReport {
        date: utc_now(),
        machine: machine(),
        repo: fixture.stats.clone(),
        settings: Settings {
            pull_runs: config.pull_runs,
            pull_client: "ostree pull into a fresh archive-mode repo (objects stored as fetched)".into(),
            wrk: match config.wrk_duration {
                Some(duration) => format!(
                    "wrk -t{} -c{} -d{}s, on the same 2-core host as the server",
                    config.wrk_threads,
                    config.wrk_connections,
                    duration.as_secs()
                ),
                None => "not run".into(),
            },
            small_object: fixture.small_object_path.clone(),
            small_object_bytes: fixture.small_object_bytes,
            n_rotated_objects: fixture.object_paths.len(),
        },
        servers,
        skipped,
        head_to_head,
        load_average_start,
        load_average_end: load_average(),
    })
}

/// Both servers up at once; each round runs wrk on the small object and
/// on the rotating objects against one, then the other, swapping who goes
/// first, and reads each server's CPU time around its own runs.
fn head_to_head(
    config: &BenchConfig,
    rounds: usize,
    duration: Duration,
    binaries: &Binaries,
    fixture: &Fixture,
    work_dir: &Path,
) -> anyhow::Result<HeadToHead> {
    let kinds = [ServerKind::EdgelabLogged, ServerKind::Nginx];
    let mut servers = Vec::new();
    for kind in kinds {
        let dir = work_dir.join(format!("head-to-head-{}", kind.label().replace(|c: char| !c.is_alphanumeric(), "-")));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let server = start_server(kind, binaries, &fixture.served_root, &dir)?;
        servers.push((server, dir));
    }
    let small_paths = [fixture.small_object_path.clone()];
    let mut results = Vec::new();
    for round_idx in 0..rounds {
        let order: [usize; 2] = if round_idx % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut measured: [Option<(PerLoad<f64>, PerLoad<f64>)>; 2] = [None, None];
        for server_idx in order {
            let (server, dir) = &servers[server_idx];
            let base_url = format!("http://{}", server.listen);
            let load = |paths| WrkLoad {
                base_url: &base_url,
                paths,
                threads: config.wrk_threads,
                connections: config.wrk_connections,
                duration,
            };
            let pid = server.child.id();
            let cpu_start = process_tree_cpu_seconds(pid);
            let small = tools::wrk::run(&load(&small_paths), dir)?;
            let cpu_middle = process_tree_cpu_seconds(pid);
            let objects = tools::wrk::run(&load(&fixture.object_paths), dir)?;
            let cpu_end = process_tree_cpu_seconds(pid);
            let per_request = |seconds: f64, requests: u64| seconds * 1e6 / requests.max(1) as f64;
            if small.errors + objects.errors > 0 {
                bail!("wrk saw {} errors against {}", small.errors + objects.errors, kinds[server_idx].label());
            }
            measured[server_idx] = Some((
                PerLoad { small_object: small.requests_per_second, objects: objects.requests_per_second },
                PerLoad {
                    small_object: per_request(cpu_middle - cpu_start, small.requests),
                    objects: per_request(cpu_end - cpu_middle, objects.requests),
                },
            ));
        }
        let [Some((edgelab_rps, edgelab_cpu)), Some((against_rps, against_cpu))] = measured else {
            bail!("a server was not measured in round {round_idx}");
        };
        eprintln!(
            "bench serve: round {}: edgelab {:.0}/{:.0} rps, nginx {:.0}/{:.0} rps (small/objects)",
            round_idx + 1,
            edgelab_rps.small_object,
            edgelab_rps.objects,
            against_rps.small_object,
            against_rps.objects
        );
        results.push(HeadToHeadRound {
            first: kinds[order[0]].label().into(),
            edgelab_rps,
            against_rps,
            edgelab_cpu_us_per_request: edgelab_cpu,
            against_cpu_us_per_request: against_cpu,
        });
    }
    drop(servers);
    let medians = |pick: &dyn Fn(&HeadToHeadRound) -> &PerLoad<f64>| PerLoad {
        small_object: median(&results.iter().map(|round| pick(round).small_object).collect::<Vec<_>>()),
        objects: median(&results.iter().map(|round| pick(round).objects).collect::<Vec<_>>()),
    };
    let edgelab_rps = medians(&|round| &round.edgelab_rps);
    let against_rps = medians(&|round| &round.against_rps);
    let edgelab_cpu = medians(&|round| &round.edgelab_cpu_us_per_request);
    let against_cpu = medians(&|round| &round.against_cpu_us_per_request);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(HeadToHead {
        edgelab: ServerKind::EdgelabLogged.label().into(),
        against: ServerKind::Nginx.label().into(),
        rps_ratio: PerLoad {
            small_object: ratio(edgelab_rps.small_object, against_rps.small_object),
            objects: ratio(edgelab_rps.objects, against_rps.objects),
        },
        cpu_ratio: PerLoad {
            small_object: ratio(against_cpu.small_object, edgelab_cpu.small_object),
            objects: ratio(against_cpu.objects, edgelab_cpu.objects),
        },
        edgelab_median_rps: edgelab_rps,
        against_median_rps: against_rps,
        edgelab_median_cpu_us_per_request: edgelab_cpu,
        against_median_cpu_us_per_request: against_cpu,
        rounds: results,
    })
}

/// The 1, 5 and 15 minute load averages, zeros when unreadable.
fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|field| field.parse::<f64>().unwrap_or(0.0));
    [(); 3].map(|()| fields.next().unwrap_or(0.0))
}

/// The results as a table for people.
pub fn render_table(report: &BenchReport) -> String {
    let mut table = format!(
        "repo: {} files, {:.1} MB -> {} objects, {:.1} MB; {} pulls per server; {}\n",
        report.repo.files,
        report.repo.bytes as f64 / 1e6,
        report.repo.objects,
        report.repo.object_bytes as f64 / 1e6,
        report.settings.pull_runs,
        report.settings.wrk
    );
    table.push_str(&format!(
        "{:<28} {:>12} {:>12} {:>12} {:>11} {:>16}\n",
        "server", "pull median", "rps 2KB obj", "rps objects", "p99 ms obj", "cpu us/req obj"
    ));
    for server in &report.servers {
        let (small, objects, p99, cpu) =
            match (&server.wrk_rps, &server.wrk_latency_ms, &server.wrk_server_cpu_us_per_request) {
                (Some(rps), Some(latency), Some(cpu)) => (
                    format!("{:.0}", rps.small_object),
                    format!("{:.0}", rps.objects),
                    format!("{:.2}", latency.objects.p99),
                    format!("{:.1}", cpu.objects),
                ),
                _ => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
        table.push_str(&format!(
            "{:<28} {:>11.2}s {small:>12} {objects:>12} {p99:>11} {cpu:>16}\n",
            server.server, server.pull_seconds.median
        ));
    }
    if let Some(versus) = &report.head_to_head {
        table.push_str(&format!(
            "{} / {} over {} alternating rounds: rps {:.2}x (2KB obj), {:.2}x (objects); cpu per request {:.2}x, {:.2}x (nginx / edgelab)\n",
            versus.edgelab,
            versus.against,
            versus.rounds.len(),
            versus.rps_ratio.small_object,
            versus.rps_ratio.objects,
            versus.cpu_ratio.small_object,
            versus.cpu_ratio.objects
        ));
    }
    for skipped in &report.skipped {
        table.push_str(&format!("not measured: {skipped}\n"));
    }
    table.push_str(&format!(
        "load average {:.2} at the start, {:.2} at the end\n",
        report.load_average_start[0], report.load_average_end[0]
    ));
    table
}

fn build_fixture(config: &BenchConfig, work_dir: &Path) -> anyhow::Result<Fixture> {
    let tree = work_dir.join("tree");
    let (files, bytes) = generate_tree(&tree, config.n_small_files, config.n_large_files)?;
    let served_root = work_dir.join("served");
    let repo = served_root.join("repo");
    std::fs::create_dir_all(&repo).with_context(|| format!("creating {}", repo.display()))?;
    tools::ostree::init(&repo, "archive")?;
    let commit = tools::ostree::commit_tree(&repo, BRANCH, &tree, "edgelab bench serve")?;
    std::fs::remove_dir_all(&tree).ok();

    let mut objects: Vec<(String, u64)> = Vec::new();
    for entry in walkdir::WalkDir::new(repo.join("objects")) {
        let entry = entry.context("listing the repo's objects")?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(&served_root).context("object outside the served folder")?;
        let size = entry.metadata().context("reading an object's size")?.len();
        objects.push((format!("/{}", relative.to_string_lossy()), size));
    }
    objects.sort();
    let Some((small_object_path, small_object_bytes)) =
        objects.iter().min_by_key(|(_, size)| size.abs_diff(SMALL_OBJECT_BYTES)).cloned()
    else {
        bail!("the generated repo {} has no objects", repo.display());
    };
    let stats = RepoStats {
        files,
        bytes,
        objects: objects.len(),
        object_bytes: objects.iter().map(|(_, size)| size).sum(),
        commit,
    };
    let object_paths = objects.into_iter().map(|(path, _)| path).collect();
    Ok(Fixture { served_root, stats, small_object_path, small_object_bytes, object_paths })
}

/// Writes `n_small` files of 1-16 KB and `n_large` of 256 KB-4 MB under
/// `tree`, 100 per folder, with deterministic content that compresses
/// somewhat, like a system's files (random words between text lines).
/// Returns files and bytes.
fn generate_tree(tree: &Path, n_small: usize, n_large: usize) -> anyhow::Result<(usize, u64)> {
    let mut random = super::bench::XorShift(0x9e37_79b9_7f4a_7c15);
    let mut n_bytes = 0;
    for file_idx in 0..n_small + n_large {
        let size = match file_idx < n_small {
            true => 1024 + random.below(15 * 1024) as u64,
            false => 256 * 1024 + random.below(3840 * 1024) as u64,
        };
        let dir = tree.join(format!("usr/share/bench/d{:03}", file_idx / 100));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut content = Vec::with_capacity(size as usize);
        while (content.len() as u64) < size {
            content.extend_from_slice(&random.next().to_le_bytes());
            content.extend_from_slice(format!("line {} of file {file_idx}\n", content.len()).as_bytes());
        }
        content.truncate(size as usize);
        let path = dir.join(format!("file{file_idx:05}.dat"));
        std::fs::write(&path, &content).with_context(|| format!("writing {}", path.display()))?;
        n_bytes += size;
    }
    Ok((n_small + n_large, n_bytes))
}

fn build_binaries(config: &BenchConfig, work_dir: &Path) -> anyhow::Result<Binaries> {
    let wants = |kinds: &[ServerKind]| config.servers.iter().any(|kind| kinds.contains(kind));
    let edgelab = match wants(&[ServerKind::EdgelabLogged, ServerKind::EdgelabQuiet]) {
        true => {
            eprintln!("bench serve: building edgelab-serve (release)");
            Some(tools::serve::binary()?)
        }
        false => None,
    };
    let go = match wants(&[ServerKind::Go]) {
        true => {
            eprintln!("bench serve: building the Go demo server");
            let source = crate::cli::project_root().join("bench/servers/go/main.go");
            Some(tools::go::build(&source, work_dir)?)
        }
        false => None,
    };
    Ok(Binaries { edgelab, go })
}

fn measure_server(
    config: &BenchConfig,
    kind: ServerKind,
    binaries: &Binaries,
    fixture: &Fixture,
    work_dir: &Path,
) -> anyhow::Result<ServerResult> {
    let server_dir = work_dir.join(format!("server-{}", kind.label().replace(|c: char| !c.is_alphanumeric(), "-")));
    std::fs::create_dir_all(&server_dir).with_context(|| format!("creating {}", server_dir.display()))?;
    let server = start_server(kind, binaries, &fixture.served_root, &server_dir)?;
    let base_url = format!("http://{}", server.listen);

    let mut runs = Vec::new();
    for run_idx in 0..config.pull_runs {
        let client = server_dir.join(format!("client-{run_idx}"));
        runs.push(time_pull(&client, &format!("{base_url}/repo"))?);
        std::fs::remove_dir_all(&client).ok();
    }
    let (wrk_rps, wrk_latency_ms, wrk_cpu, wrk_errors) = match config.wrk_duration {
        Some(duration) => {
            let small_paths = [fixture.small_object_path.clone()];
            let load = |paths| WrkLoad {
                base_url: &base_url,
                paths,
                threads: config.wrk_threads,
                connections: config.wrk_connections,
                duration,
            };
            let pid = server.child.id();
            let cpu_start = process_tree_cpu_seconds(pid);
            let small = tools::wrk::run(&load(&small_paths), &server_dir)?;
            let cpu_middle = process_tree_cpu_seconds(pid);
            let objects = tools::wrk::run(&load(&fixture.object_paths), &server_dir)?;
            let cpu_end = process_tree_cpu_seconds(pid);
            let per_request = |seconds: f64, requests: u64| seconds * 1e6 / requests.max(1) as f64;
            let errors = small.errors + objects.errors;
            (
                Some(PerLoad { small_object: small.requests_per_second, objects: objects.requests_per_second }),
                Some(PerLoad { small_object: latency(&small), objects: latency(&objects) }),
                Some(PerLoad {
                    small_object: per_request(cpu_middle - cpu_start, small.requests),
                    objects: per_request(cpu_end - cpu_middle, objects.requests),
                }),
                errors,
            )
        }
        None => (None, None, None, 0),
    };
    drop(server);
    let mut notes = notes(kind).to_string();
    if wrk_errors > 0 {
        notes.push_str(&format!(" wrk saw {wrk_errors} errors (connect/read/timeout or non-2xx)."));
    }
    Ok(ServerResult {
        server: kind.label().into(),
        version: version(kind),
        pull_seconds: PullSeconds { median: median(&runs), runs },
        wrk_rps,
        wrk_latency_ms,
        wrk_server_cpu_us_per_request: wrk_cpu,
        notes,
    })
}

fn start_server(
    kind: ServerKind,
    binaries: &Binaries,
    root: &Path,
    server_dir: &Path,
) -> anyhow::Result<RunningServer> {
    let listen = free_local_port()?;
    let output = server_dir.join("output.log");
    let request_log = server_dir.join("requests.log");
    let child = match kind {
        ServerKind::EdgelabLogged | ServerKind::EdgelabQuiet => {
            let binary = binaries.edgelab.as_deref().context("edgelab-serve was not built")?;
            let quiet = kind == ServerKind::EdgelabQuiet;
            let args = ServeArgs { root: root.to_path_buf(), listen, quiet, log: (!quiet).then_some(request_log) };
            tools::serve::spawn(binary, &args, &output)?
        }
        ServerKind::Go => {
            let binary = binaries.go.as_deref().context("the Go server was not built")?;
            tools::go::spawn_counting_server(binary, root, listen, &request_log, &output)?
        }
        ServerKind::Nginx => {
            let site =
                NginxSite { root: root.to_path_buf(), listen, work_dir: server_dir.to_path_buf(), worker_processes: 2 };
            tools::nginx::spawn(&site, &output)?
        }
        ServerKind::Python => tools::python::spawn_http_server(root, listen, &output)?,
    };
    let mut server = RunningServer { child, listen };
    wait_listening(&mut server, &output)?;
    Ok(server)
}

/// Pulls the benchmark branch from `url` into a fresh repository at
/// `client`, returning the wall time in seconds.
pub fn time_pull(client: &Path, url: &str) -> anyhow::Result<f64> {
    std::fs::create_dir_all(client).with_context(|| format!("creating {}", client.display()))?;
    tools::ostree::init(client, "archive")?;
    tools::ostree::remote_add(client, "bench", url)?;
    let started = Instant::now();
    tools::ostree::pull(client, "bench", BRANCH)?;
    Ok(started.elapsed().as_secs_f64())
}

fn wait_listening(server: &mut RunningServer, output: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect_timeout(&server.listen, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = server.child.try_wait()? {
            let text = std::fs::read_to_string(output).unwrap_or_default();
            bail!("the server exited at start ({status}): {}", text.trim());
        }
        if Instant::now() > deadline {
            bail!("the server did not listen on {} within 30 s", server.listen);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_local_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?)
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers, and
        // edgelab-serve writes its summary.
        crate::tools::process::terminate(self.child.id()).ok();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn notes(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::EdgelabLogged => "release build; every request line written to --log FILE, as the demo logs.",
        ServerKind::EdgelabQuiet => "release build; --quiet (counters only, no request lines).",
        ServerKind::Go => {
            "bench/servers/go/main.go: the original demo's handler (count, os.Stat size, log line) \
             in front of http.FileServer, with a mutex instead of the original's data race; log to a file."
        }
        ServerKind::Nginx => "worker_processes 2, sendfile on, default combined access_log to a file.",
        ServerKind::Python => "HTTP/1.0, one connection per request; logs every request on stderr (to a file).",
    }
}

fn version(kind: ServerKind) -> String {
    let found = match kind {
        ServerKind::EdgelabLogged | ServerKind::EdgelabQuiet => {
            Ok(format!("edgelab-serve {}", env!("CARGO_PKG_VERSION")))
        }
        ServerKind::Go => tools::go::version(),
        ServerKind::Nginx => Ok(tools::identity("nginx", &mut tools::IdentityCache::default())),
        ServerKind::Python => tools::python::version(),
    };
    found.unwrap_or_else(|err| format!("unknown ({err})"))
}

/// User and system CPU seconds of `pid` and its descendants (nginx's
/// workers) so far, from /proc.
fn process_tree_cpu_seconds(pid: u32) -> f64 {
    let ticks_per_second = crate::tools::process::clock_ticks_per_second().max(1) as f64;
    let mut pending = vec![pid];
    let mut ticks = 0_u64;
    while let Some(pid) = pending.pop() {
        if let Some(stat) = crate::tools::process::proc_stat(pid) {
            ticks += stat.utime + stat.stime;
        }
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
        for task in tasks {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pending.extend(children.split_whitespace().filter_map(|child| child.parse::<u32>().ok()));
        }
    }
    ticks as f64 / ticks_per_second
}

fn latency(report: &WrkReport) -> Latency {
    Latency { mean: report.latency_mean_ms, p50: report.latency_p50_ms, p99: report.latency_p99_ms }
}
