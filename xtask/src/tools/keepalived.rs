//! keepalived's own configuration check (`keepalived -t -f FILE`, Debian's
//! 2.2 has it as `--config-test`). keepalived rejects a VRRP instance on an
//! interface the machine does not have, and the guest's NIC is not the
//! host's; so the check runs in a private network namespace (`unshare -n`,
//! or `-rn` without root) that has an interface of that name.

use std::path::Path;

use super::{Cmd, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[Program {
    name: "keepalived",
    debian: Some("keepalived"),
    rhel: Some("keepalived"),
    pip: None,
    version_args: &["--version"],
}];

/// Checks `config` as a guest whose VRRP interface is `interface` would.
pub fn config_test(config: &Path, interface: &str) -> anyhow::Result<()> {
    for program in ["keepalived", "unshare", "ip"] {
        super::require(program)?;
    }
    // A veth pair: dummy interfaces need a kernel module containers may lack.
    let script = r#"ip link add "$1" type veth peer name edgelab-peer && exec keepalived --config-test -f "$2""#;
    // Root needs only the network namespace; others map themselves to root
    // in a user namespace too (which a chrooted process may not create).
    let flags = if super::apt::is_root() { "-n" } else { "-rn" };
    Cmd::new("unshare").args([flags, "sh", "-c", script, "sh", interface]).arg(config).run()?;
    Ok(())
}
