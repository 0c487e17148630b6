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
    /// A guest's console, power and life.
    #[command(subcommand)]
    Guest(GuestCommand),
    /// The lab's container apps.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Prepare this RHEL host (packages, services, firewall, bridge); prints the plan first.
    #[command(subcommand)]
    Host(HostCommand),
    /// Compose an image (`image v2 --parent`), show one (`image info v1`),
    /// compare two (`image diff v1 v2`), or point a channel at one (`image
    /// promote v2`).
    Image(ImageArgs),
    /// Measure and write JSON under bench/results/.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
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
    /// Run one of the demo's scenarios against the lab that is up, asserting each step.
    Demo {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(edgelab::demo::SCENARIOS))]
        scenario: String,
    },
    /// Reset the guests to their pristine disks, bring the lab up and run every
    /// scenario in order, with a text and JSON report.
    E2e,
    /// Shell completions for edgelab's commands, on stdout
    /// (`cargo xtask completions bash > ~/.local/share/bash-completion/completions/xtask`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Install what the tests need and run them (tiers 1 and 2).
    Test {
        /// Passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ImageArgs {
    #[command(subcommand)]
    command: Option<ImageCommand>,
    /// The image to compose (short for `image compose NAME`).
    name: Option<String>,
    /// Compose on the parent's commit (the lab must give the image a parent).
    #[arg(long)]
    parent: bool,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Compose an image and what it needs (an image named like a subcommand
    /// is composed this way).
    Compose {
        name: String,
        /// Compose on the parent's commit (the lab must give the image a parent).
        #[arg(long)]
        parent: bool,
    },
    /// What a compose made: compose.json's fields, commit, parent, packages.
    Info { name: String },
    /// Packages added and removed between two images (`image diff v1 v2`).
    Diff { old: String, new: String },
    /// Point a channel at an image (`image promote v2`, and back with
    /// `image promote v1`): what guests install and stage from then on.
    Promote {
        image: String,
        /// The channel to move (default: the one the kickstart installs from).
        #[arg(long)]
        channel: Option<String>,
        /// Print the channel as published, as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build what is stale, then start services and guests.
    Up {
        /// Only these stages and what they need (`compose v2`, `v2`).
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
        /// Run these stages even when cached (`compose v1`); what follows
        /// them runs only if their output changed.
        #[arg(long, num_args = 1.., value_name = "STAGE")]
        rebuild: Vec<String>,
        /// Replace these guests' disks with their newest install (local world).
        #[arg(long, value_name = "GUEST")]
        reinstall: Vec<String>,
        /// Build and start the services, but leave the guests as they are
        /// (not installed into run state, not started).
        #[arg(long)]
        no_guests: bool,
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
    /// Watch the lab's inputs; on each save rebuild what is stale and roll the
    /// lab forward (upgrade the guests onto a changed channel, say which need a
    /// reinstall), printing the seconds from the save to healthy guests.
    Watch,
    /// Stop guests and services; keep the store.
    Down,
    /// A shell inside the lab's network namespace (local world).
    Shell,
    /// Run a command inside the lab's network namespace (local world).
    Exec {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
enum GuestCommand {
    /// Attach to the guest's serial console (Ctrl-] leaves).
    Console { name: String },
    /// Kill the guest at once, as `virsh destroy` does.
    Destroy { name: String },
    /// Start the guest (boots its disk as it was left).
    Start { name: String },
    /// Run a command as root in the guest (local world: its check shell); the
    /// words are passed as they are (`-- sh -c "a | b"` for a pipeline).
    Exec {
        name: String,
        /// Seconds to wait for the shell and the command.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Move guests to their channel's commit as a device does: stage it through
    /// the guest's own update service, reboot through its apply service, and
    /// report greenboot's verdict (healthy, or rolled back after 3 red boots with
    /// the failed check and its output), what was fetched and each phase's
    /// seconds. Exits 1 when a guest rolled back.
    Upgrade {
        /// Guests of the lab (all of them with --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        #[arg(long)]
        all: bool,
        /// The reports as JSON on stdout (progress stays on stderr).
        #[arg(long)]
        json: bool,
    },
    /// The guest's launcher (its bootloader loop); `lab up` starts it.
    #[command(hide = true)]
    RunLauncher {
        name: String,
        /// Boot with this accelerator (auto, kvm or tcg) whatever the lab and
        /// EDGELAB_ACCEL say (`bench boot` uses it).
        #[arg(long)]
        accel: Option<String>,
    },
}

#[derive(Subcommand)]
enum HostCommand {
    /// Do what the original setup scripts did, showing each change first (dry run unless --yes).
    Setup {
        /// Apply the changes without asking.
        #[arg(long)]
        yes: bool,
        /// Only print the changes (the default when stdin is not a terminal).
        #[arg(long)]
        dry_run: bool,
        /// The host interface to attach to the guests' bridge.
        #[arg(long, value_name = "IFACE")]
        bridge_port: Option<String>,
    },
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Point a registry tag at a build (`promote httpd v2 --tag prod`); kept across `lab up`.
    Promote {
        /// The container app (`httpd`).
        app: String,
        /// The build the tag should point at (`v2`).
        build: String,
        /// The registry tag to move.
        #[arg(long, default_value = "prod")]
        tag: String,
    },
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
        Command::Lab(LabCommand::Up { only, rebuild, reinstall, no_guests }) => cli::lab_cmd::up(
            global,
            &cli::lab_cmd::UpOptions {
                only: only.clone(),
                rebuild: rebuild.clone(),
                reinstall: reinstall.clone(),
                guests: !no_guests,
            },
        ),
        Command::Lab(LabCommand::Plan { explain, json }) => cli::lab_cmd::plan_cmd(global, *explain, *json),
        Command::Lab(LabCommand::Status) => cli::lab_cmd::status(global),
        Command::Lab(LabCommand::Watch) => cli::lab_watch::watch(global),
        Command::Lab(LabCommand::Down) => cli::lab_cmd::down(global),
        Command::Lab(LabCommand::Shell) => cli::guest::shell(global),
        Command::Lab(LabCommand::Exec { command }) => cli::guest::exec(global, command),
        Command::Guest(GuestCommand::Console { name }) => cli::guest::console(global, name),
        Command::Guest(GuestCommand::Destroy { name }) => cli::guest::destroy(global, name),
        Command::Guest(GuestCommand::Start { name }) => cli::guest::start(global, name),
        Command::Guest(GuestCommand::Exec { name, timeout, command }) => {
            cli::guest::guest_exec(global, name, *timeout, command)
        }
        Command::Guest(GuestCommand::Upgrade { names, all, json }) => cli::guest::upgrade(global, names, *all, *json),
        Command::Guest(GuestCommand::RunLauncher { name, accel }) => {
            cli::guest::run_launcher(global, name, accel.as_deref())
        }
        Command::Demo { scenario } => cli::demo::demo_cmd(global, scenario),
        Command::E2e => cli::demo::e2e(global),
        Command::Graph { format } => cli::lab_cmd::graph_cmd(global, format),
        Command::Artifacts(ArtifactsCommand::Ls) => cli::artifacts::ls(global),
        Command::Artifacts(ArtifactsCommand::Gc) => cli::artifacts::gc(global),
        Command::Artifacts(ArtifactsCommand::Verify) => cli::artifacts::verify(global),
        Command::Container(ContainerCommand::Promote { app, build, tag }) => {
            cli::container::promote(global, app, build, tag)
        }
        Command::Image(ImageArgs { command, name, parent }) => match (command, name) {
            (Some(ImageCommand::Compose { name, parent }), _) => cli::image::compose(global, name, *parent),
            (Some(ImageCommand::Info { name }), _) => cli::image::info(global, name),
            (Some(ImageCommand::Diff { old, new }), _) => cli::image_diff::diff(global, old, new),
            (Some(ImageCommand::Promote { image, channel, json }), _) => {
                cli::image_promote::promote(global, image, channel.as_deref(), *json)
            }
            (None, Some(name)) => cli::image::compose(global, name, *parent),
            (None, None) => Err(anyhow::anyhow!(
                "say which image: `image NAME [--parent]`, `image info NAME`, `image diff OLD NEW` or \
                 `image promote NAME`"
            )),
        },
        Command::Serve { image, dir, address, port } => {
            let options =
                cli::serve::ServeOptions { image: image.clone(), dir: dir.clone(), address: *address, port: *port };
            cli::serve::run(global, &options)
        }
        Command::Host(HostCommand::Setup { yes, dry_run, bridge_port }) => {
            let options =
                cli::host_setup::HostSetupOptions { yes: *yes, dry_run: *dry_run, bridge_port: bridge_port.clone() };
            cli::host_setup::run(global, &options)
        }
        Command::Test { args } => cli::test_cmd::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into memory first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Args::command(), "xtask", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
                _ => Ok(()),
            }
        }
        Command::Bench(bench) => cli::bench::run(global, bench),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
