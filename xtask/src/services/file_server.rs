//! The lab file server: edgelab-serve (host/) serving OSTree content to
//! installing and upgrading guests, as the original demo's Go server did.
//!
//! `lab up` serves the published repo (the `publish served` artifact: the
//! merged repo with each channel's ref where it points now) on the
//! lab's file-server address and port. The supervision layer records its pid
//! and log (every request line, with the running count and megabytes) under
//! `run/file-server/`, restarts it when it died and stops it at `lab down`.
//! What it serves and where is recorded beside the pid: a different root or
//! address means stopping the old server before starting the new one.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Ensured, Health, Process};
use crate::{
    current::Current,
    graph::{StageId, StageKind},
    lab::Lab,
    store::Store,
    tools::{self, serve::ServeArgs},
};

/// The run-state folder's name.
pub const NAME: &str = "file-server";

/// Where edgelab-serve publishes its counters (host/src/handler.rs
/// `COUNTERS_PATH`; xtask does not link the host crate).
pub const COUNTERS_PATH: &str = "/.edgelab/counters";

/// The counters edgelab-serve serves as JSON, as far as the lab reads them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub bytes_sent: u64,
    pub started_at: String,
    pub rejected: u64,
    /// Per client IP address.
    #[serde(default)]
    pub clients: BTreeMap<IpAddr, ClientTotals>,
}

/// One client's share of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClientTotals {
    pub requests: u64,
    pub bytes_sent: u64,
}

impl Counters {
    /// `client`'s totals (zero when it never asked).
    pub fn client(&self, client: IpAddr) -> ClientTotals {
        self.clients.get(&client).copied().unwrap_or_default()
    }
}

impl ClientTotals {
    /// What was counted after `earlier` (a server restart in between counts
    /// from zero).
    pub fn since(&self, earlier: &ClientTotals) -> ClientTotals {
        match self.requests >= earlier.requests && self.bytes_sent >= earlier.bytes_sent {
            true => ClientTotals {
                requests: self.requests - earlier.requests,
                bytes_sent: self.bytes_sent - earlier.bytes_sent,
            },
            false => *self,
        }
    }
}

/// Where the file server listens, from lab.kdl (`file-server address= port=`).
pub fn listen_address(lab: &Lab) -> SocketAddr {
    SocketAddr::new(lab.file_server.address, lab.file_server.port)
}

/// The folder `lab up` serves: the current `publish served` artifact (the
/// one `lab plan` calls fresh; a promotion makes another one current).
pub fn served_root(lab: &Lab, store: &Store) -> anyhow::Result<PathBuf> {
    served_root_of(store, &Current::of(lab, store)?)
}

/// The current publish artifact's folder as `current` has it (`lab watch`
/// serves its upgrade graph's publish).
pub fn served_root_of(store: &Store, current: &Current) -> anyhow::Result<PathBuf> {
    let manifest = current.manifest(store, &StageId::new(StageKind::Publish, "served"))?;
    Ok(store.artifact_out(&manifest.key))
}

/// Makes sure edgelab-serve is serving `root` on `listen`: starts it,
/// restarts it when it died, and replaces one serving something else.
pub fn ensure_serving(store: &Store, root: &Path, listen: SocketAddr) -> anyhow::Result<Ensured> {
    let root = std::fs::canonicalize(root).with_context(|| format!("cannot serve {}", root.display()))?;
    let run_dir = store.run_dir(NAME)?;
    let record_path = run_dir.join("serving");
    // The folder's inode too: an artifact replaced under the same key (a
    // repair) is a new folder at the same path, and the server holds the
    // old one open.
    let inode = std::fs::metadata(&root).map(|meta| std::os::unix::fs::MetadataExt::ino(&meta)).unwrap_or(0);
    let record = format!("root {} (inode {inode})\nlisten {listen}\n", root.display());
    if std::fs::read_to_string(&record_path).ok().as_deref() != Some(record.as_str()) {
        super::stop_process(store, NAME)?;
        crate::store::write_atomic(&record_path, record.as_bytes())
            .with_context(|| format!("writing {}", record_path.display()))?;
    }
    let binary = tools::serve::binary()?;
    let args = ServeArgs { root, listen, quiet: false, log: None };
    let start = |log: &Path| tools::serve::spawn(&binary, &args, log);
    let process = Process {
        name: NAME,
        listen,
        health: Health::Http(COUNTERS_PATH),
        start: &start,
        ready_timeout: Duration::from_secs(20),
    };
    super::ensure_process(store, &process)
}

/// Stops the file server; `Ok(false)` when it was not running.
pub fn stop(store: &Store) -> anyhow::Result<bool> {
    Ok(super::stop_process(store, NAME)?.is_some())
}

/// `running (pid N) on ADDR: R requests, X MB sent` or `stopped`.
pub fn status(lab: &Lab, store: &Store) -> String {
    let Some(pid) = super::running_pid(store, NAME) else {
        return "stopped".into();
    };
    let listen = std::fs::read_to_string(store.run_dir(NAME).map(|dir| dir.join("serving")).unwrap_or_default())
        .ok()
        .and_then(|record| record.lines().find_map(|line| line.strip_prefix("listen ")?.parse().ok()))
        .unwrap_or_else(|| listen_address(lab));
    match counters(super::connect_address(listen)) {
        Ok(counters) => format!(
            "running (pid {pid}) on {listen}: {} requests, {:.3} MB sent",
            counters.requests,
            counters.bytes_sent as f64 / 1e6
        ),
        Err(err) => format!("running (pid {pid}) on {listen}, counters unavailable: {err:#}"),
    }
}

/// Reads the counters of the file server at `endpoint`.
pub fn counters(endpoint: SocketAddr) -> anyhow::Result<Counters> {
    let url = format!("http://{endpoint}{COUNTERS_PATH}");
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
    let response = agent.get(&url).call().with_context(|| format!("GET {url}"))?;
    response.into_json().with_context(|| format!("reading the counters at {url}"))
}
