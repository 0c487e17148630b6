//! iproute2's `ip`, for the one fact about the host the lab may leave `auto`:
//! the address (with its prefix) of the interface the default route uses.
//! `ip route get` is a routing table lookup; it sends no traffic.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use serde_json::Value;

use super::Cmd;
use crate::lab::Ipv4Cidr;

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
