//! The local lab network: a network namespace the lab creates and owns, a
//! bridge inside it carrying the lab host's address, and a tap per guest.
//!
//! When the lab leaves `host-address` as `auto`, the local world uses the
//! fixed subnet 10.88.0.0/24 (`graph::LOCAL_LAB_SEGMENT`, resolved when the
//! lab is loaded) with the host at 10.88.0.1, guests from .11 and the VIP at
//! .100. These addresses exist only inside the namespace: nothing
//! is routed or bridged to the host's interfaces, so no traffic leaves it.
//! What `up` created is recorded in run state (`network.json`), so `down`
//! removes exactly that, and a crashed run's leftovers are found by name and
//! removed by the next `up`.

use std::{os::fd::AsFd, path::Path};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{
    lab::{Ipv4Cidr, Lab},
    store::Store,
    tools::ip,
};

/// Addresses and names on the lab segment, resolved for the local world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub netns: String,
    pub bridge: String,
    pub host: Ipv4Cidr,
    pub vip: Ipv4Cidr,
    pub guests: Vec<GuestPort>,
}

/// A guest's place on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPort {
    pub guest: String,
    pub address: Ipv4Cidr,
    pub mac: String,
    pub tap: String,
}

/// What `up` created, so `down` (or the next `up` after a crash) removes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub netns: Option<String>,
}

const RECORD: &str = "network.json";

/// The local world's segment for `lab` (pure); `auto` addresses by the
/// core's one set of rules (`world::local_addresses`).
pub fn segment(lab: &Lab) -> Segment {
    let addresses = crate::world::local_addresses(lab);
    let host = addresses.host;
    let guests = lab
        .guests
        .iter()
        .zip(addresses.guests)
        .enumerate()
        .map(|(idx, (guest, addr))| {
            let [_, b, c, d] = addr.octets();
            GuestPort {
                guest: guest.name.clone(),
                address: Ipv4Cidr { addr, prefix: host.prefix },
                mac: format!("52:54:00:{b:02x}:{c:02x}:{d:02x}"),
                tap: format!("edgetap{idx}"),
            }
        })
        .collect();
    Segment {
        netns: lab.network.namespace.clone(),
        bridge: lab.network.bridge.clone(),
        host,
        vip: addresses.vip,
        guests,
    }
}

impl Segment {
    pub fn port(&self, guest: &str) -> Option<&GuestPort> {
        self.guests.iter().find(|port| port.guest == guest)
    }
}

/// Brings the segment up: removes a previous run's leftovers, then creates
/// the namespace, the bridge with the host address, and the taps. Does
/// nothing when everything is already there.
pub fn up(store: &Store, segment: &Segment) -> anyhow::Result<()> {
    if ip::netns_exists(&segment.netns) && !bridge_ready(segment) {
        // Half made (a crash mid-`up`) or left by a crashed run: start over.
        ip::delete_netns(&segment.netns).context("removing a previous run's lab network")?;
    }
    if !ip::netns_exists(&segment.netns) {
        save_record(store, &NetworkRecord { netns: Some(segment.netns.clone()) })?;
        ip::add_netns(&segment.netns)?;
        ip::add_bridge(&segment.netns, &segment.bridge, &segment.host.to_string())?;
    }
    // Guests added to the lab get their taps; running guests keep theirs.
    for port in &segment.guests {
        if !ip::link_exists(&segment.netns, &port.tap) {
            ip::add_tap(&segment.netns, &port.tap, &segment.bridge)?;
        }
    }
    Ok(())
}

/// Whether the namespace, the bridge with the host address and every tap exist.
pub fn is_up(segment: &Segment) -> bool {
    bridge_ready(segment) && segment.guests.iter().all(|port| ip::link_exists(&segment.netns, &port.tap))
}

fn bridge_ready(segment: &Segment) -> bool {
    ip::netns_exists(&segment.netns)
        && ip::addresses(&segment.netns, &segment.bridge)
            .map(|addresses| addresses.contains(&segment.host.to_string()))
            .unwrap_or(false)
}

/// Removes what `up` recorded (the namespace and everything in it).
pub fn down(store: &Store) -> anyhow::Result<Option<String>> {
    let record = load_record(store);
    let Some(netns) = record.netns else {
        return Ok(None);
    };
    if ip::netns_exists(&netns) {
        ip::delete_netns(&netns)?;
    }
    save_record(store, &NetworkRecord::default())?;
    Ok(Some(netns))
}

/// The namespace the lab's services and clients live in: the local world's
/// with guests. `None` (host networking) for the RHEL world and for labs
/// without guests (hand-built labs on loopback in tests).
pub fn lab_netns(lab: &Lab) -> Option<String> {
    let local = crate::world::GuestWorld::of(lab).has_network_namespace();
    (local && !lab.guests.is_empty()).then(|| lab.network.namespace.clone())
}

/// Runs `f` inside the lab's namespace (brought up first when it is not),
/// or here when the lab has none (`lab_netns`).
pub fn in_lab<T: Send>(lab: &Lab, store: &Store, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let Some(netns) = lab_netns(lab) else {
        return Ok(f());
    };
    let segment = segment(lab);
    if !is_up(&segment) {
        up(store, &segment).context("bringing up the lab network")?;
    }
    within(&netns, f)
}

/// Runs `f` inside the lab's namespace when it exists, else here (for
/// read-only looks such as `lab status`).
pub fn in_lab_if_up<T: Send>(lab: &Lab, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    match lab_netns(lab).filter(|netns| ip::netns_exists(netns)) {
        Some(netns) => within(&netns, f),
        None => Ok(f()),
    }
}

/// Runs `f` on a thread that first joined the network namespace `netns`:
/// its sockets, and the processes it starts, live in that namespace.
/// `setns` is a system call, not a process; the calling thread stays where it is.
pub fn within<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let path = Path::new("/run/netns").join(netns);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("opening network namespace {} (is the lab network up?)", path.display()))?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            // Only this thread moves: the namespace is the closure's alone.
            rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                .with_context(|| format!("entering network namespace {netns}"))?;
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn load_record(store: &Store) -> NetworkRecord {
    store.load_state(RECORD).and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

fn save_record(store: &Store, record: &NetworkRecord) -> anyhow::Result<()> {
    store.save_state(RECORD, &serde_json::to_vec_pretty(record)?)?;
    Ok(())
}
