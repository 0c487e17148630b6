//! osbuild blueprints: the TOML file parsed into a typed, validated
//! `Blueprint`, and the rule that turns a lab image into the blueprint it
//! composes (its extra packages added, its version bumped).
//!
//! Pure: no I/O beyond the text it is given. Mistakes are collected into one
//! `Diagnostics` (crate::diag) whose diagnostics point at the TOML line and column
//! (spans from the toml crate) and render with miette. Unknown keys are
//! errors with a did-you-mean, because composer silently ignores what it does
//! not know and a misspelt `pakages` would compose an image without them.
//!
//! The version rule (what the web console does on commit, made precise): an
//! image composes its blueprint's version with the patch number raised by the
//! number of images in its parent chain (itself included, stopping at the
//! first ancestor built from another blueprint) whose package set differs
//! from the one before it; the root image is compared with the bare
//! blueprint. So with `RFE` at 0.0.1, `v1` (no extra packages) composes
//! 0.0.1 and `v2` (parent v1, adds `strace`) composes 0.0.2.

mod checks;
mod customizations;
mod local_world;

use std::{collections::BTreeSet, fmt};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use self::checks::{RawCustomizations, validate_customizations};
pub use self::{customizations::*, local_world::*};
use crate::{
    diag::{Diagnostic, Diagnostics, PlainLayout},
    lab::{Image, Lab},
};

/// A validated osbuild blueprint, as composer reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blueprint {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Semantic version, `MAJOR.MINOR.PATCH`.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    #[serde(default)]
    pub modules: Vec<Package>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub packages: Vec<Package>,
    /// Module streams to enable (dnf's `module enable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled_modules: Vec<EnabledModule>,
    /// Container images embedded in the commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimal: Option<bool>,
    #[serde(default, skip_serializing_if = "Customizations::is_empty")]
    pub customizations: Customizations,
}

/// A package or module with a version glob (`*` for any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    #[serde(default = "any_version")]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnabledModule {
    pub name: String,
    pub stream: String,
}

/// An image the commit carries in its container storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "tls-verify", default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    #[serde(rename = "local-storage", default, skip_serializing_if = "Option::is_none")]
    pub local_storage: Option<bool>,
}

/// `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

/// Parses and validates blueprint TOML read from `file_name`.
pub fn parse_blueprint(file_name: &str, text: &str) -> Result<Blueprint, Diagnostics> {
    let error = |diagnostics| Diagnostics::new(file_name, text, diagnostics, PlainLayout::HelpInline);
    crate::diag::check_bounds(text, crate::diag::Syntax::Toml).map_err(|diagnostic| error(vec![diagnostic]))?;
    let raw: RawBlueprint = toml::from_str(text).map_err(|err| error(vec![toml_diagnostic(&err, text)]))?;
    let mut diagnostics = Vec::new();
    let blueprint = validate(raw, text, &mut diagnostics);
    diagnostics.sort_by_key(|diagnostic| diagnostic.span.offset());
    if diagnostics.is_empty() { Ok(blueprint) } else { Err(error(diagnostics)) }
}

/// The blueprint `image` composes: `base` with the image's extra packages
/// added (version `*`) and its version bumped by the rule in the module docs.
pub fn composed_blueprint(base: &Blueprint, lab: &Lab, image: &Image) -> Blueprint {
    let mut blueprint = base.clone();
    for name in &image.extra_packages {
        if !blueprint.packages.iter().any(|package| &package.name == name) {
            blueprint.packages.push(Package { name: name.clone(), version: any_version() });
        }
    }
    let n_changes = n_package_changes(base, lab, image);
    blueprint.version = match Version::parse(&base.version) {
        Some(version) => Version { patch: version.patch + n_changes, ..version }.to_string(),
        None => base.version.clone(),
    };
    blueprint
}

impl Blueprint {
    /// TOML as composer's `blueprints/new` takes it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a blueprint always serialises to TOML")
    }

    pub fn package_names(&self) -> BTreeSet<&str> {
        self.packages.iter().map(|package| package.name.as_str()).collect()
    }
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.');
        let mut number = || -> Option<u64> {
            let part = parts.next()?;
            let valid =
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && (part == "0" || !part.starts_with('0'));
            if valid { part.parse().ok() } else { None }
        };
        let version = Version { major: number()?, minor: number()?, patch: number()? };
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Does `password` look like a crypt(3) hash (`$id$salt$hash`, or yescrypt's
/// `$y$params$salt$hash`)? Plaintext never does: it would have to start
/// with `$` and name a known scheme.
pub fn is_crypt_hash(password: &str) -> bool {
    let Some(rest) = password.strip_prefix('$') else {
        return false;
    };
    let mut fields = rest.split('$');
    let scheme = fields.next().unwrap_or("");
    if !["1", "2a", "2b", "2y", "5", "6", "7", "y", "gy", "sha1"].contains(&scheme) {
        return false;
    }
    let fields: Vec<&str> = fields.collect();
    let charset_ok =
        fields.iter().all(|field| field.bytes().all(|b| b.is_ascii_alphanumeric() || b"./=,-".contains(&b)));
    fields.len() >= 2 && fields.last().is_some_and(|hash| hash.len() >= 16) && charset_ok
}

fn any_version() -> String {
    "*".to_string()
}

/// How many images in `image`'s chain change the package set (module docs).
fn n_package_changes(base: &Blueprint, lab: &Lab, image: &Image) -> u64 {
    let mut chain = vec![image];
    while let Some(parent) = chain.last().and_then(|it| it.parent.as_ref()).and_then(|name| lab.image(name)) {
        if parent.blueprint != image.blueprint || chain.iter().any(|seen| seen.name == parent.name) {
            break;
        }
        chain.push(parent);
    }
    chain.reverse();
    let package_set = |image: &Image| -> BTreeSet<String> {
        base.package_names().into_iter().map(str::to_string).chain(image.extra_packages.iter().cloned()).collect()
    };
    let mut before: BTreeSet<String> = base.package_names().into_iter().map(str::to_string).collect();
    let mut n_changes = 0;
    for image in chain {
        let now = package_set(image);
        if now != before {
            n_changes += 1;
        }
        before = now;
    }
    n_changes
}

// The raw shape, with spans where validation needs to point. Unknown keys are
// rejected here (`deny_unknown_fields`) and turned into did-you-mean hints.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlueprint {
    name: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    version: Option<Spanned<String>>,
    distro: Option<String>,
    #[serde(default)]
    modules: Vec<RawPackage>,
    #[serde(default)]
    groups: Vec<RawGroup>,
    #[serde(default)]
    packages: Vec<RawPackage>,
    #[serde(default)]
    enabled_modules: Vec<EnabledModule>,
    #[serde(default)]
    containers: Vec<Spanned<Container>>,
    minimal: Option<bool>,
    #[serde(default)]
    customizations: Option<RawCustomizations>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: Spanned<String>,
    #[serde(default = "any_version")]
    version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
}

fn validate(raw: RawBlueprint, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Blueprint {
    let mut report = |span: std::ops::Range<usize>, message: String, label: &str, help: Option<String>| {
        diagnostics.push(Diagnostic {
            message,
            span: (span.start, span.end - span.start).into(),
            label: label.into(),
            help,
        })
    };
    let name = match &raw.name {
        None => {
            report(0..0, "the blueprint has no `name`".into(), "", Some("add `name = \"RFE\"` at the top".into()));
            String::new()
        }
        Some(name) => {
            let valid = !name.get_ref().is_empty()
                && name.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid {
                report(
                    name.span(),
                    format!("blueprint name `{}` is not allowed", name.get_ref()),
                    "bad name",
                    Some("composer accepts letters, digits, `.`, `_` and `-`".into()),
                );
            }
            name.get_ref().clone()
        }
    };
    let version = match &raw.version {
        None => {
            report(0..0, "the blueprint has no `version`".into(), "", Some("add `version = \"0.0.1\"`".into()));
            String::new()
        }
        Some(version) => {
            if Version::parse(version.get_ref()).is_none() {
                report(
                    version.span(),
                    format!("version `{}` is not a semantic version", version.get_ref()),
                    "not MAJOR.MINOR.PATCH",
                    Some("use three numbers, e.g. `version = \"0.0.1\"`".into()),
                );
            }
            version.get_ref().clone()
        }
    };
    let mut packages_of = |list: &[RawPackage], what: &str| -> Vec<Package> {
        let mut seen = BTreeSet::new();
        let mut packages = Vec::new();
        for package in list {
            let package_name = package.name.get_ref();
            if package_name.trim().is_empty() {
                report(package.name.span(), format!("a {what} has an empty name"), "empty", None);
            } else if !seen.insert(package_name.clone()) {
                report(package.name.span(), format!("{what} `{package_name}` is listed twice"), "again here", None);
            }
            packages.push(Package { name: package_name.clone(), version: package.version.clone() });
        }
        packages
    };
    let packages = packages_of(&raw.packages, "package");
    let modules = packages_of(&raw.modules, "module");
    let groups = raw.groups.iter().map(|group| Group { name: group.name.get_ref().clone() }).collect();
    for container in &raw.containers {
        if container.get_ref().source.trim().is_empty() {
            let span = key_span(text, container.span(), "source");
            report(
                span,
                "a container has an empty source".into(),
                "empty",
                Some("name the image, e.g. `source = \"registry.example.com/app:v1\"`".into()),
            );
        }
    }
    let customizations = match raw.customizations {
        None => Customizations::default(),
        Some(raw) => validate_customizations(raw, text, diagnostics),
    };
    Blueprint {
        name,
        description: raw.description,
        version,
        distro: raw.distro,
        modules,
        groups,
        packages,
        enabled_modules: raw.enabled_modules,
        containers: raw.containers.into_iter().map(Spanned::into_inner).collect(),
        minimal: raw.minimal,
        customizations,
    }
}

/// A toml/serde error as a diagnostic; unknown keys get a did-you-mean.
fn toml_diagnostic(err: &toml::de::Error, text: &str) -> Diagnostic {
    let span = err.span().unwrap_or(0..0);
    let message = err.message().trim().to_string();
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.starts_with("unknown field")
        && let Some((unknown, expected)) = quoted.split_first()
    {
        let best = expected
            .iter()
            .map(|candidate| (strsim::normalized_damerau_levenshtein(unknown, candidate), *candidate))
            .filter(|(score, _)| *score >= 0.5)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let help = match best {
            Some((_, candidate)) => format!("did you mean `{candidate}`?"),
            None => format!("known keys here: {}", expected.join(", ")),
        };
        let span = key_span(text, span, unknown);
        return Diagnostic {
            message: format!("unknown key `{unknown}`"),
            span: (span.start, span.end - span.start).into(),
            label: "not a blueprint key".into(),
            help: Some(help),
        };
    }
    Diagnostic {
        message: message.lines().next().unwrap_or("").to_string(),
        span: (span.start, span.end - span.start).into(),
        label: String::new(),
        help: None,
    }
}

/// Narrows an error span (which may cover a whole table) to the key itself.
fn key_span(text: &str, span: std::ops::Range<usize>, key: &str) -> std::ops::Range<usize> {
    let end = span.end.min(text.len());
    let start = span.start.min(end);
    match text.get(start..end).and_then(|window| window.find(key)) {
        Some(at) => start + at..start + at + key.len(),
        None => span,
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    #[track_caller]
    fn check(text: &str, expect: Expect) {
        let actual = match parse_blueprint("RFE.toml", text) {
            Ok(blueprint) => blueprint.to_toml(),
            Err(err) => err.to_plain(),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn the_demo_blueprint_parses() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../guest/blueprints/RFE.toml")).unwrap();
        let blueprint = parse_blueprint("RFE.toml", &text).unwrap();
        assert_eq!(blueprint.name, "RFE");
        assert_eq!(blueprint.version, "0.0.1");
        assert!(blueprint.package_names().contains("keepalived"));
        // Normalised TOML parses back to the same blueprint.
        assert_eq!(parse_blueprint("again.toml", &blueprint.to_toml()).unwrap(), blueprint);
    }

    #[test]
    fn normalised() {
        check(
            r#"
name = "RFE"
version = "0.0.1"
[[packages]]
name = "jq"
[customizations.firewall]
ports = ["8080:tcp", "5000-5010:udp"]
[customizations.services]
enabled = ["sshd"]
"#,
            expect![[r#"
                name = "RFE"
                version = "0.0.1"
                modules = []
                groups = []

                [[packages]]
                name = "jq"
                version = "*"

                [customizations.firewall]
                ports = ["8080:tcp", "5000-5010:udp"]

                [customizations.services]
                enabled = ["sshd"]
            "#]],
        );
    }

    #[test]
    fn malformed_toml_points_at_line_and_column() {
        check(
            r#"
name = "RFE"
version = "0.0.1
"#,
            expect![[r#"
                RFE.toml:3:17: invalid basic string
            "#]],
        );
    }

    #[test]
    fn plaintext_password_is_refused() {
        check(
            r#"
name = "RFE"
version = "0.0.1"
[[customizations.user]]
name = "core"
password = "edge"
"#,
            expect![[r#"
                RFE.toml:6:12: user `core`: password is not a crypt(3) hash (plaintext is never accepted) (help: put the hash here, made with `openssl passwd -6` (it starts with `$6$`))
            "#]],
        );
    }

    #[test]
    fn unknown_key_suggests_the_right_one() {
        check(
            r#"
name = "RFE"
version = "0.0.1"
[[pakages]]
name = "jq"
"#,
            expect![[r#"
                RFE.toml:4:3: unknown key `pakages` (help: did you mean `packages`?)
            "#]],
        );
        check(
            r#"
name = "RFE"
version = "0.0.1"
[customizations.services]
enable = ["sshd"]
"#,
            expect![[r#"
                RFE.toml:5:1: unknown key `enable` (help: did you mean `enabled`?)
            "#]],
        );
    }

    #[test]
    fn every_mistake_at_once() {
        check(
            r#"
name = "R F E"
version = "1.0"
[[packages]]
name = "jq"
[[packages]]
name = "jq"
[customizations.firewall]
ports = ["8080"]
[customizations.services]
enabled = ["sshd"]
disabled = ["sshd"]
"#,
            expect![[r#"
                RFE.toml:2:8: blueprint name `R F E` is not allowed (help: composer accepts letters, digits, `.`, `_` and `-`)
                RFE.toml:3:11: version `1.0` is not a semantic version (help: use three numbers, e.g. `version = "0.0.1"`)
                RFE.toml:7:8: package `jq` is listed twice
                RFE.toml:9:10: firewall port `8080` is not `PORT:PROTOCOL` (help: write e.g. `8080:tcp`, `5000-5010:udp` or `ssh:tcp`)
                RFE.toml:12:13: service `sshd` is both enabled and disabled
            "#]],
        );
    }

    #[test]
    fn composer_checks_on_the_newer_keys() {
        check(
            r#"
name = "RFE"
version = "0.0.1"
[[containers]]
source = ""
[customizations]
partitioning_mode = "zfs"
[[customizations.filesystem]]
mountpoint = "/etc"
minsize = "2 parsecs"
[[customizations.directories]]
path = "etc/widget"
mode = "0888"
[[customizations.files]]
path = "/etc/widget.conf"
[[customizations.files]]
path = "/etc/widget.conf/inner"
[[customizations.repositories]]
id = "extra"
gpgcheck = true
[customizations.services]
enabled = ["rpcbind"]
masked = ["rpcbind"]
[customizations.disk]
type = "gpt"
"#,
            expect![[r#"
                RFE.toml:1:1: customizations.disk and customizations.filesystem cannot both be set (help: describe the partitions in one of them)
                RFE.toml:5:1: a container has an empty source (help: name the image, e.g. `source = "registry.example.com/app:v1"`)
                RFE.toml:7:21: partitioning_mode `zfs` is not one composer knows (help: use `raw`, `lvm` or `auto-lvm`)
                RFE.toml:9:1: `/etc` cannot be a mount point of its own
                RFE.toml:10:1: minsize is not a size (help: write bytes, or a number and a unit: `"2 GiB"`, `"500 MiB"`)
                RFE.toml:12:1: `etc/widget` is not a clean absolute path (help: start at `/`, without `..`, `//` or a trailing `/`)
                RFE.toml:13:1: mode `0888` is not an octal mode (help: write three octal digits, optionally after a 0: `"0644"`)
                RFE.toml:15:1: file `/etc/widget.conf` is also the folder of `/etc/widget.conf/inner`
                RFE.toml:19:1: repository `extra` has no baseurls, metalink or mirrorlist (help: add `baseurls = ["https://..."]`)
                RFE.toml:20:1: repository `extra` checks signatures but names no gpgkeys (help: add `gpgkeys = [...]` (a URL or the armored key))
                RFE.toml:23:11: service `rpcbind` is both enabled and masked
            "#]],
        );
        check(
            r#"
name = "RFE"
version = "0.0.1"
[customizations.locale]
language = ["en_US.UTF-8"]
"#,
            expect![[r#"
                RFE.toml:5:1: unknown key `language` (help: did you mean `languages`?)
            "#]],
        );
    }

    #[test]
    fn crypt_hashes() {
        assert!(is_crypt_hash(
            "$6$edgelab$xv/z29/M.jusV28dP6K0JGwJWukWc4HWTYlhn2qM9rBJjLtkKsocoNQJ4wqyBxKsxQ6dgsmApHHN8o/.tDa/U1"
        ));
        assert!(is_crypt_hash("$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"));
        for plain in ["edge", "$6$", "$6$salt$short", "$99$abc$defghijklmnopqrstuv", "hunter2$6$x$y"] {
            assert!(!is_crypt_hash(plain), "{plain}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(Version::parse("0.0.1").map(|v| v.to_string()).as_deref(), Some("0.0.1"));
        for bad in ["1.0", "1.0.0.0", "01.0.0", "a.b.c", "1.0.-1", ""] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }
}
