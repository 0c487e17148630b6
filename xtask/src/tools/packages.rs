//! Which package provides each program edgelab runs, on Debian and on RHEL,
//! and how to ask a program its version. One table, used for install hints and
//! by the `prereqs` stage.

/// (program, Debian package, RHEL package, version arguments)
const PROGRAMS: &[(&str, &str, &str, &[&str])] = &[
    ("podman", "podman", "podman", &["--version"]),
    ("buildah", "buildah", "buildah", &["--version"]),
    ("docker-registry", "docker-registry", "-", &["--version"]),
    ("ostree", "ostree", "ostree", &["--version"]),
    ("xorriso", "xorriso", "xorriso", &["--version"]),
    ("mtools", "mtools", "mtools", &["--version"]),
    ("mcopy", "mtools", "mtools", &["--version"]),
    ("mtype", "mtools", "mtools", &["--version"]),
    ("mformat", "mtools", "mtools", &["--version"]),
    ("implantisomd5", "isomd5sum", "isomd5sum", &[]),
    ("qemu-system-x86_64", "qemu-system-x86", "qemu-kvm", &["--version"]),
    ("qemu-img", "qemu-utils", "qemu-img", &["--version"]),
    ("keepalived", "keepalived", "keepalived", &["--version"]),
    ("mmdebstrap", "mmdebstrap", "-", &["--version"]),
    ("chroot", "coreutils", "coreutils", &["--version"]),
    ("unshare", "util-linux", "util-linux", &["--version"]),
    ("mkfs.ext4", "e2fsprogs", "e2fsprogs", &["-V"]),
    ("debugfs", "e2fsprogs", "e2fsprogs", &["-V"]),
    ("e2fsck", "e2fsprogs", "e2fsprogs", &["-V"]),
    ("chattr", "e2fsprogs", "e2fsprogs", &["-V"]),
    ("checkisomd5", "isomd5sum", "isomd5sum", &[]),
    ("systemctl", "systemd", "systemd", &["--version"]),
    ("ip", "iproute2", "iproute", &["-V"]),
    ("systemd-analyze", "systemd", "systemd", &["--version"]),
    ("shellcheck", "shellcheck", "ShellCheck", &["--version"]),
    ("figlet", "figlet", "figlet", &["-v"]),
    ("cowsay", "cowsay", "cowsay", &[]),
    ("dot", "graphviz", "graphviz", &["-V"]),
    ("curl", "curl", "curl", &["--version"]),
    ("virt-install", "virtinst", "virt-install", &["--version"]),
    ("virsh", "libvirt-clients", "libvirt-client", &["--version"]),
    ("dnf", "-", "dnf", &["--version"]),
    ("usermod", "passwd", "shadow-utils", &[]),
    ("firewall-cmd", "firewalld", "firewalld", &["--version"]),
    ("nmcli", "network-manager", "NetworkManager", &["--version"]),
    ("composer-cli", "-", "weldr-client", &["--version"]),
    ("ksvalidator", "-", "pykickstart", &[]),
    ("bash", "bash", "bash", &["--version"]),
    ("wrk", "wrk", "-", &["-v"]),
    ("nginx", "nginx-light", "nginx", &["-v"]),
    ("go", "golang-go", "golang", &["version"]),
    ("systemctl", "systemd", "systemd", &["--version"]),
    ("cargo", "cargo", "cargo", &["--version"]),
    ("python3", "python3", "python3", &["--version"]),
];

/// The Debian package providing `program`, if there is one.
pub fn debian_package(program: &str) -> Option<&'static str> {
    PROGRAMS.iter().find(|row| row.0 == program).map(|row| row.1).filter(|name| *name != "-")
}

/// The RHEL package providing `program`, if there is one.
pub fn rhel_package(program: &str) -> Option<&'static str> {
    PROGRAMS.iter().find(|row| row.0 == program).map(|row| row.2).filter(|name| *name != "-")
}

/// Arguments that print `program`'s version, when it has any.
pub fn version_args(program: &str) -> Option<&'static [&'static str]> {
    PROGRAMS.iter().find(|row| row.0 == program).map(|row| row.3).filter(|args| !args.is_empty())
}

/// "`xorriso` not found: apt-get install xorriso (Debian) or dnf install xorriso (RHEL)"
pub fn missing_message(program: &str) -> String {
    match (debian_package(program), rhel_package(program)) {
        (Some(deb), Some(rpm)) => {
            format!("`{program}` not found: apt-get install {deb} (Debian) or dnf install {rpm} (RHEL)")
        }
        (Some(deb), None) => format!("`{program}` not found: apt-get install {deb} (Debian)"),
        (None, Some(rpm)) => format!("`{program}` not found: dnf install {rpm} (RHEL)"),
        (None, None) => format!("`{program}` not found on PATH"),
    }
}
