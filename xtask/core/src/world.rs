//! Which world each of a lab's capabilities runs in, and the addresses that
//! follow from it: the one place that reads a lab's `backends`.
//!
//! A lab picks a backend per capability (`rhel`, `local` or `auto`);
//! `resolve_backends` settles `auto` from what the host has, and the
//! functions here turn the resolved backends into worlds: where images are
//! composed, where the registry runs, what the guests are. Everything else
//! asks the world (the graph its stages' shape, the product crate's
//! `world` module its implementations), never the backend.

use std::net::{IpAddr, Ipv4Addr};

use crate::lab::{Auto, Backend, Ipv4Cidr, Lab};

/// Where images are composed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeWorld {
    /// edgelab's own composer: mmdebstrap and ostree.
    Local,
    /// osbuild-composer through its Weldr API.
    Weldr,
}

/// Where the lab registry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryWorld {
    /// The distribution registry binary, supervised by edgelab.
    Local,
    /// `registry:2` under podman as a systemd unit, as the original demo ran it.
    Podman,
}

/// What the guests are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestWorld {
    /// qemu guests edgelab installs and launches itself, on a segment
    /// inside a network namespace of the lab's own.
    Local,
    /// libvirt domains installed by Anaconda from remastered boot ISOs.
    Libvirt,
}

impl Backend {
    /// Every backend, in the order of `WORDS`.
    pub const ALL: [Backend; 3] = [Backend::Auto, Backend::Rhel, Backend::Local];
    /// Each backend as lab.kdl spells it.
    pub const WORDS: [&'static str; 3] = ["auto", "rhel", "local"];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Rhel => "rhel",
            Backend::Local => "local",
        }
    }
}

/// A backend as a world: an unresolved `auto` counts as local.
fn is_rhel(backend: Backend) -> bool {
    matches!(backend, Backend::Rhel)
}

/// Replaces every `auto` backend with the world the host supports: RHEL when
/// `rhel_available` (osbuild-composer's socket and virt-install are present),
/// local otherwise. The probe itself lives outside the pure core.
pub fn resolve_backends(lab: &Lab, rhel_available: bool) -> Lab {
    let pick = |backend: Backend| match backend {
        Backend::Auto if rhel_available => Backend::Rhel,
        Backend::Auto => Backend::Local,
        pinned => pinned,
    };
    let mut lab = lab.clone();
    let default = pick(lab.backends.default);
    lab.backends.registry = Some(pick(lab.backends.registry.unwrap_or(lab.backends.default)));
    lab.backends.compose = Some(pick(lab.backends.compose.unwrap_or(lab.backends.default)));
    lab.backends.boot_media = Some(pick(lab.backends.boot_media.unwrap_or(lab.backends.default)));
    lab.backends.guests = Some(pick(lab.backends.guests.unwrap_or(lab.backends.default)));
    lab.backends.default = default;
    lab
}

impl ComposeWorld {
    /// The world of a compose stage, by the backend in its key.
    pub fn of_stage(backend: Backend) -> ComposeWorld {
        if is_rhel(backend) { ComposeWorld::Weldr } else { ComposeWorld::Local }
    }

    /// The world the lab's images are composed in.
    pub fn of(lab: &Lab) -> ComposeWorld {
        ComposeWorld::of_stage(lab.backends.for_compose())
    }

    /// The host programs a compose runs (osbuild-composer runs its own).
    pub fn tools(self) -> Vec<&'static str> {
        match self {
            ComposeWorld::Local => vec!["mmdebstrap", "ostree", "chroot", "unshare"],
            ComposeWorld::Weldr => Vec::new(),
        }
    }
}

impl RegistryWorld {
    pub fn of(lab: &Lab) -> RegistryWorld {
        if is_rhel(lab.backends.for_registry()) { RegistryWorld::Podman } else { RegistryWorld::Local }
    }
}

impl GuestWorld {
    pub fn of(lab: &Lab) -> GuestWorld {
        if is_rhel(lab.backends.for_guests()) { GuestWorld::Libvirt } else { GuestWorld::Local }
    }

    /// Local guests' disks are installed by edgelab (an install stage per
    /// guest); libvirt guests boot a remastered ISO (an iso stage per guest).
    pub fn installs_disks(self) -> bool {
        self == GuestWorld::Local
    }

    /// Scenario checks reach libvirt guests over ssh with the lab's own key,
    /// which the kickstart installs; local guests answer on a serial shell.
    pub fn uses_lab_key(self) -> bool {
        self == GuestWorld::Libvirt
    }

    /// Local guests live on a segment inside the lab's network namespace.
    pub fn has_network_namespace(self) -> bool {
        self == GuestWorld::Local
    }

    /// What `host-address "auto"` means: the local world's own segment, or
    /// (libvirt) the host's address on its default route, which the caller
    /// looks up because the pure core cannot.
    pub fn auto_host(self, default_route: Option<Ipv4Cidr>) -> Result<Ipv4Cidr, String> {
        match self {
            GuestWorld::Local => Ok(LOCAL_LAB_SEGMENT),
            GuestWorld::Libvirt => default_route.ok_or_else(|| {
                "`host-address \"auto\"` needs a default route on this host; give `host-address \"A.B.C.D/NN\"` \
                 in lab.kdl"
                    .to_string()
            }),
        }
    }
}

/// The local world's lab segment: it exists only inside the network
/// namespace the lab creates, so it never collides with the host's networks
/// and no traffic to it leaves the machine.
pub const LOCAL_LAB_SEGMENT: Ipv4Cidr = Ipv4Cidr { addr: Ipv4Addr::new(10, 88, 0, 1), prefix: 24 };

/// A lab's addresses with every `auto` settled: the one set of rules the
/// graph, the kickstarts and the lab network read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The host's address on the lab segment, with the segment's prefix.
    pub host: Ipv4Cidr,
    /// `auto`: the segment's `.100`.
    pub vip: Ipv4Cidr,
    /// `auto`: the host's address.
    pub registry: IpAddr,
    /// Each guest's address in lab order; `auto`: the host's address plus
    /// 10, 11, ...
    pub guests: Vec<Ipv4Addr>,
}

/// The lab's addresses in its guests' world (`default_route` is read only
/// for libvirt guests with `host-address "auto"`).
pub fn addresses(lab: &Lab, default_route: Option<Ipv4Cidr>) -> Result<Addresses, String> {
    let host = match lab.network.host_address {
        Auto::Given(cidr) => cidr,
        Auto::Auto => GuestWorld::of(lab).auto_host(default_route)?,
    };
    Ok(addresses_on(lab, host))
}

/// The lab's addresses on its local segment (the lab network namespace's
/// view, whatever the guests' world).
pub fn local_addresses(lab: &Lab) -> Addresses {
    let host = match lab.network.host_address {
        Auto::Given(cidr) => cidr,
        Auto::Auto => LOCAL_LAB_SEGMENT,
    };
    addresses_on(lab, host)
}

fn addresses_on(lab: &Lab, host: Ipv4Cidr) -> Addresses {
    let [a, b, c, _] = host.addr.octets();
    let vip = match lab.network.vip {
        Auto::Given(cidr) => cidr,
        Auto::Auto => Ipv4Cidr { addr: Ipv4Addr::new(a, b, c, 100), prefix: host.prefix },
    };
    let registry = match lab.registry.address {
        Auto::Given(ip) => ip,
        Auto::Auto => IpAddr::V4(host.addr),
    };
    let guests = lab
        .guests
        .iter()
        .enumerate()
        .map(|(index, guest)| match guest.address {
            Auto::Given(addr) => addr,
            Auto::Auto => Ipv4Addr::from(u32::from(host.addr).wrapping_add(10 + index as u32)),
        })
        .collect();
    Addresses { host, vip, registry, guests }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::parse_lab;

    fn lab() -> Lab {
        // The repository's own lab: guests edge-device-1 (address "auto")
        // and edge-device-2, every backend "auto".
        let mut lab = parse_lab(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab.kdl"),
            include_str!("../../../lab.kdl"),
        )
        .unwrap();
        lab.guests[1].address = Auto::Given(Ipv4Addr::new(10, 88, 0, 50));
        lab
    }

    #[test]
    fn auto_backends_follow_the_host() {
        let local = resolve_backends(&lab(), false);
        assert_eq!(GuestWorld::of(&local), GuestWorld::Local);
        assert_eq!(ComposeWorld::of(&local), ComposeWorld::Local);
        assert_eq!(RegistryWorld::of(&local), RegistryWorld::Local);
        let rhel = resolve_backends(&lab(), true);
        assert_eq!(GuestWorld::of(&rhel), GuestWorld::Libvirt);
        assert_eq!(ComposeWorld::of(&rhel), ComposeWorld::Weldr);
        assert_eq!(RegistryWorld::of(&rhel), RegistryWorld::Podman);
        assert!(ComposeWorld::Weldr.tools().is_empty());
    }

    #[test]
    fn auto_addresses_in_each_world() {
        let local = local_addresses(&lab());
        assert_eq!(local.host, LOCAL_LAB_SEGMENT);
        assert_eq!(local.vip.to_string(), "10.88.0.100/24");
        assert_eq!(local.registry.to_string(), "10.88.0.1");
        assert_eq!(local.guests, vec![Ipv4Addr::new(10, 88, 0, 11), Ipv4Addr::new(10, 88, 0, 50)]);
        let rhel = resolve_backends(&lab(), true);
        let route = Ipv4Cidr { addr: Ipv4Addr::new(192, 168, 122, 1), prefix: 24 };
        let libvirt = addresses(&rhel, Some(route)).unwrap();
        assert_eq!(libvirt.vip.to_string(), "192.168.122.100/24");
        assert_eq!(libvirt.guests[0], Ipv4Addr::new(192, 168, 122, 11));
        let err = addresses(&rhel, None).unwrap_err();
        assert!(err.contains("needs a default route"), "{err}");
    }
}
