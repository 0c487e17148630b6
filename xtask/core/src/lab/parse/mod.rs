//! Parsing `lab.kdl` into a `Lab`: KDL nodes become typed, validated values.
//!
//! The grammar is declared once, as a `Shape` per node kind (which arguments,
//! properties and children it may have); a small cursor layer (`string`,
//! `integer`, `boolean` over a `Slot`, a property or a child's value) reads
//! values and reports every mistake as a diagnostic with the span of the
//! offending entry. After the nodes are read, cross checks find duplicate
//! names, dangling references, cycles and VRRP conflicts. Nothing stops at the
//! first mistake: all of them are reported at once, and none is a panic.

mod checks;
mod cursor;
mod nodes;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    ops::RangeInclusive,
    path::{Component, Path, PathBuf},
};

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::{
    AccelSetting, Auto, Backend, Backends, Blueprint, BootIso, Channel, Container, ContainerBuild, ContainerTag,
    FileServer, Guest, GuestRole, Image, ImageType, Ipv4Cidr, Kickstart, Lab, Network, PackageAction, PackageMapping,
    Registry, StoreSettings, VrrpState,
};
use crate::diag::{self, Diagnostic, Diagnostics, PlainLayout};

/// Parses and validates the lab in `text`, read from `file`. Relative paths in
/// the lab resolve against `file`'s folder and come out absolute.
pub fn parse_lab(file: &Path, text: &str) -> Result<Lab, Diagnostics> {
    let file_abs = normalize(&std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()));
    let root = file_abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    if let Err(diagnostic) = diag::check_bounds(text, diag::Syntax::Kdl) {
        return Err(lab_error(file, text, vec![diagnostic]));
    }
    let mut parser = Parser { text, root, diags: Vec::new() };
    let lab = match KdlDocument::parse(text) {
        Ok(doc) => Some(parser.lab(&doc, &file_abs)),
        Err(err) => {
            parser.kdl_syntax(err);
            None
        }
    };
    match lab {
        Some(lab) if parser.diags.is_empty() => Ok(lab),
        _ => Err(lab_error(file, text, parser.diags)),
    }
}

/// Reads and parses the lab file at `path`.
pub fn parse_lab_file(path: &Path) -> Result<Lab, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_lab(path, &text),
        Err(err) => Err(lab_error(
            path,
            "",
            vec![Diagnostic {
                message: format!("cannot read the lab file: {err}"),
                span: (0, 0).into(),
                label: String::new(),
                help: Some("pass the path of a lab file with --lab FILE".into()),
            }],
        )),
    }
}

fn lab_error(file: &Path, text: &str, mut diags: Vec<Diagnostic>) -> Diagnostics {
    diags.sort_by_key(|diag| diag.span.offset());
    diags.dedup();
    Diagnostics::new(&file.display().to_string(), text, diags, PlainLayout::LabelThenHelpBelow)
}

/// What a node may hold. The lab's grammar is these constants.
struct Shape {
    /// The most positional arguments it takes (required ones are asked for by name).
    max_args: usize,
    props: &'static [&'static str],
    /// Child nodes allowed in its block; `None`: it takes no block.
    children: Option<&'static [&'static str]>,
    /// Children that may appear more than once.
    repeated: &'static [&'static str],
}

const TOP_LEVEL: &[&str] = &[
    "lab",
    "network",
    "registry",
    "container",
    "blueprint",
    "image",
    "channel",
    "file-server",
    "boot-iso",
    "kickstart",
    "guest",
    "package-map",
    "store",
    "libvirt",
];
const TOP_LEVEL_REPEATED: &[&str] = &["container", "blueprint", "image", "channel", "guest"];

const LAB: Shape = Shape { max_args: 1, props: &[], children: Some(&["backend", "backends", "accel"]), repeated: &[] };
const BACKENDS: Shape =
    Shape { max_args: 0, props: &[], children: Some(&["registry", "compose", "boot-media", "guests"]), repeated: &[] };
const NETWORK: Shape = Shape {
    max_args: 0,
    props: &[],
    children: Some(&["host-address", "vip", "bridge", "namespace", "vrrp-router-id"]),
    repeated: &[],
};
const REGISTRY: Shape =
    Shape { max_args: 0, props: &["port", "insecure"], children: Some(&["address"]), repeated: &[] };
const CONTAINER: Shape =
    Shape { max_args: 1, props: &[], children: Some(&["build", "tag"]), repeated: &["build", "tag"] };
const BUILD: Shape = Shape { max_args: 1, props: &["context", "from"], children: None, repeated: &[] };
const TAG: Shape = Shape { max_args: 2, props: &[], children: None, repeated: &[] };
const BLUEPRINT: Shape = Shape { max_args: 1, props: &["file"], children: None, repeated: &[] };
const IMAGE: Shape = Shape {
    max_args: 1,
    props: &["type", "blueprint", "ref", "parent"],
    children: Some(&["packages"]),
    repeated: &["packages"],
};
const CHANNEL: Shape = Shape { max_args: 1, props: &["ref", "image"], children: None, repeated: &[] };
const PACKAGES: Shape = Shape { max_args: usize::MAX, props: &[], children: None, repeated: &[] };
const FILE_SERVER: Shape = Shape { max_args: 0, props: &["address", "port"], children: None, repeated: &[] };
const BOOT_ISO: Shape = Shape { max_args: 0, props: &["file"], children: None, repeated: &[] };
const KICKSTART: Shape = Shape {
    max_args: 0,
    props: &["template", "channel", "image", "user"],
    children: Some(&["password-hash-file"]),
    repeated: &[],
};
const GUEST: Shape = Shape {
    max_args: 1,
    props: &["role", "vrrp-state", "priority"],
    children: Some(&["memory", "vcpus", "disk", "os-variant", "address"]),
    repeated: &[],
};
const PACKAGE_MAP: Shape = Shape { max_args: 0, props: &[], children: Some(&["package"]), repeated: &["package"] };
const PACKAGE: Shape = Shape { max_args: usize::MAX, props: &["debian", "drop"], children: None, repeated: &[] };
const STORE: Shape = Shape { max_args: 0, props: &["keep-generations"], children: None, repeated: &[] };
const LIBVIRT: Shape = Shape { max_args: 0, props: &["uri"], children: None, repeated: &[] };
/// A child that holds one value, like `bridge "edgelab0"`.
const VALUE: Shape = Shape { max_args: 1, props: &[], children: None, repeated: &[] };

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A value from the lab file and where it was written.
#[derive(Debug, Clone)]
struct Spanned<T> {
    value: T,
    span: SourceSpan,
}

/// Where a value lives on a node: a property (`port=5000`) or the single
/// argument of a child node (`memory "2GiB"`).
#[derive(Clone, Copy)]
enum Slot<'a> {
    Prop(&'a str),
    Child(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

/// A name another node refers to, checked once every node is read.
struct Reference {
    /// What refers, for the message: "parent image", "kickstart image".
    what: String,
    target: Target,
    name: String,
    span: SourceSpan,
}

#[derive(Clone, PartialEq, Eq)]
enum Target {
    Image,
    Channel,
    Blueprint,
    Build { container: String },
}

struct Parser<'t> {
    text: &'t str,
    root: PathBuf,
    diags: Vec<Diagnostic>,
}

/// Spans kept beside the typed values for the cross checks.
#[derive(Default)]
struct Spans {
    references: Vec<Reference>,
    /// Image name -> (parent, span of `parent=`).
    image_parents: Vec<(String, Option<Spanned<String>>)>,
    /// Each channel's ref, for the check that no two share one.
    channel_refs: Vec<Spanned<String>>,
    /// (container, build, from) for build cycles.
    build_froms: Vec<(String, String, Option<Spanned<String>>)>,
    names: Vec<(&'static str, Spanned<String>)>,
    /// Kinds with a declaration whose name is missing: references to them are
    /// not checked, since the reader cannot tell which one was meant.
    unnamed: Vec<Target>,
    guest_priorities: Vec<Spanned<u8>>,
    guest_masters: Vec<SourceSpan>,
    guest_addresses: Vec<Spanned<Ipv4Addr>>,
    registry_port: Option<Spanned<u16>>,
    file_server_port: Option<Spanned<u16>>,
    lab_span: Option<SourceSpan>,
}

impl Parser<'_> {
    fn report(&mut self, span: SourceSpan, message: String, label: &str, help: Option<String>) {
        self.diags.push(Diagnostic { message, span, label: label.to_string(), help });
    }

    fn kdl_syntax(&mut self, err: kdl::KdlError) {
        for diag in err.diagnostics {
            let message = diag.message.unwrap_or_else(|| "invalid KDL".into());
            self.report(
                diag.span,
                format!("KDL syntax: {}", lowercase_first(message.trim_end_matches('.'))),
                diag.label.as_deref().unwrap_or("here"),
                Some(diag.help.unwrap_or_else(|| {
                    "lab files are KDL v2: strings in quotes, booleans #true/#false, blocks in { }".into()
                })),
            );
        }
    }
}

#[derive(Clone, Copy)]
enum PathKind {
    File,
    Folder,
}

fn first<'d>(doc: &'d KdlDocument, name: &str) -> Option<&'d KdlNode> {
    doc.nodes().iter().find(|node| node.name().value() == name)
}

fn nodes<'d>(doc: &'d KdlDocument, name: &'d str) -> impl Iterator<Item = &'d KdlNode> {
    doc.nodes().iter().filter(move |node| node.name().value() == name)
}

fn child<'n>(node: &'n KdlNode, name: &str) -> Option<&'n KdlNode> {
    node.children().and_then(|block| first(block, name))
}

fn children_named<'n>(node: &'n KdlNode, name: &'n str) -> impl Iterator<Item = &'n KdlNode> {
    node.children().into_iter().flat_map(move |block| nodes(block, name))
}

fn name_text(name: &Option<Spanned<String>>) -> &str {
    name.as_ref().map(|it| it.value.as_str()).unwrap_or("")
}

/// A name unique within a container: `httpd/v1`.
fn scoped(container: &str, name: &Spanned<String>) -> Spanned<String> {
    Spanned { value: format!("{container}\u{0}{}", name.value), span: name.span }
}

fn display_scoped(name: &str) -> String {
    name.replace('\u{0}', "/")
}

fn slot_name(slot: Slot<'_>) -> String {
    match slot {
        Slot::Prop(key) | Slot::Child(key) => format!("`{key}`"),
    }
}

fn value_kind(value: &KdlValue) -> String {
    match value {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a number with a fraction",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
    .into()
}

fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The candidate closest to `word`, when it is close enough to be a typo.
fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .map(|candidate| (strsim::jaro_winkler(&word, &candidate.to_lowercase()), *candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// A file in the same folder whose name is close to the missing one's.
fn close_sibling(path: &Path) -> Option<String> {
    let wanted = path.file_name()?.to_string_lossy().into_owned();
    let entries = std::fs::read_dir(path.parent()?).ok()?;
    let names: Vec<String> =
        entries.filter_map(|entry| entry.ok()).map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    did_you_mean(&wanted, &names).map(str::to_string)
}

/// `a/./b/../c` as `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn parse_ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse().map_err(|_| "write an IPv4 address like \"192.168.122.11\", or \"auto\"".to_string())
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| "write an IP address like \"192.168.122.1\", or \"auto\"".to_string())
}

fn parse_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    let example = "write an IPv4 address with its prefix length, like \"192.168.122.1/24\", or \"auto\"";
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(format!("the prefix length is missing: {example}"));
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| example.to_string())?;
    let prefix: u8 = prefix.parse().map_err(|_| example.to_string())?;
    if prefix > 32 {
        return Err(format!("an IPv4 prefix length is at most 32: {example}"));
    }
    Ok(Ipv4Cidr { addr, prefix })
}

/// Bytes in a size like "2GiB", "2048MiB" or "512M" (K, M, G, T are powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let help = "write a size like \"2GiB\", \"2048MiB\" or \"512M\" (units K, M, G, T, with or without \"iB\")";
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| help.to_string())?;
    let multiplier: u64 = match unit.trim() {
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return Err(help.to_string()),
    };
    number.checked_mul(multiplier).ok_or_else(|| "the size is too large".to_string())
}

/// A libvirt URI for QEMU (libvirt's `driver[+transport]://[user@][host][:port]/path`):
/// the `qemu` driver, a transport libvirt knows, a host exactly when the
/// transport is remote, `/system` or `/session`.
fn check_libvirt_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("has no `://`".into());
    };
    let (driver, transport) = scheme.split_once('+').map_or((scheme, None), |(d, t)| (d, Some(t)));
    if driver != "qemu" {
        return Err(format!("names the `{driver}` driver; the guests are QEMU domains"));
    }
    if let Some(transport) = transport
        && !["ssh", "libssh", "libssh2", "tcp", "tls", "unix", "ext"].contains(&transport)
    {
        return Err(format!("names the unknown transport `{transport}`"));
    }
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let path = path.split('?').next().unwrap_or("");
    if !["system", "session"].contains(&path) {
        return Err("must end in /system or /session".into());
    }
    let remote = transport.is_some_and(|transport| transport != "unix");
    if remote && authority.is_empty() {
        return Err("names a remote transport but no host".into());
    }
    if !remote && !authority.is_empty() {
        return Err("names a host but no remote transport (write qemu+ssh://...)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Ok(2 * GIB));
        assert_eq!(parse_size("2048MiB"), Ok(2 * GIB));
        assert_eq!(parse_size("512M"), Ok(512 * MIB));
        assert!(parse_size("2 gigs").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.1/8").map(|it| it.prefix), Ok(8));
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_cidr("10.0.0.256/24").is_err());
    }

    #[test]
    fn libvirt_uris() {
        for good in
            ["qemu:///system", "qemu:///session", "qemu+ssh://root@edge-host/system", "qemu+tls://h:16514/system"]
        {
            assert_eq!(check_libvirt_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "qemu://system",
            "xen:///system",
            "qemu+ssh:///system",
            "qemu://host/system",
            "qemu+pigeon://h/system",
            "qemu:///",
        ] {
            assert!(check_libvirt_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
    }
}
