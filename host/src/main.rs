//! `edgelab-serve`: the command line of the counting file server.
//!
//! It reads the flags, raises the open-file limit, serves the root until
//! SIGINT or SIGTERM, then prints the summary and exits 0. The supervisor in
//! xtask starts it as the lab's file-server service; a person can run it by
//! hand just the same.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use edgelab_host::{Config, Server};
use tokio::signal::unix::{SignalKind, signal};

/// Serve a directory read-only over HTTP/1.1, counting requests and bytes.
#[derive(Debug, Parser)]
#[command(name = "edgelab-serve", version)]
struct Args {
    /// The directory to serve.
    #[arg(long)]
    root: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,
    /// The port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Do not log each request (for benchmarks); the summary is still printed.
    #[arg(long)]
    quiet: bool,
    /// Write the request log and the summary to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Write the server's process id to this file while it runs.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Connections served at once; more are answered 503 and closed.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,
    /// Close a connection that moves no byte for this many seconds.
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = parse_seconds)]
    idle_timeout: Duration,
    /// Close a connection whose request headers take longer than this.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_seconds)]
    header_timeout: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Errors are printed here, not returned from `main`, so a person sees one
    // line and no backtrace even when RUST_BACKTRACE is set.
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("edgelab-serve: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    match edgelab_host::raise_open_file_limit() {
        Ok(open_file_limit) if (open_file_limit as usize) < args.max_connections + 64 => {
            eprintln!(
                "edgelab-serve: warning: only {open_file_limit} open files allowed; \
                 --max-connections {} may run out of file descriptors",
                args.max_connections
            );
        }
        Ok(_) => {}
        Err(error) => {
            eprintln!("edgelab-serve: warning: cannot raise the open-file limit: {error}")
        }
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    // Handlers go in before the port is bound, so a signal sent as soon as
    // the port answers is never met by the default action (death, no summary).
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    let config = Config {
        root: args.root.clone(),
        address: args.address,
        port: args.port,
        quiet: args.quiet,
        log: args.log.clone(),
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        header_timeout: args.header_timeout,
    };
    let server = Server::bind(config).await?;
    if let Some(pid_file) = &args.pid_file {
        write_pid_file(pid_file)?;
    }
    println!("serving {} on http://{}", args.root.display(), server.local_addr());
    let summary = server.run(shutdown).await;
    print!("{summary}");
    if let Some(pid_file) = &args.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

fn write_pid_file(pid_file: &Path) -> Result<()> {
    std::fs::write(pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing pid file {}", pid_file.display()))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("`{text}` must be a positive number of seconds"))
}
