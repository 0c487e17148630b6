//! `wrk`, the HTTP load generator, for `cargo xtask bench serve`.
//!
//! Every run gets a generated Lua script whose `done` hook prints the
//! summary as one JSON line, so nothing depends on wrk's human output. With
//! more than one path, the script's `request` hook rotates through them.

use std::{path::Path, time::Duration};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "wrk", debian: Some("wrk"), rhel: None, pip: None, version_args: &["-v"] }];

/// What one `wrk` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_second: f64,
    pub latency_mean_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub bytes: u64,
    /// Connect, read, write and timeout errors, and non-2xx/3xx answers.
    pub errors: u64,
}

/// How to load a server.
#[derive(Debug, Clone)]
pub struct WrkLoad<'a> {
    /// `http://127.0.0.1:PORT`, without a path.
    pub base_url: &'a str,
    /// Request paths (`/repo/config`); rotated through when more than one.
    pub paths: &'a [String],
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

/// The line the `done` hook prints before the JSON.
const REPORT_MARKER: &str = "edgelab-wrk-report ";

/// Runs wrk with `load`, writing its script into `work_dir`.
pub fn run(load: &WrkLoad, work_dir: &Path) -> anyhow::Result<WrkReport> {
    super::require("wrk")?;
    let Some(first_path) = load.paths.first() else {
        anyhow::bail!("wrk needs at least one request path");
    };
    let script = work_dir.join("wrk-script.lua");
    std::fs::write(&script, lua_script(load.paths)).with_context(|| format!("writing {}", script.display()))?;
    let seconds = load.duration.as_secs().max(1);
    let output = Cmd::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(format!("{}{first_path}", load.base_url))
        .timeout(load.duration + Duration::from_secs(60))
        .run()?;
    parse_report(&output.stdout).with_context(|| format!("reading wrk's report:\n{}", output.stdout))
}

/// The Lua script: the report hook, and path rotation when there are paths
/// to rotate through.
pub fn lua_script(paths: &[String]) -> String {
    let mut script = String::new();
    if paths.len() > 1 {
        script.push_str("local paths = {\n");
        for path in paths {
            script.push_str(&format!("  \"{}\",\n", lua_escape(path)));
        }
        script.push_str(
            "}\n\
             local counter = 0\n\
             -- Each thread starts at a different place in the list.\n\
             setup = function(thread)\n\
             \x20 thread:set(\"offset\", math.random(#paths))\n\
             end\n\
             request = function()\n\
             \x20 counter = counter + 1\n\
             \x20 local index = ((counter + (offset or 0)) % #paths) + 1\n\
             \x20 return wrk.format(\"GET\", paths[index])\n\
             end\n",
        );
    }
    script.push_str(&format!(
        "done = function(summary, latency, requests)\n\
         \x20 local errors = summary.errors\n\
         \x20 local n_errors = errors.connect + errors.read + errors.write + errors.timeout + errors.status\n\
         \x20 io.write(string.format('{REPORT_MARKER}{{\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"errors\":%d,' ..\n\
         \x20   '\"mean_us\":%f,\"p50_us\":%d,\"p99_us\":%d}}\\n',\n\
         \x20   summary.requests, summary.duration, summary.bytes, n_errors,\n\
         \x20   latency.mean, latency:percentile(50), latency:percentile(99)))\n\
         end\n"
    ));
    script
}

fn parse_report(stdout: &str) -> anyhow::Result<WrkReport> {
    #[derive(Deserialize)]
    struct Raw {
        requests: u64,
        duration_us: u64,
        bytes: u64,
        errors: u64,
        mean_us: f64,
        p50_us: u64,
        p99_us: u64,
    }
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(REPORT_MARKER))
        .context("wrk printed no report line (did the Lua `done` hook run?)")?;
    let raw: Raw = serde_json::from_str(line.trim()).context("parsing wrk's report line")?;
    let seconds = raw.duration_us.max(1) as f64 / 1e6;
    Ok(WrkReport {
        requests: raw.requests,
        requests_per_second: raw.requests as f64 / seconds,
        latency_mean_ms: raw.mean_us / 1000.0,
        latency_p50_ms: raw.p50_us as f64 / 1000.0,
        latency_p99_ms: raw.p99_us as f64 / 1000.0,
        bytes: raw.bytes,
        errors: raw.errors,
    })
}

fn lua_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
