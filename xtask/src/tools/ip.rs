//! iproute2's `ip`, for the one fact about the host the lab may leave `auto`:
//! the address (with its prefix) of the interface the default route uses.
//! `ip route get` is a routing table lookup; it sends no traffic.
//!
//! It also makes the local lab network: network namespaces, a bridge and
//! taps, all inside a named namespace so the lab's traffic never touches the
//! host's own interfaces.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Cmd, Program};
use crate::lab::Ipv4Cidr;

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] =
    &[Program { name: "ip", debian: Some("iproute2"), rhel: Some("iproute"), pip: None, version_args: &["-V"] }];

/// The address and prefix of the default route's interface, as the original
/// demo's `ip route get 8.8.8.8 | awk '{print $7}'` found it.
pub fn default_route_address() -> anyhow::Result<Ipv4Cidr> {
    super::require("ip")?;
    // Any address outside the host's own subnets selects the default route.
    let route = Cmd::new("ip").args(["-j", "-4", "route", "get", "1.1.1.1"]).run()?;
    let route: Value = serde_json::from_str(&route.stdout).context("reading `ip -j route get` output")?;
    let first = route.get(0).context("no default route: set `network { host-address \"A.B.C.D/NN\" }` in lab.kdl")?;
    let (Some(dev), Some(source)) = (first["dev"].as_str(), first["prefsrc"].as_str()) else {
        bail!("the default route names no interface and source address: set `host-address` in lab.kdl");
    };
    let source: Ipv4Addr = source.parse().with_context(|| format!("default route source address `{source}`"))?;
    let addrs = Cmd::new("ip").args(["-j", "-4", "addr", "show", "dev", dev]).run()?;
    let addrs: Value = serde_json::from_str(&addrs.stdout).context("reading `ip -j addr` output")?;
    let prefix = addrs
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().into_iter().flatten())
        .find(|info| info["local"].as_str() == Some(&source.to_string()))
        .and_then(|info| info["prefixlen"].as_u64())
        .with_context(|| format!("interface {dev} does not list the default route's address {source}"))?;
    Ok(Ipv4Cidr { addr: source, prefix: prefix as u8 })
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the named network namespace exists (`ip netns add` made it).
pub fn netns_exists(netns: &str) -> bool {
    Path::new("/run/netns").join(netns).exists()
}

/// Creates the namespace and brings its loopback up.
pub fn add_netns(netns: &str) -> anyhow::Result<()> {
    ip().args(["netns", "add", netns]).run().with_context(|| format!("creating network namespace {netns}"))?;
    in_netns(netns, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes the namespace and with it every interface inside.
pub fn delete_netns(netns: &str) -> anyhow::Result<()> {
    ip().args(["netns", "delete", netns]).run().with_context(|| format!("deleting network namespace {netns}"))?;
    Ok(())
}

/// A command that runs `program` inside `netns`.
pub fn netns_exec(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Cmd {
    Cmd::new("ip").args(["netns", "exec", netns]).arg(program)
}

/// Whether `dev` exists inside `netns`.
pub fn link_exists(netns: &str, dev: &str) -> bool {
    ip().args(["-n", netns, "link", "show", "dev", dev]).timeout(TIMEOUT).run().is_ok()
}

/// Creates a bridge in `netns` holding `address` (`10.88.0.1/24`), up.
pub fn add_bridge(netns: &str, bridge: &str, address: &str) -> anyhow::Result<()> {
    in_netns(netns, &["link", "add", "name", bridge, "type", "bridge"])?;
    in_netns(netns, &["addr", "add", address, "dev", bridge])?;
    in_netns(netns, &["link", "set", bridge, "up"])?;
    Ok(())
}

/// Creates a persistent tap in `netns` attached to `bridge`, up; qemu running
/// in the namespace opens it by name.
pub fn add_tap(netns: &str, tap: &str, bridge: &str) -> anyhow::Result<()> {
    in_netns(netns, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
    in_netns(netns, &["link", "set", tap, "master", bridge])?;
    in_netns(netns, &["link", "set", tap, "up"])?;
    Ok(())
}

/// The IPv4 addresses on `dev` in `netns`, as `10.88.0.1/24`.
pub fn addresses(netns: &str, dev: &str) -> anyhow::Result<Vec<String>> {
    let out = ip().args(["-n", netns, "-o", "-4", "addr", "show", "dev", dev]).timeout(TIMEOUT).run()?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet")?;
            words.next().map(str::to_string)
        })
        .collect())
}

fn in_netns(netns: &str, args: &[&str]) -> anyhow::Result<()> {
    ip().args(["-n", netns]).args(args).timeout(TIMEOUT).run().with_context(|| format!("in namespace {netns}"))?;
    Ok(())
}

fn ip() -> Cmd {
    Cmd::new("ip").timeout(TIMEOUT)
}
