//! nmcli: the RHEL host's bridge the libvirt guests attach to (`host setup`).

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "nmcli",
    debian: Some("network-manager"),
    rhel: Some("NetworkManager"),
    pip: None,
    version_args: &["--version"],
}];

/// `nmcli connection add type bridge ifname NAME con-name NAME`.
pub fn add_bridge_line(bridge: &str) -> String {
    add_bridge_cmd("nmcli", bridge).display()
}

pub fn add_bridge(bridge: &str) -> anyhow::Result<()> {
    add_bridge_cmd(&super::require("nmcli")?.to_string_lossy(), bridge).run().map(drop)
}

/// `nmcli connection add type bridge-slave ifname PORT master BRIDGE`: the
/// host's uplink joins the bridge, so guests share the host's segment.
pub fn add_bridge_port_line(bridge: &str, port: &str) -> String {
    add_port_cmd("nmcli", bridge, port).display()
}

pub fn add_bridge_port(bridge: &str, port: &str) -> anyhow::Result<()> {
    add_port_cmd(&super::require("nmcli")?.to_string_lossy(), bridge, port).run().map(drop)
}

fn add_bridge_cmd(program: &str, bridge: &str) -> Cmd {
    Cmd::new(program).args(["connection", "add", "type", "bridge", "ifname", bridge, "con-name", bridge])
}

fn add_port_cmd(program: &str, bridge: &str, port: &str) -> Cmd {
    Cmd::new(program).args(["connection", "add", "type", "bridge-slave", "ifname", port, "master", bridge])
}
