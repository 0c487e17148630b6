//! `cargo xtask`: edgelab's command line. Parses arguments and hands each
//! command to `edgelab::cli`.

use clap::{Parser, Subcommand};
use edgelab::cli::{self, Global};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "edgelab: build and run RHEL for Edge labs from lab.kdl")]
struct Args {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, start and inspect the lab.
    #[command(subcommand)]
    Lab(LabCommand),
    /// The artifact graph, as graphviz dot or svg.
    Graph {
        #[arg(long, default_value = "dot")]
        format: String,
    },
    /// The store under artifacts/.
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// Serve an image's repo (`serve v2`) or a folder in the foreground, counting files and bytes.
    Serve {
        /// An image of the lab (`v2`).
        image: Option<String>,
        /// Serve this folder instead of an image.
        #[arg(long, conflicts_with = "image")]
        dir: Option<std::path::PathBuf>,
        /// Listen on this address instead of the lab's file-server address.
        #[arg(long)]
        address: Option<std::net::IpAddr>,
        /// Listen on this port instead of the lab's file-server port.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Benchmark the file server against the demo's Go server, nginx and python (becomes `bench serve`).
    BenchServe {
        /// Where serve.json goes.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Install what the tests need and run them (tiers 1 and 2).
    Test {
        /// Passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build what is stale, then start services and guests.
    Up {
        /// Only these stages and what they need (`compose v2`, `v2`).
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
    },
    /// What would run, and why.
    Plan {
        #[arg(long)]
        explain: bool,
        #[arg(long)]
        json: bool,
    },
    /// Artifacts, services and guests at a glance.
    Status,
    /// Stop guests and services; keep the store.
    Down,
}

#[derive(Subcommand)]
enum ArtifactsCommand {
    /// List the artifacts in the store.
    Ls,
    /// Remove what the current lab no longer reaches (keeps recent generations).
    Gc,
    /// Rehash every artifact; quarantine corrupt ones.
    Verify,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("EDGELAB_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let global = &args.global;
    let result = match &args.command {
        Command::Lab(LabCommand::Up { only }) => cli::lab_cmd::up(global, only),
        Command::Lab(LabCommand::Plan { explain, json }) => cli::lab_cmd::plan_cmd(global, *explain, *json),
        Command::Lab(LabCommand::Status) => cli::lab_cmd::status(global),
        Command::Lab(LabCommand::Down) => cli::lab_cmd::down(global),
        Command::Graph { format } => cli::lab_cmd::graph_cmd(global, format),
        Command::Artifacts(ArtifactsCommand::Ls) => cli::artifacts::ls(global),
        Command::Artifacts(ArtifactsCommand::Gc) => cli::artifacts::gc(global),
        Command::Artifacts(ArtifactsCommand::Verify) => cli::artifacts::verify(global),
        Command::Serve { image, dir, address, port } => {
            let options =
                cli::serve::ServeOptions { image: image.clone(), dir: dir.clone(), address: *address, port: *port };
            cli::serve::run(global, &options)
        }
        Command::BenchServe { out } => {
            let out_dir = out.clone().unwrap_or_else(|| cli::project_root().join("bench/results"));
            cli::bench_serve::run(&out_dir)
        }
        Command::Test { args } => cli::test_cmd::run(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
