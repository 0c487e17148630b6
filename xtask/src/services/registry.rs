//! The lab registry: where pushes go and guests pull the app from.
//!
//! Local world: the distribution registry binary (Debian `docker-registry`)
//! run by the supervision layer with a config the lab generates. RHEL world:
//! `registry:2` under podman, as a systemd unit. Either way its data lives in
//! `run/registry/data` in the store and survives restarts and `lab down`.
//! Clients are told it speaks plain HTTP by one registries.conf.d drop-in,
//! rewritten only when its content changes.
//!
//! Also the registry's HTTP API as the stages use it: manifest digests (to
//! check a push is still there) and copying a manifest to a new tag.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

use super::{Ensured, Health, Process};
use crate::{
    lab::{Auto, Lab},
    store::Store,
    tools,
};

/// Overrides the folder of the insecure-registry drop-in (tests).
pub const REGISTRIES_CONF_D_ENV: &str = "EDGELAB_REGISTRIES_CONF_D";
/// Overrides where the RHEL world's unit is written (tests).
pub const UNIT_DIR_ENV: &str = "EDGELAB_SYSTEMD_UNIT_DIR";
/// The drop-in's file name.
pub const DROPIN_NAME: &str = "edgelab-registry.conf";
/// The RHEL world's unit.
pub const UNIT_NAME: &str = "edgelab-registry.service";

/// Every manifest type a push can produce, for `Accept`.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Where the registry listens: the lab's address, or every interface when
/// it is `auto` (as the original demo published port 5000).
pub fn listen_address(lab: &Lab) -> SocketAddr {
    let ip = match lab.registry.address {
        Auto::Given(ip) => ip,
        Auto::Auto => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, lab.registry.port)
}

/// Where edgelab on this host reaches the registry.
pub fn endpoint(lab: &Lab) -> SocketAddr {
    super::connect_address(listen_address(lab))
}

/// The address other machines (guests, the user's podman) use: the lab's
/// address, or the host's address on its default route when `auto`.
pub fn public_address(lab: &Lab) -> SocketAddr {
    let ip = match lab.registry.address {
        Auto::Given(ip) => ip,
        Auto::Auto => host_address().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    SocketAddr::new(ip, lab.registry.port)
}

/// The programs the registry runs in the lab's world.
pub fn programs(lab: &Lab) -> Vec<&'static str> {
    crate::world::registry(lab).programs().to_vec()
}

/// Starts the registry for `lab` unless it runs, and writes the insecure
/// drop-in when the lab says so.
pub fn ensure(lab: &Lab, store: &Store) -> anyhow::Result<Ensured> {
    if lab.registry.insecure {
        write_insecure_dropin(&registries_conf_dir(), public_address(lab))?;
    }
    let run_dir = store.run_dir("registry")?;
    let data = run_dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    crate::world::registry(lab).ensure(lab, store, &run_dir, &data)
}

/// Stops the registry; its data stays. `Ok(false)` when it was not running.
pub fn stop(lab: &Lab, store: &Store) -> anyhow::Result<bool> {
    crate::world::registry(lab).stop(store)
}

/// `running (pid N) on ADDR` or `stopped`, for `lab status`.
pub fn status(lab: &Lab, store: &Store) -> String {
    let running = crate::world::registry(lab).running(store);
    match running {
        Some(what) => format!("running ({what}) on {}", listen_address(lab)),
        None => "stopped".into(),
    }
}

/// The systemd unit running `registry:2` under podman (RHEL world).
pub fn render_unit(podman: &Path, listen: SocketAddr, data: &Path) -> String {
    format!(
        "# Written by edgelab: the lab registry, registry:2 under podman.\n\
         [Unit]\n\
         Description=edgelab lab registry (registry:2 under podman)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         ExecStop={} stop --time 10 edgelab-registry\n\
         Restart=always\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        tools::podman::registry_container_command(podman, listen, data),
        podman.display()
    )
}

/// Writes `DIR/edgelab-registry.conf` marking `location` insecure, only when
/// its content differs; `Ok(true)` when it wrote. Never touches
/// registries.conf itself.
pub fn write_insecure_dropin(dir: &Path, location: SocketAddr) -> anyhow::Result<bool> {
    let path = dir.join(DROPIN_NAME);
    let content = format!(
        "# Written by edgelab: the lab registry speaks plain HTTP.\n\
         [[registry]]\n\
         location = \"{location}\"\n\
         insecure = true\n"
    );
    if std::fs::read_to_string(&path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::store::write_atomic(&path, content.as_bytes()))
        .with_context(|| format!("writing the insecure-registry drop-in {} (needs root for /etc)", path.display()))?;
    Ok(true)
}

/// The drop-in folder: `$EDGELAB_REGISTRIES_CONF_D`, else the system's for
/// root and the user's for rootless podman.
pub fn registries_conf_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(REGISTRIES_CONF_D_ENV) {
        return PathBuf::from(dir);
    }
    match (tools::apt::is_root(), std::env::var_os("HOME")) {
        (false, Some(home)) => PathBuf::from(home).join(".config/containers/registries.conf.d"),
        _ => PathBuf::from("/etc/containers/registries.conf.d"),
    }
}

/// Fails with a clear message unless the registry at `endpoint` answers `/v2/`.
pub fn check_reachable(endpoint: SocketAddr) -> anyhow::Result<()> {
    match agent().get(&format!("http://{endpoint}/v2/")).call() {
        Ok(_) | Err(ureq::Error::Status(..)) => Ok(()),
        Err(err) => Err(unreachable(endpoint, err)),
    }
}

/// The digest `reference` (a tag or digest) resolves to in `repository`;
/// `None` when the registry does not have it.
pub fn manifest_digest(endpoint: SocketAddr, repository: &str, reference: &str) -> anyhow::Result<Option<String>> {
    let url = format!("http://{endpoint}/v2/{repository}/manifests/{reference}");
    match agent().head(&url).set("Accept", MANIFEST_TYPES).call() {
        Ok(response) => match response.header("Docker-Content-Digest") {
            Some(digest) => Ok(Some(digest.to_string())),
            None => bail!("the registry at {endpoint} answered HEAD {url} without a Docker-Content-Digest header"),
        },
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(ureq::Error::Status(code, _)) => bail!("the registry at {endpoint} answered HEAD {url} with {code}"),
        Err(err) => Err(unreachable(endpoint, err)),
    }
}

/// Points `repository:tag` at the manifest `digest` (GET it, PUT it under the tag).
pub fn tag_manifest(endpoint: SocketAddr, repository: &str, digest: &str, tag: &str) -> anyhow::Result<()> {
    let get_url = format!("http://{endpoint}/v2/{repository}/manifests/{digest}");
    let response = match agent().get(&get_url).set("Accept", MANIFEST_TYPES).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(404, _)) => {
            bail!("the registry at {endpoint} has no manifest {digest} in `{repository}`: push it first")
        }
        Err(ureq::Error::Status(code, _)) => bail!("GET {get_url}: the registry answered {code}"),
        Err(err) => return Err(unreachable(endpoint, err)),
    };
    let media_type =
        response.header("Content-Type").unwrap_or("application/vnd.oci.image.manifest.v1+json").to_string();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).with_context(|| format!("reading {get_url}"))?;
    let put_url = format!("http://{endpoint}/v2/{repository}/manifests/{tag}");
    match agent().put(&put_url).set("Content-Type", &media_type).send_bytes(&body) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, response)) => {
            let text = response.into_string().unwrap_or_default();
            bail!("PUT {put_url}: the registry answered {code}: {}", text.trim())
        }
        Err(err) => Err(unreachable(endpoint, err)),
    }
}

/// The local world's registry: the distribution registry binary, run by the
/// supervision layer with a config the lab generates.
pub struct LocalRegistry;

impl crate::world::Registry for LocalRegistry {
    fn programs(&self) -> &'static [&'static str] {
        &["docker-registry"]
    }

    fn ensure(&self, lab: &Lab, store: &Store, run_dir: &Path, data: &Path) -> anyhow::Result<Ensured> {
        ensure_local(lab, store, run_dir, data)
    }

    fn stop(&self, store: &Store) -> anyhow::Result<bool> {
        Ok(super::stop_process(store, "registry")?.is_some())
    }

    fn running(&self, store: &Store) -> Option<String> {
        super::running_pid(store, "registry").map(|pid| format!("pid {pid}"))
    }
}

/// The RHEL world's registry: `registry:2` under podman as a systemd unit.
pub struct PodmanRegistry;

impl crate::world::Registry for PodmanRegistry {
    fn programs(&self) -> &'static [&'static str] {
        &["podman", "systemctl"]
    }

    fn ensure(&self, lab: &Lab, _store: &Store, _run_dir: &Path, data: &Path) -> anyhow::Result<Ensured> {
        ensure_unit(lab, data)
    }

    fn stop(&self, _store: &Store) -> anyhow::Result<bool> {
        let active = tools::systemctl::is_active(UNIT_NAME);
        if active {
            tools::systemctl::stop(UNIT_NAME)?;
        }
        Ok(active)
    }

    fn running(&self, _store: &Store) -> Option<String> {
        tools::systemctl::is_active(UNIT_NAME).then(|| format!("unit {UNIT_NAME}"))
    }
}

fn ensure_local(lab: &Lab, store: &Store, run_dir: &Path, data: &Path) -> anyhow::Result<Ensured> {
    let listen = listen_address(lab);
    let config = run_dir.join("config.yml");
    let content = tools::docker_registry::render_config(data, listen);
    if std::fs::read_to_string(&config).ok().as_deref() != Some(content.as_str()) {
        // A changed address or port only takes effect on a fresh start.
        super::stop_process(store, "registry")?;
        crate::store::write_atomic(&config, content.as_bytes())
            .with_context(|| format!("writing {}", config.display()))?;
    }
    let start = |log: &Path| tools::docker_registry::spawn(&config, log);
    let process = Process {
        name: "registry",
        listen,
        health: Health::Http("/v2/"),
        start: &start,
        ready_timeout: Duration::from_secs(20),
    };
    super::ensure_process(store, &process)
}

fn ensure_unit(lab: &Lab, data: &Path) -> anyhow::Result<Ensured> {
    let podman = tools::require("podman")?;
    let dir = std::env::var_os(UNIT_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| "/etc/systemd/system".into());
    let path = dir.join(UNIT_NAME);
    let content = render_unit(&podman, listen_address(lab), data);
    let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str());
    if changed {
        crate::store::write_atomic(&path, content.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        tools::systemctl::daemon_reload()?;
    }
    let was_active = tools::systemctl::is_active(UNIT_NAME);
    if changed && was_active {
        tools::systemctl::stop(UNIT_NAME)?;
    }
    if changed || !was_active {
        tools::systemctl::start(UNIT_NAME)?;
    }
    let endpoint = endpoint(lab);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while check_reachable(endpoint).is_err() {
        if std::time::Instant::now() > deadline {
            check_reachable(endpoint).with_context(|| format!("{UNIT_NAME} started but does not answer"))?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // systemd owns the process; there is no pid of ours to report.
    Ok(match was_active {
        true => Ensured::AlreadyRunning { pid: 0 },
        false => Ensured::Started { pid: 0 },
    })
}

/// The host's address on its default route. Connecting a UDP socket only
/// selects a route; no packet is sent.
fn host_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build()
}

fn unreachable(endpoint: SocketAddr, err: ureq::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "the lab registry at http://{endpoint} is unreachable ({}); `cargo xtask lab up` starts it",
        err.to_string().trim()
    )
}
