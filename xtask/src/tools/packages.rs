//! Every program edgelab runs, gathered from the wrappers' own `PROGRAMS`
//! declarations: which package provides it on Debian and on RHEL (or on
//! PyPI), and how to ask its version. The prereqs stage installs from here,
//! install hints come from here, and the `tidy` test fails when a wrapper
//! starts a program that no declaration names, so the list cannot drift.

use super::Program;

/// Each wrapper's declarations, in one list.
pub const ALL: &[&[Program]] = &[
    super::apt::PROGRAMS,
    super::bash::PROGRAMS,
    super::cargo::PROGRAMS,
    super::chroot::PROGRAMS,
    super::cowsay::PROGRAMS,
    super::debugfs::PROGRAMS,
    super::dnf::PROGRAMS,
    super::docker_registry::PROGRAMS,
    super::figlet::PROGRAMS,
    super::firewall_cmd::PROGRAMS,
    super::go::PROGRAMS,
    super::graphviz::PROGRAMS,
    super::ip::PROGRAMS,
    super::isomd5::PROGRAMS,
    super::keepalived::PROGRAMS,
    super::ksvalidator::PROGRAMS,
    super::mkfs::PROGRAMS,
    super::mmdebstrap::PROGRAMS,
    super::mtools::PROGRAMS,
    super::nginx::PROGRAMS,
    super::nmcli::PROGRAMS,
    super::ostree::PROGRAMS,
    super::podman::PROGRAMS,
    super::python::PROGRAMS,
    super::qemu::PROGRAMS,
    super::shellcheck::PROGRAMS,
    super::ssh::PROGRAMS,
    super::systemctl::PROGRAMS,
    super::systemd_analyze::PROGRAMS,
    super::usermod::PROGRAMS,
    super::virsh::PROGRAMS,
    super::virt_install::PROGRAMS,
    super::wrk::PROGRAMS,
    super::xorriso::PROGRAMS,
    TEST_ONLY,
];

/// Programs only the tests run themselves, beside those of the wrappers
/// (`cargo xtask test` installs them too).
pub const TEST_ONLY: &[Program] = &[
    Program { name: "curl", debian: Some("curl"), rhel: Some("curl"), pip: None, version_args: &["--version"] },
    Program { name: "chattr", debian: Some("e2fsprogs"), rhel: Some("e2fsprogs"), pip: None, version_args: &[] },
    Program { name: "mmd", debian: Some("mtools"), rhel: Some("mtools"), pip: None, version_args: &[] },
    // The app's httpd is tested under systemd's socket-activation protocol.
    Program {
        name: "systemd-socket-activate",
        debian: Some("systemd"),
        rhel: Some("systemd"),
        pip: None,
        version_args: &["--version"],
    },
    // The ssh channel's test runs a real sshd in a network namespace.
    Program {
        name: "sshd",
        debian: Some("openssh-server"),
        rhel: Some("openssh-server"),
        pip: None,
        version_args: &[],
    },
];

/// The declaration of `program`, if a wrapper makes one.
pub fn find(program: &str) -> Option<&'static Program> {
    ALL.iter().flat_map(|programs| programs.iter()).find(|it| it.name == program)
}

/// Every declared program.
pub fn all() -> impl Iterator<Item = &'static Program> {
    ALL.iter().flat_map(|programs| programs.iter())
}

/// The Debian package providing `program`, if there is one.
pub fn debian_package(program: &str) -> Option<&'static str> {
    find(program).and_then(|it| it.debian)
}

/// The RHEL package providing `program`, if there is one.
pub fn rhel_package(program: &str) -> Option<&'static str> {
    find(program).and_then(|it| it.rhel)
}

/// The PyPI package providing `program`, when no distribution package does.
pub fn pip_package(program: &str) -> Option<&'static str> {
    find(program).and_then(|it| it.pip)
}

/// Arguments that print `program`'s version, when it has any.
pub fn version_args(program: &str) -> Option<&'static [&'static str]> {
    find(program).map(|it| it.version_args).filter(|args| !args.is_empty())
}

/// "`xorriso` not found: apt-get install xorriso (Debian) or dnf install xorriso (RHEL)"
pub fn missing_message(program: &str) -> String {
    let pip = pip_package(program).map(|name| format!("pip install {name} (PyPI)"));
    let deb = debian_package(program).map(|name| format!("apt-get install {name} (Debian)"));
    let rpm = rhel_package(program).map(|name| format!("dnf install {name} (RHEL)"));
    let ways: Vec<String> = [deb, pip, rpm].into_iter().flatten().collect();
    match ways.as_slice() {
        [] => format!("`{program}` not found on PATH"),
        [one] => format!("`{program}` not found: {one}"),
        [rest @ .., last] => format!("`{program}` not found: {} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_program_is_declared_once_with_a_way_to_get_it() {
        let mut seen = std::collections::BTreeSet::new();
        for program in all() {
            assert!(seen.insert(program.name), "{} is declared twice", program.name);
            assert!(
                program.debian.is_some() || program.rhel.is_some() || program.pip.is_some(),
                "{} has no package anywhere",
                program.name
            );
        }
    }

    #[test]
    fn hints_name_every_way() {
        assert_eq!(
            missing_message("xorriso"),
            "`xorriso` not found: apt-get install xorriso (Debian) or dnf install xorriso (RHEL)"
        );
        assert_eq!(
            missing_message("ksvalidator"),
            "`ksvalidator` not found: pip install pykickstart (PyPI) or dnf install pykickstart (RHEL)"
        );
        assert_eq!(missing_message("no-such-program"), "`no-such-program` not found on PATH");
    }
}
