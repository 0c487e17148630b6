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

use std::{collections::BTreeSet, fmt};

use serde::{Deserialize, Serialize};
use toml::Spanned;

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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customizations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Kernel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Firewall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Services>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<String>,
}

/// A user the image creates. `password` is a crypt(3) hash, never plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// An SSH public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firewall {
    /// `PORT:PROTOCOL` or `FROM-TO:PROTOCOL`, e.g. `8080:tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Services>,
}

/// systemd units (or firewalld services) to enable and disable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Services {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
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
    let raw: RawBlueprint = toml::from_str(text).map_err(|err| error(vec![toml_diagnostic(&err, text)]))?;
    let mut diagnostics = Vec::new();
    let blueprint = validate(raw, &mut diagnostics);
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

impl Customizations {
    fn is_empty(&self) -> bool {
        self == &Customizations::default()
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomizations {
    hostname: Option<String>,
    kernel: Option<RawKernel>,
    #[serde(default)]
    user: Vec<RawUser>,
    firewall: Option<RawFirewall>,
    services: Option<RawServices>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    name: Option<String>,
    append: Option<String>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    services: Option<RawServices>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServices {
    #[serde(default)]
    enabled: Vec<Spanned<String>>,
    #[serde(default)]
    disabled: Vec<Spanned<String>>,
}

fn validate(raw: RawBlueprint, diagnostics: &mut Vec<Diagnostic>) -> Blueprint {
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
    let customizations = match raw.customizations {
        None => Customizations::default(),
        Some(raw) => validate_customizations(raw, diagnostics),
    };
    Blueprint {
        name,
        description: raw.description,
        version,
        distro: raw.distro,
        modules,
        groups,
        packages,
        customizations,
    }
}

fn validate_customizations(raw: RawCustomizations, diagnostics: &mut Vec<Diagnostic>) -> Customizations {
    let mut report = |span: std::ops::Range<usize>, message: String, label: &str, help: Option<String>| {
        diagnostics.push(Diagnostic {
            message,
            span: (span.start, span.end - span.start).into(),
            label: label.into(),
            help,
        })
    };
    let mut users = Vec::new();
    for user in raw.user {
        if let Some(password) = &user.password
            && !is_crypt_hash(password.get_ref())
        {
            report(
                password.span(),
                format!(
                    "user `{}`: password is not a crypt(3) hash (plaintext is never accepted)",
                    user.name.get_ref()
                ),
                "looks like plaintext",
                Some("put the hash here, made with `openssl passwd -6` (it starts with `$6$`)".into()),
            );
        }
        users.push(User {
            name: user.name.into_inner(),
            description: user.description,
            password: user.password.map(Spanned::into_inner),
            key: user.key,
            home: user.home,
            shell: user.shell,
            groups: user.groups,
            uid: user.uid,
            gid: user.gid,
        });
    }
    let firewall = raw.firewall.map(|firewall| {
        for port in &firewall.ports {
            if !is_firewall_port(port.get_ref()) {
                report(
                    port.span(),
                    format!("firewall port `{}` is not `PORT:PROTOCOL`", port.get_ref()),
                    "bad port",
                    Some("write e.g. `8080:tcp`, `5000-5010:udp` or `ssh:tcp`".into()),
                );
            }
        }
        Firewall {
            ports: firewall.ports.into_iter().map(Spanned::into_inner).collect(),
            services: firewall.services.map(|services| services_of(services, &mut report)),
        }
    });
    let services = raw.services.map(|services| services_of(services, &mut report));
    Customizations {
        hostname: raw.hostname,
        kernel: raw.kernel.map(|kernel| Kernel { name: kernel.name, append: kernel.append }),
        user: users,
        firewall,
        services,
    }
}

fn services_of(
    raw: RawServices,
    report: &mut impl FnMut(std::ops::Range<usize>, String, &str, Option<String>),
) -> Services {
    for service in raw.enabled.iter().chain(&raw.disabled) {
        if service.get_ref().trim().is_empty() {
            report(service.span(), "a service has an empty name".into(), "empty", None);
        }
    }
    for service in &raw.disabled {
        if raw.enabled.iter().any(|enabled| enabled.get_ref() == service.get_ref()) {
            report(
                service.span(),
                format!("service `{}` is both enabled and disabled", service.get_ref()),
                "also enabled",
                None,
            );
        }
    }
    Services {
        enabled: raw.enabled.into_iter().map(Spanned::into_inner).collect(),
        disabled: raw.disabled.into_iter().map(Spanned::into_inner).collect(),
    }
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
