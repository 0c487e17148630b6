//! `[customizations]` read from TOML into the typed model
//! (`blueprint/customizations`), with the checks composer makes before a
//! compose (clean absolute paths, octal modes, partitioning modes,
//! repository sources, keys composer refuses together), each pointing at its
//! TOML line and column.

use std::{collections::BTreeSet, ops::Range};

use serde::Deserialize;
use toml::Spanned;

use super::{customizations::*, is_crypt_hash};
use crate::diag::Diagnostic;

// The raw shape, with spans where validation needs to point. Keys that need
// no check beyond their type deserialize straight into the model.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCustomizations {
    hostname: Option<String>,
    kernel: Option<Kernel>,
    #[serde(default)]
    sshkey: Vec<Spanned<SshKey>>,
    #[serde(default)]
    user: Vec<RawUser>,
    #[serde(default)]
    group: Vec<Spanned<UserGroup>>,
    timezone: Option<Timezone>,
    locale: Option<Locale>,
    firewall: Option<RawFirewall>,
    services: Option<RawServices>,
    #[serde(default)]
    filesystem: Vec<Spanned<Filesystem>>,
    installation_device: Option<String>,
    partitioning_mode: Option<Spanned<String>>,
    fdo: Option<Fdo>,
    openscap: Option<OpenScap>,
    ignition: Option<Ignition>,
    #[serde(default)]
    directories: Vec<Spanned<Directory>>,
    #[serde(default)]
    files: Vec<Spanned<FileNode>>,
    #[serde(default)]
    repositories: Vec<Spanned<Repository>>,
    fips: Option<bool>,
    installer: Option<Installer>,
    rpm: Option<Rpm>,
    rhsm: Option<Rhsm>,
    cacerts: Option<CaCerts>,
    #[serde(rename = "containers-storage")]
    containers_storage: Option<ContainersStorage>,
    disk: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    description: Option<String>,
    password: Option<Spanned<String>>,
    key: Option<String>,
    home: Option<String>,
    shell: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    expiredate: Option<u32>,
    force_password_reset: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    services: Option<RawFirewallServices>,
    #[serde(default)]
    zones: Vec<FirewallZone>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewallServices {
    #[serde(default)]
    enabled: Vec<Spanned<String>>,
    #[serde(default)]
    disabled: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServices {
    #[serde(default)]
    enabled: Vec<Spanned<String>>,
    #[serde(default)]
    disabled: Vec<Spanned<String>>,
    #[serde(default)]
    masked: Vec<Spanned<String>>,
}

/// Collects diagnostics; `at` narrows a table's span to one of its keys.
struct Reporter<'a> {
    text: &'a str,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Reporter<'_> {
    fn report(&mut self, span: Range<usize>, message: String, label: &str, help: Option<&str>) {
        self.diagnostics.push(Diagnostic {
            message,
            span: (span.start, span.end - span.start).into(),
            label: label.into(),
            help: help.map(str::to_string),
        });
    }

    /// The span of `key = ...` inside the table at `span` (the whole table
    /// when the key is not written there).
    fn at(&self, span: Range<usize>, key: &str) -> Range<usize> {
        super::key_span(self.text, span, key)
    }
}

pub(super) fn validate_customizations(
    raw: RawCustomizations,
    text: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Customizations {
    let mut reporter = Reporter { text, diagnostics };
    let r = &mut reporter;
    check_combinations(&raw, r);
    let users = raw.user.into_iter().map(|user| user_of(user, r)).collect();
    let mut group_names = BTreeSet::new();
    for group in &raw.group {
        let name = &group.get_ref().name;
        if name.trim().is_empty() {
            r.report(r.at(group.span(), "name"), "a group has an empty name".into(), "empty", None);
        } else if !group_names.insert(name.clone()) {
            r.report(r.at(group.span(), "name"), format!("group `{name}` is listed twice"), "again here", None);
        }
    }
    for entry in &raw.sshkey {
        if entry.get_ref().user.trim().is_empty() {
            r.report(r.at(entry.span(), "user"), "an sshkey entry names no user".into(), "empty", None);
        }
    }
    let firewall = raw.firewall.map(|firewall| firewall_of(firewall, r));
    let services = raw.services.map(|services| {
        check_unit_names(&[&services.enabled, &services.disabled, &services.masked], r);
        check_conflicts(&services.enabled, &services.disabled, "enabled and disabled", r);
        check_conflicts(&services.enabled, &services.masked, "enabled and masked", r);
        Services {
            enabled: unspanned(services.enabled),
            disabled: unspanned(services.disabled),
            masked: unspanned(services.masked),
        }
    });
    check_filesystems(&raw.filesystem, r);
    if let Some(mode) = &raw.partitioning_mode
        && !["raw", "lvm", "auto-lvm"].contains(&mode.get_ref().as_str())
    {
        r.report(
            mode.span(),
            format!("partitioning_mode `{}` is not one composer knows", mode.get_ref()),
            "unknown mode",
            Some("use `raw`, `lvm` or `auto-lvm`"),
        );
    }
    check_nodes(&raw.directories, &raw.files, r);
    for repository in &raw.repositories {
        check_repository(repository, r);
    }
    Customizations {
        hostname: raw.hostname,
        kernel: raw.kernel,
        sshkey: unspanned(raw.sshkey),
        user: users,
        group: unspanned(raw.group),
        timezone: raw.timezone,
        locale: raw.locale,
        firewall,
        services,
        filesystem: unspanned(raw.filesystem),
        installation_device: raw.installation_device,
        partitioning_mode: raw.partitioning_mode.map(Spanned::into_inner),
        fdo: raw.fdo,
        openscap: raw.openscap,
        ignition: raw.ignition,
        directories: unspanned(raw.directories),
        files: unspanned(raw.files),
        repositories: unspanned(raw.repositories),
        fips: raw.fips,
        installer: raw.installer,
        rpm: raw.rpm,
        rhsm: raw.rhsm,
        cacerts: raw.cacerts,
        containers_storage: raw.containers_storage,
        disk: raw.disk,
    }
}

fn unspanned<T>(list: Vec<Spanned<T>>) -> Vec<T> {
    list.into_iter().map(Spanned::into_inner).collect()
}

fn user_of(user: RawUser, r: &mut Reporter) -> User {
    if let Some(password) = &user.password
        && !is_crypt_hash(password.get_ref())
    {
        r.report(
            password.span(),
            format!("user `{}`: password is not a crypt(3) hash (plaintext is never accepted)", user.name.get_ref()),
            "looks like plaintext",
            Some("put the hash here, made with `openssl passwd -6` (it starts with `$6$`)"),
        );
    }
    if user.name.get_ref().trim().is_empty() {
        r.report(user.name.span(), "a user has an empty name".into(), "empty", None);
    }
    User {
        name: user.name.into_inner(),
        description: user.description,
        password: user.password.map(Spanned::into_inner),
        key: user.key,
        home: user.home.map(|home| home.trim_end_matches('/').to_string()),
        shell: user.shell,
        groups: user.groups,
        uid: user.uid,
        gid: user.gid,
        expiredate: user.expiredate,
        force_password_reset: user.force_password_reset,
    }
}

fn firewall_of(firewall: RawFirewall, r: &mut Reporter) -> Firewall {
    for port in &firewall.ports {
        if !is_firewall_port(port.get_ref()) {
            r.report(
                port.span(),
                format!("firewall port `{}` is not `PORT:PROTOCOL`", port.get_ref()),
                "bad port",
                Some("write e.g. `8080:tcp`, `5000-5010:udp` or `ssh:tcp`"),
            );
        }
    }
    let services = firewall.services.map(|services| {
        check_unit_names(&[&services.enabled, &services.disabled], r);
        check_conflicts(&services.enabled, &services.disabled, "enabled and disabled", r);
        FirewallServices { enabled: unspanned(services.enabled), disabled: unspanned(services.disabled) }
    });
    Firewall { ports: unspanned(firewall.ports), services, zones: firewall.zones }
}

fn check_unit_names(lists: &[&[Spanned<String>]], r: &mut Reporter) {
    for service in lists.iter().copied().flatten() {
        if service.get_ref().trim().is_empty() {
            r.report(service.span(), "a service has an empty name".into(), "empty", None);
        }
    }
}

fn check_conflicts(first: &[Spanned<String>], second: &[Spanned<String>], what: &str, r: &mut Reporter) {
    for service in second {
        if first.iter().any(|other| other.get_ref() == service.get_ref()) {
            r.report(service.span(), format!("service `{}` is both {what}", service.get_ref()), "conflict", None);
        }
    }
}

/// Mount points composer refuses (osbuild/images `pathpolicy`).
const FORBIDDEN_MOUNTPOINTS: [&str; 13] = [
    "/bin",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/lost+found",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/sysroot",
    "/var/lock",
    "/var/run",
];

fn check_filesystems(filesystems: &[Spanned<Filesystem>], r: &mut Reporter) {
    let mut seen = BTreeSet::new();
    for entry in filesystems {
        let filesystem = entry.get_ref();
        let at = r.at(entry.span(), "mountpoint");
        let mountpoint = filesystem.mountpoint.as_str();
        if !is_clean_absolute(mountpoint) {
            r.report(at, format!("mount point `{mountpoint}` is not a clean absolute path"), "bad path", None);
        } else if FORBIDDEN_MOUNTPOINTS
            .iter()
            .any(|bad| mountpoint == *bad || mountpoint.starts_with(&format!("{bad}/")))
        {
            r.report(at, format!("`{mountpoint}` cannot be a mount point of its own"), "not allowed", None);
        } else if !seen.insert(mountpoint) {
            r.report(at, format!("mount point `{mountpoint}` is listed twice"), "again here", None);
        }
        if filesystem.minsize.bytes().is_none() {
            r.report(
                r.at(entry.span(), "minsize"),
                "minsize is not a size".into(),
                "not a size",
                Some("write bytes, or a number and a unit: `\"2 GiB\"`, `\"500 MiB\"`"),
            );
        }
    }
}

fn check_nodes(directories: &[Spanned<Directory>], files: &[Spanned<FileNode>], r: &mut Reporter) {
    let nodes = directories
        .iter()
        .map(|dir| (dir.span(), &dir.get_ref().path, &dir.get_ref().mode, false))
        .chain(files.iter().map(|file| (file.span(), &file.get_ref().path, &file.get_ref().mode, true)));
    let mut paths: Vec<(&str, bool)> = Vec::new();
    for (span, path, mode, is_file) in nodes {
        if !is_clean_absolute(path) || path == "/" {
            r.report(
                r.at(span.clone(), "path"),
                format!("`{path}` is not a clean absolute path"),
                "bad path",
                Some("start at `/`, without `..`, `//` or a trailing `/`"),
            );
        } else if paths.iter().any(|(seen, _)| seen == path) {
            r.report(r.at(span.clone(), "path"), format!("`{path}` is listed twice"), "again here", None);
        }
        if let Some(mode) = mode
            && !is_octal_mode(mode)
        {
            r.report(
                r.at(span, "mode"),
                format!("mode `{mode}` is not an octal mode"),
                "not octal",
                Some("write three octal digits, optionally after a 0: `\"0644\"`"),
            );
        }
        paths.push((path, is_file));
    }
    for (path, _) in &paths {
        if let Some((parent, _)) =
            paths.iter().find(|(other, is_file)| *is_file && path.starts_with(&format!("{other}/")))
        {
            let span = files.iter().find(|file| file.get_ref().path == *parent).map(|file| file.span());
            r.report(
                span.map(|span| r.at(span, "path")).unwrap_or(0..0),
                format!("file `{parent}` is also the folder of `{path}`"),
                "a file",
                None,
            );
        }
    }
}

fn check_repository(entry: &Spanned<Repository>, r: &mut Reporter) {
    let repository = entry.get_ref();
    let id = &repository.id;
    if id.trim().is_empty() {
        r.report(r.at(entry.span(), "id"), "a repository has an empty id".into(), "empty", None);
    }
    if repository.baseurls.is_empty() && repository.metalink.is_none() && repository.mirrorlist.is_none() {
        r.report(
            r.at(entry.span(), "id"),
            format!("repository `{id}` has no baseurls, metalink or mirrorlist"),
            "no source",
            Some("add `baseurls = [\"https://...\"]`"),
        );
    }
    if repository.gpgcheck == Some(true) && repository.gpgkeys.is_empty() {
        r.report(
            r.at(entry.span(), "gpgcheck"),
            format!("repository `{id}` checks signatures but names no gpgkeys"),
            "no keys",
            Some("add `gpgkeys = [...]` (a URL or the armored key)"),
        );
    }
    let filename = repository.filename.clone().unwrap_or_else(|| id.clone());
    let filename = if filename.ends_with(".repo") { filename } else { format!("{filename}.repo") };
    let stem = filename.trim_end_matches(".repo");
    let valid =
        !stem.is_empty() && stem.len() <= 250 && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        r.report(
            r.at(entry.span(), if repository.filename.is_some() { "filename" } else { "id" }),
            format!("repository file name `{filename}` is not allowed"),
            "bad file name",
            Some("letters, digits, `_`, `.` and `-`, ending in `.repo`"),
        );
    }
}

/// Keys composer refuses together (osbuild/images `GetInstaller`, the disk
/// and filesystem customizations), reported at the start of the file.
fn check_combinations(raw: &RawCustomizations, r: &mut Reporter) {
    if let Some(installer) = &raw.installer {
        let custom_kickstart = installer.kickstart.as_ref().is_some_and(|kickstart| !kickstart.contents.is_empty());
        if custom_kickstart && installer.unattended == Some(true) {
            r.report(0..0, "installer.unattended cannot go with custom kickstart contents".into(), "", None);
        }
        if custom_kickstart && !installer.sudo_nopasswd.is_empty() {
            r.report(0..0, "installer.sudo-nopasswd cannot go with custom kickstart contents".into(), "", None);
        }
        let users_disabled = installer.modules.as_ref().is_some_and(|modules| {
            modules.disable.iter().any(|module| module == "org.fedoraproject.Anaconda.Modules.Users")
        });
        if users_disabled && !(raw.user.is_empty() && raw.group.is_empty()) {
            r.report(
                0..0,
                "the blueprint makes users or groups but disables Anaconda's Users module".into(),
                "",
                Some("drop the module from installer.modules.disable"),
            );
        }
    }
    if raw.disk.is_some() && !raw.filesystem.is_empty() {
        r.report(
            0..0,
            "customizations.disk and customizations.filesystem cannot both be set".into(),
            "",
            Some("describe the partitions in one of them"),
        );
    }
}

/// `/a/b`: absolute, no `..` or `.`, no `//`, no trailing `/` (but `/`).
fn is_clean_absolute(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && !path.ends_with('/')
            && path[1..].split('/').all(|part| !part.is_empty() && part != "." && part != ".."))
}

/// `644` or `0644`.
fn is_octal_mode(mode: &str) -> bool {
    let digits = mode.strip_prefix('0').filter(|rest| rest.len() == 3).unwrap_or(mode);
    digits.len() == 3 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// `8080:tcp`, `5000-5010:udp`, `ssh:tcp`.
fn is_firewall_port(text: &str) -> bool {
    let Some((port, protocol)) = text.split_once(':') else {
        return false;
    };
    let number = |text: &str| text.parse::<u16>().is_ok_and(|n| n > 0);
    let port_ok = match port.split_once('-') {
        Some((from, to)) => number(from) && number(to) && from.parse::<u16>().ok() <= to.parse::<u16>().ok(),
        None => number(port) || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')),
    };
    port_ok && ["tcp", "udp"].contains(&protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_modes() {
        for good in ["/", "/etc/motd", "/var/lib/x.d"] {
            assert!(is_clean_absolute(good), "{good}");
        }
        for bad in ["etc", "/etc/", "/a//b", "/a/../b", "/a/./b", ""] {
            assert!(!is_clean_absolute(bad), "{bad}");
        }
        for good in ["644", "0644", "0755", "000"] {
            assert!(is_octal_mode(good), "{good}");
        }
        for bad in ["0o644", "64", "0888", "1644x", "00644"] {
            assert!(!is_octal_mode(bad), "{bad}");
        }
    }
}
