//! Services: what the lab leaves running on the host (the registry, the
//! file server). This file is the small supervision layer they share: a
//! service is started when it is not running, its pid and log live under
//! `Store::run_dir(NAME)`, it is health-checked over TCP or HTTP, restarted
//! when it died, and stopped by `lab down`. A port held by some other program
//! is reported as such instead of starting a service that cannot listen.
//!
//! Processes themselves are started by the typed wrappers in `tools/`; this
//! layer only records, probes and signals them.

pub mod file_server;
pub mod registry;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{lab::Lab, store::Store, tools::process};

/// A service the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// The lab's container registry.
    Registry,
    /// The counting file server serving the lab's OSTree content.
    FileServer,
}

/// What `ensure` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    AlreadyRunning {
        pid: u32,
    },
    Started {
        pid: u32,
    },
    /// It had died or stopped answering (`why`), and was started again.
    Restarted {
        pid: u32,
        why: String,
    },
}

/// How to tell a running service is ready.
#[derive(Debug, Clone, Copy)]
pub enum Health<'a> {
    /// A TCP connection is accepted.
    Tcp,
    /// An HTTP GET of this path gets any HTTP answer.
    Http(&'a str),
}

/// One supervised local process.
pub struct Process<'a> {
    /// The run-state folder's name (`registry`), also used in messages.
    pub name: &'a str,
    /// Where it listens.
    pub listen: SocketAddr,
    pub health: Health<'a>,
    /// Starts it with output to the given log file (a `tools/` wrapper).
    pub start: &'a dyn Fn(&Path) -> anyhow::Result<Child>,
    /// How long it may take to answer after starting.
    pub ready_timeout: Duration,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::Registry, Service::FileServer];

    pub fn name(self) -> &'static str {
        match self {
            Service::Registry => "registry",
            Service::FileServer => "file-server",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Ensured {
    pub fn pid(&self) -> u32 {
        match self {
            Ensured::AlreadyRunning { pid } | Ensured::Started { pid } | Ensured::Restarted { pid, .. } => *pid,
        }
    }
}

/// Makes sure `service` is up for `lab`: starts it, or restarts it if it died.
/// In the local world with guests the service runs inside the lab's network
/// namespace (brought up first), bound to the lab host's address there.
/// The programs the lab's services run (for the prereqs stage): the
/// registry's, when the lab has container apps, and cargo, which builds the
/// file server, when it has images.
pub fn programs(lab: &Lab) -> Vec<&'static str> {
    let mut programs = Vec::new();
    if !lab.containers.is_empty() {
        programs.extend(registry::programs(lab));
    }
    if !lab.images.is_empty() {
        programs.push("cargo");
    }
    programs
}

pub fn ensure(lab: &Lab, store: &Store, service: Service) -> anyhow::Result<Ensured> {
    match service {
        Service::Registry => crate::guests::netns::in_lab(lab, store, || registry::ensure(lab, store))
            .and_then(|ensured| ensured)
            .with_context(|| format!("starting the lab {service}")),
        Service::FileServer => {
            let root = file_server::served_root(lab, store).with_context(|| format!("starting the lab {service}"))?;
            ensure_file_server_at(lab, store, &root)
        }
    }
}

/// The lab file server serving `root` (a publish artifact's folder), in
/// the lab's network.
pub fn ensure_file_server_at(lab: &Lab, store: &Store, root: &std::path::Path) -> anyhow::Result<Ensured> {
    crate::guests::netns::in_lab(lab, store, || {
        file_server::ensure_serving(store, root, file_server::listen_address(lab))
    })
    .and_then(|ensured| ensured)
    .with_context(|| format!("starting the lab {}", Service::FileServer))
}

/// Stops `service`; `Ok(false)` when it was not running.
pub fn stop(lab: &Lab, store: &Store, service: Service) -> anyhow::Result<bool> {
    match service {
        Service::Registry => registry::stop(lab, store),
        Service::FileServer => file_server::stop(store),
    }
    .with_context(|| format!("stopping the lab {service}"))
}

/// One line per service for `lab status`.
pub fn status(lab: &Lab, store: &Store) -> Vec<String> {
    crate::guests::netns::in_lab_if_up(lab, || status_here(lab, store))
        .unwrap_or_else(|err| vec![format!("services: {err:#}")])
}

fn status_here(lab: &Lab, store: &Store) -> Vec<String> {
    Service::ALL
        .iter()
        .map(|service| match service {
            Service::Registry => format!("{service}: {}", registry::status(lab, store)),
            Service::FileServer => format!("{service}: {}", file_server::status(lab, store)),
        })
        .collect()
}

/// Starts `process` unless it is running and healthy; restarts it when it died.
pub fn ensure_process(store: &Store, process: &Process) -> anyhow::Result<Ensured> {
    let run_dir = store.run_dir(process.name)?;
    let why_restart = match read_pid(&run_dir) {
        Some(record) if record.is_alive() => {
            if wait_healthy(process, Duration::from_secs(2), None)? {
                return Ok(Ensured::AlreadyRunning { pid: record.pid });
            }
            // Alive but not answering: replace it rather than wait forever.
            process::stop(record.pid, Duration::from_secs(5));
            Some(format!("pid {} stopped answering on {}", record.pid, process.listen))
        }
        Some(record) => Some(format!("pid {} had exited", record.pid)),
        None => None,
    };
    let log = run_dir.join(format!("{}.log", process.name));
    // An edgelab killed between starting the service and recording its pid
    // left it running unrecorded; its output still goes to our log.
    let why_restart = match (why_restart, orphan_writing(&log)) {
        (why, None) => why,
        (_, Some(pid)) => {
            process::stop(pid, Duration::from_secs(5));
            Some(format!("pid {pid} was running unrecorded (an earlier edgelab was stopped while starting it)"))
        }
    };
    check_port_free(process)?;
    let mut child = (process.start)(&log)?;
    let pid = child.id();
    write_pid(&run_dir, pid)?;
    if !wait_healthy(process, process.ready_timeout, Some((&mut child, &log)))? {
        process::stop(pid, Duration::from_secs(5));
        bail!(
            "{} (pid {pid}) did not answer on {} within {:?}{}",
            process.name,
            process.listen,
            process.ready_timeout,
            log_tail(&log)
        );
    }
    // Reap it when it exits, so a dead child is not left a zombie that still
    // looks alive to `kill(pid, 0)` in a long-running process (tests).
    std::thread::spawn(move || child.wait());
    Ok(match why_restart {
        Some(why) => Ensured::Restarted { pid, why },
        None => Ensured::Started { pid },
    })
}

/// Stops the process recorded under `name`: SIGTERM, then SIGKILL after 5 s.
pub fn stop_process(store: &Store, name: &str) -> anyhow::Result<Option<u32>> {
    let run_dir = store.run_dir(name)?;
    let stopped = match read_pid(&run_dir) {
        Some(record) if record.is_alive() => {
            process::stop(record.pid, Duration::from_secs(5));
            Some(record.pid)
        }
        _ => None,
    };
    std::fs::remove_file(run_dir.join("pid")).ok();
    Ok(stopped)
}

/// The pid of the live process recorded under `name`.
pub fn running_pid(store: &Store, name: &str) -> Option<u32> {
    let run_dir = store.run_dir(name).ok()?;
    read_pid(&run_dir).filter(PidRecord::is_alive).map(|record| record.pid)
}

/// The address a client on this host connects to for `listen` (loopback
/// for a wildcard address).
pub fn connect_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip().is_unspecified() {
        true => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port()),
        false => listen,
    }
}

/// A pid with its start time, so a recycled pid is not mistaken for ours.
#[derive(Debug, Clone, Copy)]
struct PidRecord {
    pid: u32,
    start_time: u64,
}

impl PidRecord {
    fn is_alive(&self) -> bool {
        process::proc_stat(self.pid).is_some_and(|stat| stat.is_live() && stat.start_time == self.start_time)
    }
}

fn read_pid(run_dir: &Path) -> Option<PidRecord> {
    let text = std::fs::read_to_string(run_dir.join("pid")).ok()?;
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start_time = fields.next()?.parse().ok()?;
    Some(PidRecord { pid, start_time })
}

fn write_pid(run_dir: &Path, pid: u32) -> anyhow::Result<()> {
    let start_time = process::proc_stat(pid).map(|stat| stat.start_time).unwrap_or(0);
    let path = run_dir.join("pid");
    crate::store::write_atomic(&path, format!("{pid} {start_time}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A live process other than this one whose standard output is `log`: a
/// service edgelab started, whatever became of its pid record.
fn orphan_writing(log: &Path) -> Option<u32> {
    let log = std::fs::canonicalize(log).ok()?;
    process::live_others(|proc_dir| std::fs::read_link(proc_dir.join("fd/1")).is_ok_and(|stdout| stdout == log))
        .first()
        .copied()
}

/// Fails when something else listens on the service's address. A process
/// of ours that just died may still hold it for a moment: a multithreaded
/// one (the registry) shows as a zombie once its main thread is gone,
/// before its other threads have exited and its sockets closed.
fn check_port_free(process: &Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut bound = TcpListener::bind(process.listen);
    while matches!(&bound, Err(err) if err.kind() == std::io::ErrorKind::AddrInUse) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        bound = TcpListener::bind(process.listen);
    }
    match bound {
        Ok(_listener) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "cannot start the {name}: {listen} is already in use by another program (not edgelab's {name}); \
             stop it (`ss -ltnp 'sport = :{port}'` shows which) or change the port in lab.kdl",
            name = process.name,
            listen = process.listen,
            port = process.listen.port()
        ),
        Err(err) => bail!("cannot start the {}: cannot listen on {}: {err}", process.name, process.listen),
    }
}

/// Polls the health check until it passes or `timeout` ends; fails early
/// with the log's tail when the child exits.
fn wait_healthy(process: &Process, timeout: Duration, mut child: Option<(&mut Child, &Path)>) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if healthy(process) {
            return Ok(true);
        }
        if let Some((child, log)) = child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited at start ({status}){}", process.name, log_tail(log));
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn healthy(process: &Process) -> bool {
    let address = connect_address(process.listen);
    match process.health {
        Health::Tcp => TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok(),
        Health::Http(path) => {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
            match agent.get(&format!("http://{address}{path}")).call() {
                Ok(_) | Err(ureq::Error::Status(..)) => true,
                Err(ureq::Error::Transport(_)) => false,
            }
        }
    }
}

pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(10);
    format!("; last lines of {}:\n  {}", log.display(), lines[start..].join("\n  "))
}
