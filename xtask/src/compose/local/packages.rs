//! The local composer's packages: the blueprint's RPM names mapped to
//! Debian packages through the lab's package map, the host's Debian apt
//! sources, and what a tree has installed. Pure reading and mapping, kept
//! apart from the steps that run programs.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blueprint::Blueprint;

/// How the blueprint's packages became Debian packages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackagePlan {
    /// Debian packages to install for the blueprint, sorted.
    pub install: Vec<String>,
    /// RPM name -> the Debian packages it became, where the map says so.
    pub mapped: Vec<(String, Vec<String>)>,
    /// RPM names left out, with the lab's reason.
    pub dropped: Vec<(String, String)>,
    /// Blueprint entries that mean nothing on Debian (version pins, groups).
    pub ignored: Vec<String>,
}

/// Maps blueprint packages through the lab's package map (JSON as the graph
/// writes it: `[{"rpm": .., "debian": [..]} | {"rpm": .., "drop": reason}]`).
pub fn plan_packages(blueprint: &Blueprint, package_map: &Value) -> anyhow::Result<PackagePlan> {
    let mut plan = PackagePlan::default();
    let mut install = BTreeSet::new();
    let entries = package_map.as_array().map(Vec::as_slice).unwrap_or_default();
    for package in &blueprint.packages {
        let (name, version) = (package.name.as_str(), package.version.as_str());
        if version != "*" && !version.is_empty() {
            plan.ignored.push(format!("version pin {name}-{version} (Debian versions differ; the archive's is used)"));
        }
        let entry = entries.iter().find(|entry| entry.get("rpm").and_then(Value::as_str) == Some(name));
        match entry {
            Some(entry) if entry.get("drop").is_some() => {
                let reason = entry["drop"].as_str().unwrap_or("dropped by the lab's package map");
                plan.dropped.push((name.to_string(), reason.to_string()));
            }
            Some(entry) => {
                let debs: Vec<String> = entry
                    .get("debian")
                    .and_then(Value::as_array)
                    .map(|debs| debs.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                install.extend(debs.iter().cloned());
                plan.mapped.push((name.to_string(), debs));
            }
            None => {
                install.insert(name.to_string());
            }
        }
    }
    for group in &blueprint.groups {
        plan.ignored.push(format!("package group {} (RPM groups have no Debian equivalent)", group.name));
    }
    for module in &blueprint.modules {
        plan.ignored.push(format!("module {} (RPM modules have no Debian equivalent)", module.name));
    }
    for name in &install {
        if !is_debian_package_name(name) {
            bail!("`{name}` is not a valid Debian package name; map it in the lab's package-map");
        }
    }
    plan.install = install.into_iter().collect();
    Ok(plan)
}

/// The one-line sources for `suite` among apt source files' texts, both
/// one-line (`.list`) and deb822 (`.sources`) formats.
pub fn host_debian_sources(suite: &str, files: &[(PathBuf, String)]) -> Vec<String> {
    let wanted = |candidate: &str| candidate == suite || candidate.starts_with(&format!("{suite}-"));
    let mut lines = Vec::new();
    for (path, text) in files {
        if path.extension().is_some_and(|ext| ext == "sources") {
            for stanza in text.split("\n\n") {
                let field = |name: &str| {
                    stanza.lines().find_map(|line| {
                        let (key, value) = line.split_once(':')?;
                        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().to_string())
                    })
                };
                if field("Enabled").is_some_and(|value| value.eq_ignore_ascii_case("no")) {
                    continue;
                }
                if !field("Types").is_some_and(|types| types.split_whitespace().any(|t| t == "deb")) {
                    continue;
                }
                let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else { continue };
                let components = field("Components").unwrap_or_else(|| "main".into());
                for uri in uris.split_whitespace() {
                    for candidate in suites.split_whitespace().filter(|s| wanted(s)) {
                        lines.push(format!("deb {uri} {candidate} {components}"));
                    }
                }
            }
        } else {
            for line in text.lines().map(str::trim) {
                let mut words = line.split_whitespace();
                if words.next() != Some("deb") {
                    continue;
                }
                let mut rest: Vec<&str> = words.collect();
                if rest.first().is_some_and(|word| word.starts_with('[')) {
                    let end = rest.iter().position(|word| word.ends_with(']')).unwrap_or(0);
                    rest.drain(..=end);
                }
                if rest.len() >= 2 && wanted(rest[1]) {
                    lines.push(format!("deb {}", rest.join(" ")));
                }
            }
        }
    }
    lines
}

/// Installed packages from the tree's dpkg status, `name=version`, sorted.
pub(super) fn installed_packages(root: &Path) -> anyhow::Result<Vec<String>> {
    let path = root.join("var/lib/dpkg/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(dpkg_status_packages(&text).into_iter().map(|(name, version)| format!("{name}={version}")).collect())
}

/// (name, version) of every installed package in a dpkg status file, sorted.
pub fn dpkg_status_packages(text: &str) -> Vec<(String, String)> {
    let mut packages = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_string()))
        };
        if let (Some(name), Some(version), Some(status)) = (field("Package"), field("Version"), field("Status"))
            && status.ends_with(" installed")
        {
            let arch = field("Architecture").unwrap_or_default();
            let name =
                if arch.is_empty() || arch == "all" || arch == "amd64" { name } else { format!("{name}:{arch}") };
            packages.push((name, version));
        }
    }
    packages.sort();
    packages
}

pub(super) fn is_debian_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

pub(super) fn apt_source_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "list" || ext == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use serde_json::json;

    use super::*;

    /// A blueprint as the blueprint stage writes it, from its JSON.
    fn parsed(mut value: serde_json::Value) -> Blueprint {
        value["name"] = json!("t");
        value["version"] = json!("0.0.1");
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn maps_drops_and_keeps_packages() {
        let blueprint = parsed(json!({
            "packages": [
                {"name": "container-tools", "version": "*"},
                {"name": "setroubleshoot-server", "version": "*"},
                {"name": "jq", "version": "1.6"},
            ],
            "groups": [{"name": "core"}],
        }));
        let map = json!([
            {"rpm": "container-tools", "debian": ["podman", "buildah", "skopeo"]},
            {"rpm": "setroubleshoot-server", "drop": "no SELinux"},
        ]);
        let plan = plan_packages(&blueprint, &map).unwrap();
        expect![[r#"
            PackagePlan {
                install: [
                    "buildah",
                    "jq",
                    "podman",
                    "skopeo",
                ],
                mapped: [
                    (
                        "container-tools",
                        [
                            "podman",
                            "buildah",
                            "skopeo",
                        ],
                    ),
                ],
                dropped: [
                    (
                        "setroubleshoot-server",
                        "no SELinux",
                    ),
                ],
                ignored: [
                    "version pin jq-1.6 (Debian versions differ; the archive's is used)",
                    "package group core (RPM groups have no Debian equivalent)",
                ],
            }
        "#]]
        .assert_debug_eq(&plan);
        let err = plan_packages(&parsed(json!({"packages": [{"name": "Bad_Name"}]})), &json!([])).unwrap_err();
        assert!(err.to_string().contains("Bad_Name"), "{err}");
    }

    #[test]
    fn reads_host_sources() {
        let files = vec![
            (
                PathBuf::from("/etc/apt/sources.list.d/debian.sources"),
                "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                 Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                 Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n"
                    .to_string(),
            ),
            (
                PathBuf::from("/etc/apt/sources.list"),
                "deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n\
                 deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n# deb http://x bookworm main\n"
                    .to_string(),
            ),
        ];
        expect![[r#"
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
                "deb http://mirror.example/debian bookworm main contrib",
            ]
        "#]]
        .assert_debug_eq(&host_debian_sources("bookworm", &files));
    }

    #[test]
    fn reads_dpkg_status() {
        let status = "Package: strace\nStatus: install ok installed\nArchitecture: amd64\nVersion: 6.1-0.1\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                      Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36\n";
        assert_eq!(
            dpkg_status_packages(status),
            vec![("libc6:i386".to_string(), "2.36".to_string()), ("strace".to_string(), "6.1-0.1".to_string())]
        );
    }
}
