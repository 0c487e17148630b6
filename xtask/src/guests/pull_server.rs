//! A counting file server for the length of one install: the lab's file
//! server code (the `host/` crate) run in-process on 127.0.0.1 and a free
//! port, so the installer pulls over real HTTP and the counts of exactly
//! that install (requests, bytes) end up in the install artifact.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    sync::mpsc,
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use edgelab_host::{Config, Server, Summary};

/// A running server; `finish` stops it and returns its counts.
pub struct PullServer {
    /// `http://127.0.0.1:PORT/`.
    pub base_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Summary>>,
}

/// Serves `root` read-only, logging requests to `log`.
pub fn start(root: &Path, log: &Path) -> anyhow::Result<PullServer> {
    let config = Config {
        root: root.to_path_buf(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        quiet: false,
        log: Some(log.to_path_buf()),
        max_connections: 256,
        idle_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(10),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(async move {
            let server = match Server::bind(config).await {
                Ok(server) => server,
                Err(err) => {
                    addr_tx.send(Err(err.to_string())).ok();
                    return Summary { counters: empty_counters(), uptime: Duration::ZERO };
                }
            };
            addr_tx.send(Ok(server.local_addr())).ok();
            server
                .run(async move {
                    stop_rx.await.ok();
                })
                .await
        })
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .context("starting the install's file server")?
        .map_err(|err| anyhow::anyhow!("starting the install's file server: {err}"))?;
    Ok(PullServer { base_url: format!("http://{addr}/"), stop: Some(stop_tx), thread: Some(thread) })
}

impl PullServer {
    /// Stops the server and returns what it served.
    pub fn finish(mut self) -> Summary {
        self.stop_and_join().unwrap_or(Summary { counters: empty_counters(), uptime: Duration::ZERO })
    }

    fn stop_and_join(&mut self) -> Option<Summary> {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        self.thread.take().and_then(|thread| thread.join().ok())
    }
}

impl Drop for PullServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn empty_counters() -> edgelab_host::CountersSnapshot {
    edgelab_host::CountersSnapshot {
        requests: 0,
        bytes_sent: 0,
        started_at: String::new(),
        clients: Default::default(),
        rejected: 0,
        refused_connections: 0,
    }
}
