//! Parsing `lab.kdl` into a `Lab`: KDL nodes become typed, validated values.
//!
//! The grammar is declared once, as a `Shape` per node kind (which arguments,
//! properties and children it may have); a small cursor layer (`string`,
//! `integer`, `boolean` over a `Slot`, a property or a child's value) reads
//! values and reports every mistake as a diagnostic with the span of the
//! offending entry. After the nodes are read, cross checks find duplicate
//! names, dangling references, cycles and VRRP conflicts. Nothing stops at the
//! first mistake: all of them are reported at once, and none is a panic.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    ops::RangeInclusive,
    path::{Component, Path, PathBuf},
};

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::{
    AccelSetting, Auto, Backend, Backends, Blueprint, BootIso, Container, ContainerBuild, ContainerTag, FileServer,
    Guest, GuestRole, Image, ImageType, Ipv4Cidr, Kickstart, Lab, Network, PackageAction, PackageMapping, Registry,
    StoreSettings, VrrpState,
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
    "file-server",
    "boot-iso",
    "kickstart",
    "guest",
    "package-map",
    "store",
    "libvirt",
];
const TOP_LEVEL_REPEATED: &[&str] = &["container", "blueprint", "image", "guest"];

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
const PACKAGES: Shape = Shape { max_args: usize::MAX, props: &[], children: None, repeated: &[] };
const FILE_SERVER: Shape = Shape { max_args: 0, props: &["address", "port"], children: None, repeated: &[] };
const BOOT_ISO: Shape = Shape { max_args: 0, props: &["file"], children: None, repeated: &[] };
const KICKSTART: Shape = Shape {
    max_args: 0,
    props: &["template", "image", "user"],
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

    // ---- the lab, node by node ----

    fn lab(&mut self, doc: &KdlDocument, file: &Path) -> Lab {
        let mut spans = Spans::default();
        self.check_block(doc, TOP_LEVEL, TOP_LEVEL_REPEATED, "at the top level");

        let (name, backends, accel) = self.lab_node(doc, &mut spans);
        let network = self.network(first(doc, "network"));
        let registry = self.registry(first(doc, "registry"), &mut spans);
        let containers: Vec<Container> = nodes(doc, "container").map(|node| self.container(node, &mut spans)).collect();
        let blueprints: Vec<Blueprint> = nodes(doc, "blueprint").map(|node| self.blueprint(node, &mut spans)).collect();
        let images: Vec<Image> = nodes(doc, "image").map(|node| self.image(node, &mut spans)).collect();
        let file_server = self.file_server(first(doc, "file-server"), &mut spans);
        let boot_iso = first(doc, "boot-iso").and_then(|node| self.boot_iso(node));
        let guests: Vec<Guest> = nodes(doc, "guest").map(|node| self.guest(node, &mut spans)).collect();
        let kickstart = self.kickstart(first(doc, "kickstart"), &images, !guests.is_empty(), &mut spans);
        let package_map = first(doc, "package-map").map(|node| self.package_map(node, &mut spans)).unwrap_or_default();
        let store = self.store(first(doc, "store"));
        let libvirt_uri = self.libvirt_uri(first(doc, "libvirt"));

        self.check_duplicates(&spans);
        self.check_references(&spans, &containers, &blueprints, &images);
        self.check_image_cycles(&spans);
        self.check_build_cycles(&spans);
        self.check_guests(&spans);
        self.check_ports(&spans);
        self.check_subnet(doc, &network, &guests);

        Lab {
            name,
            file: file.to_path_buf(),
            root: self.root.clone(),
            backends,
            accel,
            network,
            registry,
            containers,
            blueprints,
            images,
            file_server,
            boot_iso,
            kickstart,
            guests,
            package_map,
            store,
            libvirt_uri,
            check_key: None,
        }
    }

    /// The VIP and every given guest address on the host address's subnet:
    /// the guests reach each other and the VIP only there.
    fn check_subnet(&mut self, doc: &KdlDocument, network: &Network, guests: &[Guest]) {
        let Auto::Given(host) = network.host_address else { return };
        let mask = if host.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(host.prefix)) };
        let subnet = Ipv4Addr::from(u32::from(host.addr) & mask);
        let outside = |addr: Ipv4Addr| u32::from(addr) & mask != u32::from(subnet);
        let help = |what: &str| Some(format!("pick {what} in {subnet}/{}, or write \"auto\"", host.prefix));
        if let Auto::Given(vip) = network.vip
            && outside(vip.addr)
            && let Some(entry) = first(doc, "network").and_then(|node| child(node, "vip")).and_then(|it| it.entry(0))
        {
            self.report(
                entry.span(),
                format!("the virtual IP {} is outside the host's subnet {subnet}/{}", vip.addr, host.prefix),
                "no guest could reach it",
                help("an address"),
            );
        }
        for guest in guests {
            let Auto::Given(address) = guest.address else { continue };
            let node = nodes(doc, "guest")
                .find(|node| node.entry(0).and_then(|it| it.value().as_string()) == Some(guest.name.as_str()));
            if outside(address)
                && let Some(entry) = node.and_then(|node| child(node, "address")).and_then(|it| it.entry(0))
            {
                self.report(
                    entry.span(),
                    format!(
                        "guest {}'s address {address} is outside the host's subnet {subnet}/{}",
                        guest.name, host.prefix
                    ),
                    "off the lab's segment",
                    help("its address"),
                );
            }
        }
    }

    fn lab_node(&mut self, doc: &KdlDocument, spans: &mut Spans) -> (String, Backends, AccelSetting) {
        let mut backends =
            Backends { default: Backend::Auto, registry: None, compose: None, boot_media: None, guests: None };
        let Some(node) = first(doc, "lab") else {
            self.report(
                (0, 0).into(),
                "the lab file has no `lab` node".into(),
                "",
                Some("start the file with: lab \"my-lab\" { backend \"auto\" }".into()),
            );
            return (String::new(), backends, AccelSetting::Auto);
        };
        spans.lab_span = Some(node.name().span());
        self.check_shape(node, &LAB);
        let name = self.name_arg(node, "lab", "lab \"rfe-demo\"");
        if let Some(value) = self.string(node, Slot::Child("backend"), Need::Optional, "backend \"auto\"") {
            backends.default = self.backend(&value);
        }
        if let Some(pinned) = child(node, "backends") {
            self.check_shape(pinned, &BACKENDS);
            for (kind, field) in [
                ("registry", &mut backends.registry),
                ("compose", &mut backends.compose),
                ("boot-media", &mut backends.boot_media),
                ("guests", &mut backends.guests),
            ] {
                let example = format!("{kind} \"local\"");
                if let Some(value) = self.string(pinned, Slot::Child(kind), Need::Optional, &example) {
                    *field = Some(self.backend(&value));
                }
            }
        }
        let mut accel = AccelSetting::Auto;
        if let Some(value) = self.string(node, Slot::Child("accel"), Need::Optional, "accel \"auto\"") {
            let index = self.choice(&value, "accelerator", &AccelSetting::WORDS);
            accel = index.and_then(|index| AccelSetting::from_word(AccelSetting::WORDS[index])).unwrap_or_default();
        }
        (name.map(|it| it.value).unwrap_or_default(), backends, accel)
    }

    fn backend(&mut self, value: &Spanned<String>) -> Backend {
        match self.choice(value, "backend", &["auto", "rhel", "local"]) {
            Some(1) => Backend::Rhel,
            Some(2) => Backend::Local,
            _ => Backend::Auto,
        }
    }

    fn network(&mut self, node: Option<&KdlNode>) -> Network {
        let mut network = Network {
            host_address: Auto::Auto,
            vip: Auto::Auto,
            bridge: "edgelab0".into(),
            namespace: "edgelab".into(),
            vrrp_router_id: 51,
        };
        let Some(node) = node else { return network };
        self.check_shape(node, &NETWORK);
        let host_example = "host-address \"192.168.122.1/24\"";
        if let Some(value) = self.string(node, Slot::Child("host-address"), Need::Optional, host_example) {
            network.host_address = self.auto_or(&value, parse_cidr, "host address");
        }
        if let Some(value) = self.string(node, Slot::Child("vip"), Need::Optional, "vip \"192.168.122.100/24\"") {
            network.vip = self.auto_or(&value, parse_cidr, "virtual IP");
        }
        if let (Auto::Given(host), Auto::Given(vip)) = (network.host_address, network.vip)
            && host.addr == vip.addr
            && let Some(entry) = child(node, "vip").and_then(|it| it.entry(0))
        {
            self.report(
                entry.span(),
                format!("the virtual IP {} is the host's own address", vip.addr),
                "same as host-address",
                Some("pick a free address on the guests' subnet, or write vip \"auto\" (.100 on the subnet)".into()),
            );
        }
        if let Some(value) = self.string(node, Slot::Child("bridge"), Need::Optional, "bridge \"edgelab0\"") {
            self.check_interface_name(&value, "bridge");
            network.bridge = value.value;
        }
        if let Some(value) = self.string(node, Slot::Child("namespace"), Need::Optional, "namespace \"edgelab\"") {
            self.check_simple_name(&value, "network namespace");
            network.namespace = value.value;
        }
        let example = "vrrp-router-id 51";
        if let Some(value) = self.integer(node, Slot::Child("vrrp-router-id"), Need::Optional, example, 1..=255) {
            network.vrrp_router_id = value.value as u8;
        }
        network
    }

    fn registry(&mut self, node: Option<&KdlNode>, spans: &mut Spans) -> Registry {
        let mut registry = Registry { address: Auto::Auto, port: 5000, insecure: true };
        let Some(node) = node else { return registry };
        self.check_shape(node, &REGISTRY);
        if let Some(port) = self.port(node, "port=5000") {
            registry.port = port.value;
            spans.registry_port = Some(port);
        }
        if let Some(value) = self.boolean(node, Slot::Prop("insecure"), Need::Optional, "insecure=#true") {
            registry.insecure = value.value;
        }
        if let Some(value) = self.string(node, Slot::Child("address"), Need::Optional, "address \"192.168.122.1\"") {
            registry.address = self.auto_or(&value, parse_ip, "registry address");
        }
        registry
    }

    fn container(&mut self, node: &KdlNode, spans: &mut Spans) -> Container {
        self.check_shape(node, &CONTAINER);
        let name = self.name_arg(node, "container", "container \"httpd\" { build \"v1\" context=\"guest/app/v1\" }");
        let container_name = name.as_ref().map(|it| it.value.clone()).unwrap_or_default();
        if let Some(name) = &name {
            self.check_repository_name(name);
            spans.names.push(("container", name.clone()));
        }
        let mut builds = Vec::new();
        let mut tags = Vec::new();
        for build_node in children_named(node, "build") {
            self.check_shape(build_node, &BUILD);
            let example = "build \"v1\" context=\"guest/app/v1\"";
            let build_name = self.name_arg(build_node, "build", example);
            match &build_name {
                Some(build_name) => {
                    self.check_tag_name(build_name, "build");
                    spans.names.push(("build", scoped(&container_name, build_name)));
                }
                None => spans.unnamed.push(Target::Build { container: container_name.clone() }),
            }
            let context = self
                .string(build_node, Slot::Prop("context"), Need::Required, "context=\"guest/app/v1\"")
                .map(|path| self.existing_path(&path, PathKind::Folder, "build context"));
            let from = self.string(build_node, Slot::Prop("from"), Need::Optional, "from=\"v1\"");
            if let Some(from) = &from {
                spans.references.push(Reference {
                    what: format!("build `{}` of `{container_name}` is built from", name_text(&build_name)),
                    target: Target::Build { container: container_name.clone() },
                    name: from.value.clone(),
                    span: from.span,
                });
            }
            let build_name = build_name.map(|it| it.value).unwrap_or_default();
            spans.build_froms.push((container_name.clone(), build_name.clone(), from.clone()));
            builds.push(ContainerBuild {
                name: build_name,
                context: context.unwrap_or_default(),
                from: from.map(|it| it.value),
            });
        }
        if builds.is_empty()
            && let Some(name) = &name
        {
            self.report(
                name.span,
                format!("container `{}` has no builds", name.value),
                "nothing to build",
                Some("add a build in its block: build \"v1\" context=\"guest/app/v1\"".into()),
            );
        }
        for tag_node in children_named(node, "tag") {
            self.check_shape(tag_node, &TAG);
            let tag_name = self.name_arg(tag_node, "tag", "tag \"prod\" \"v1\"");
            if let Some(tag_name) = &tag_name {
                self.check_tag_name(tag_name, "tag");
                spans.names.push(("tag", scoped(&container_name, tag_name)));
                if builds.iter().any(|build| build.name == tag_name.value) {
                    self.report(
                        tag_name.span,
                        format!("tag `{}` has the name of a build of `{container_name}`", tag_name.value),
                        "would overwrite the pushed build",
                        Some("give the tag its own name, like \"prod\"".into()),
                    );
                }
            }
            let build = self.positional(tag_node, 1, "the build it points at", "tag \"prod\" \"v1\"");
            if let Some(build) = &build {
                spans.references.push(Reference {
                    what: format!("tag `{}` of `{container_name}` points at build", name_text(&tag_name)),
                    target: Target::Build { container: container_name.clone() },
                    name: build.value.clone(),
                    span: build.span,
                });
            }
            tags.push(ContainerTag {
                name: tag_name.map(|it| it.value).unwrap_or_default(),
                build: build.map(|it| it.value).unwrap_or_default(),
            });
        }
        Container { name: container_name, builds, tags }
    }

    fn blueprint(&mut self, node: &KdlNode, spans: &mut Spans) -> Blueprint {
        self.check_shape(node, &BLUEPRINT);
        let name = self.name_arg(node, "blueprint", "blueprint \"RFE\" file=\"guest/blueprints/RFE.toml\"");
        match &name {
            Some(name) => {
                self.check_simple_name(name, "blueprint name");
                spans.names.push(("blueprint", name.clone()));
            }
            None => spans.unnamed.push(Target::Blueprint),
        }
        let file = self
            .string(node, Slot::Prop("file"), Need::Required, "file=\"guest/blueprints/RFE.toml\"")
            .map(|path| self.existing_path(&path, PathKind::File, "blueprint file"));
        Blueprint { name: name.map(|it| it.value).unwrap_or_default(), file: file.unwrap_or_default() }
    }

    fn image(&mut self, node: &KdlNode, spans: &mut Spans) -> Image {
        self.check_shape(node, &IMAGE);
        let example = "image \"v1\" type=\"edge-commit\" blueprint=\"RFE\" ref=\"rhel/8/x86_64/edge\"";
        let name = self.name_arg(node, "image", example);
        match &name {
            Some(name) => {
                self.check_simple_name(name, "image name");
                spans.names.push(("image", name.clone()));
            }
            None => spans.unnamed.push(Target::Image),
        }
        let image_name = name.as_ref().map(|it| it.value.clone()).unwrap_or_default();
        if let Some(value) = self.string(node, Slot::Prop("type"), Need::Optional, "type=\"edge-commit\"") {
            self.choice(&value, "image type", &["edge-commit"]);
        }
        let blueprint = self.string(node, Slot::Prop("blueprint"), Need::Required, "blueprint=\"RFE\"");
        if let Some(blueprint) = &blueprint {
            spans.references.push(Reference {
                what: format!("image `{image_name}` uses blueprint"),
                target: Target::Blueprint,
                name: blueprint.value.clone(),
                span: blueprint.span,
            });
        }
        let ostree_ref = self.string(node, Slot::Prop("ref"), Need::Required, "ref=\"rhel/8/x86_64/edge\"");
        if let Some(ostree_ref) = &ostree_ref {
            self.check_ostree_ref(ostree_ref);
        }
        let parent = self.string(node, Slot::Prop("parent"), Need::Optional, "parent=\"v1\"");
        if let Some(parent) = &parent {
            spans.references.push(Reference {
                what: format!("image `{image_name}` has parent"),
                target: Target::Image,
                name: parent.value.clone(),
                span: parent.span,
            });
        }
        spans.image_parents.push((image_name.clone(), parent.clone()));
        let mut extra_packages = Vec::new();
        for packages in children_named(node, "packages") {
            self.check_shape(packages, &PACKAGES);
            let values = self.string_args(packages, 0, "packages \"strace\"");
            if values.is_empty() {
                self.report(
                    packages.name().span(),
                    "`packages` lists no packages".into(),
                    "empty",
                    Some("name them: packages \"strace\" \"htop\"".into()),
                );
            }
            for package in values {
                self.check_package_name(&package);
                extra_packages.push(package.value);
            }
        }
        Image {
            name: image_name,
            image_type: ImageType::EdgeCommit,
            blueprint: blueprint.map(|it| it.value).unwrap_or_default(),
            ostree_ref: ostree_ref.map(|it| it.value).unwrap_or_default(),
            parent: parent.map(|it| it.value),
            extra_packages,
        }
    }

    fn file_server(&mut self, node: Option<&KdlNode>, spans: &mut Spans) -> FileServer {
        let mut file_server = FileServer { address: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port: 8000 };
        let Some(node) = node else { return file_server };
        self.check_shape(node, &FILE_SERVER);
        if let Some(value) = self.string(node, Slot::Prop("address"), Need::Optional, "address=\"0.0.0.0\"")
            && let Some(address) = self.parsed(&value, parse_ip, "file server address")
        {
            file_server.address = address;
        }
        if let Some(port) = self.port(node, "port=8000") {
            file_server.port = port.value;
            spans.file_server_port = Some(port);
        }
        file_server
    }

    fn boot_iso(&mut self, node: &KdlNode) -> Option<BootIso> {
        self.check_shape(node, &BOOT_ISO);
        let example = "file=\"/var/lib/libvirt/images/rhel-8-x86_64-boot.iso\"";
        // Only the RHEL world reads the ISO, so it need not exist here.
        let file = self.string(node, Slot::Prop("file"), Need::Required, example)?;
        Some(BootIso { file: self.resolve(&file.value) })
    }

    fn kickstart(&mut self, node: Option<&KdlNode>, images: &[Image], needed: bool, spans: &mut Spans) -> Kickstart {
        let default_image = images.iter().find(|image| image.parent.is_none()).map(|image| image.name.clone());
        let mut kickstart = Kickstart {
            template: self.root.join("guest/kickstart/edge.ks.in"),
            image: default_image.clone().unwrap_or_default(),
            user: "core".into(),
            password_hash_file: None,
        };
        let Some(node) = node else {
            if needed {
                self.report(
                    spans.lab_span.unwrap_or_else(|| (0, 0).into()),
                    "the lab has guests but no `kickstart`".into(),
                    "in this lab",
                    Some("add: kickstart template=\"guest/kickstart/edge.ks.in\" image=\"v1\" user=\"core\"".into()),
                );
            }
            return kickstart;
        };
        self.check_shape(node, &KICKSTART);
        let example = "template=\"guest/kickstart/edge.ks.in\"";
        if let Some(template) = self.string(node, Slot::Prop("template"), Need::Required, example) {
            kickstart.template = self.existing_path(&template, PathKind::File, "kickstart template");
        }
        match self.string(node, Slot::Prop("image"), Need::Optional, "image=\"v1\"") {
            Some(image) => {
                spans.references.push(Reference {
                    what: "the kickstart installs image".into(),
                    target: Target::Image,
                    name: image.value.clone(),
                    span: image.span,
                });
                kickstart.image = image.value;
            }
            None if default_image.is_none() && needed => self.report(
                node.name().span(),
                "the kickstart has no image to install".into(),
                "no image",
                Some("declare an image without a parent, or name one with image=\"v1\"".into()),
            ),
            None => {}
        }
        if let Some(user) = self.string(node, Slot::Prop("user"), Need::Optional, "user=\"core\"") {
            self.check_user_name(&user);
            kickstart.user = user.value;
        }
        let example = "password-hash-file \"guest/kickstart/core.passwd.hash\"";
        if let Some(path) = self.string(node, Slot::Child("password-hash-file"), Need::Optional, example) {
            kickstart.password_hash_file = Some(self.existing_path(&path, PathKind::File, "password hash file"));
        }
        kickstart
    }

    fn guest(&mut self, node: &KdlNode, spans: &mut Spans) -> Guest {
        self.check_shape(node, &GUEST);
        let example = "guest \"edge-device-1\" role=\"primary\" vrrp-state=\"MASTER\" priority=255";
        let name = self.name_arg(node, "guest", example);
        if let Some(name) = &name {
            self.check_host_name(name);
            spans.names.push(("guest", name.clone()));
        }
        let role = match self.string(node, Slot::Prop("role"), Need::Required, "role=\"primary\"") {
            Some(value) => match self.choice(&value, "role", &["primary", "backup"]) {
                Some(1) => GuestRole::Backup,
                _ => GuestRole::Primary,
            },
            None => GuestRole::Primary,
        };
        let vrrp_state = match self.string(node, Slot::Prop("vrrp-state"), Need::Optional, "vrrp-state=\"MASTER\"") {
            Some(value) => match self.choice(&value, "VRRP state", &["MASTER", "BACKUP"]) {
                Some(1) => VrrpState::Backup,
                Some(_) => {
                    spans.guest_masters.push(value.span);
                    VrrpState::Master
                }
                None => VrrpState::Backup,
            },
            // The primary starts as MASTER, a backup as BACKUP.
            None => match role {
                GuestRole::Primary => {
                    spans.guest_masters.push(node.name().span());
                    VrrpState::Master
                }
                GuestRole::Backup => VrrpState::Backup,
            },
        };
        let priority = self.integer(node, Slot::Prop("priority"), Need::Required, "priority=255", 1..=255).map(|it| {
            let priority = Spanned { value: it.value as u8, span: it.span };
            spans.guest_priorities.push(priority.clone());
            priority.value
        });
        let memory_mib = self
            .string(node, Slot::Child("memory"), Need::Optional, "memory \"2GiB\"")
            .and_then(|value| self.size(&value, "memory", MIB, "MiB"))
            .map(|bytes| bytes / MIB)
            .unwrap_or(2048);
        let vcpus = self
            .integer(node, Slot::Child("vcpus"), Need::Optional, "vcpus 2", 1..=1024)
            .map(|it| it.value as u32)
            .unwrap_or(2);
        let disk_gib = self
            .string(node, Slot::Child("disk"), Need::Optional, "disk \"10GiB\"")
            .and_then(|value| self.size(&value, "disk", GIB, "GiB"))
            .map(|bytes| bytes / GIB)
            .unwrap_or(10);
        let os_variant = self
            .string(node, Slot::Child("os-variant"), Need::Optional, "os-variant \"rhel8.6\"")
            .map(|value| {
                self.check_simple_name(&value, "OS variant");
                value.value
            })
            .unwrap_or_else(|| "rhel8.6".into());
        let address = match self.string(node, Slot::Child("address"), Need::Optional, "address \"192.168.122.11\"") {
            Some(value) => {
                let address = self.auto_or(&value, parse_ipv4, "guest address");
                if let Auto::Given(addr) = address {
                    spans.guest_addresses.push(Spanned { value: addr, span: value.span });
                }
                address
            }
            None => Auto::Auto,
        };
        Guest {
            name: name.map(|it| it.value).unwrap_or_default(),
            role,
            vrrp_state,
            priority: priority.unwrap_or(1),
            memory_mib,
            vcpus,
            disk_gib,
            os_variant,
            address,
        }
    }

    fn package_map(&mut self, node: &KdlNode, spans: &mut Spans) -> Vec<PackageMapping> {
        self.check_shape(node, &PACKAGE_MAP);
        let mut mappings = Vec::new();
        for package in children_named(node, "package") {
            self.check_shape(package, &PACKAGE);
            let example = "package \"container-tools\" debian=\"podman\"";
            let Some(rpm) = self.name_arg(package, "package", example) else { continue };
            spans.names.push(("package-map entry", rpm.clone()));
            let more = self.string_args(package, 1, "package \"container-tools\" debian=\"podman\" \"buildah\"");
            let debian = self.string(package, Slot::Prop("debian"), Need::Optional, "debian=\"podman\"");
            let drop = self.string(package, Slot::Prop("drop"), Need::Optional, "drop=\"why it is not needed\"");
            let action = match (debian, drop) {
                (Some(first), None) => {
                    let debs: Vec<Spanned<String>> = std::iter::once(first).chain(more).collect();
                    for deb in &debs {
                        self.check_package_name(deb);
                    }
                    PackageAction::Debian(debs.into_iter().map(|it| it.value).collect())
                }
                (None, Some(reason)) => {
                    if let Some(extra) = more.first() {
                        self.report(
                            extra.span,
                            format!("`{}` is dropped, yet lists Debian packages", rpm.value),
                            "unexpected with drop=",
                            Some("either drop=\"reason\" or debian=\"pkg\" \"more\", not both".into()),
                        );
                    }
                    if reason.value.trim().is_empty() {
                        self.report(
                            reason.span,
                            format!("dropping `{}` needs a reason", rpm.value),
                            "empty reason",
                            Some("say why the package is not needed: drop=\"SELinux tooling; no SELinux\"".into()),
                        );
                    }
                    PackageAction::Drop { reason: reason.value }
                }
                (Some(debian), Some(_)) => {
                    self.report(
                        debian.span,
                        format!("`{}` is both mapped and dropped", rpm.value),
                        "debian= and drop= together",
                        Some("keep one: debian=\"pkg\" to map it, drop=\"reason\" to leave it out".into()),
                    );
                    PackageAction::Drop { reason: String::new() }
                }
                (None, None) => {
                    self.report(
                        rpm.span,
                        format!("package `{}` says neither what to install nor why to drop it", rpm.value),
                        "needs debian= or drop=",
                        Some("add debian=\"debian-name\" or drop=\"reason\"".into()),
                    );
                    PackageAction::Drop { reason: String::new() }
                }
            };
            mappings.push(PackageMapping { rpm: rpm.value, action });
        }
        mappings
    }

    fn store(&mut self, node: Option<&KdlNode>) -> StoreSettings {
        let mut settings = StoreSettings { keep_generations: 3 };
        let Some(node) = node else { return settings };
        self.check_shape(node, &STORE);
        let example = "keep-generations=3";
        if let Some(value) = self.integer(node, Slot::Prop("keep-generations"), Need::Optional, example, 0..=1000) {
            settings.keep_generations = value.value as u32;
        }
        settings
    }

    /// `libvirt uri="qemu+ssh://root@host/system"`: the libvirt connection
    /// of the RHEL world's guests (`qemu:///system` when not given).
    fn libvirt_uri(&mut self, node: Option<&KdlNode>) -> String {
        let default = "qemu:///system".to_string();
        let Some(node) = node else { return default };
        self.check_shape(node, &LIBVIRT);
        let example = "uri=\"qemu+ssh://root@host.example.com/system\"";
        let Some(value) = self.string(node, Slot::Prop("uri"), Need::Required, example) else { return default };
        if let Err(problem) = check_libvirt_uri(&value.value) {
            self.report(
                value.span,
                format!("libvirt URI `{}` {problem}", value.value),
                "not a QEMU connection",
                Some(format!("write e.g. {example}, or qemu:///system for this host")),
            );
        }
        value.value
    }

    // ---- cross checks ----

    fn check_duplicates(&mut self, spans: &Spans) {
        let mut seen: BTreeMap<(&str, &str), SourceSpan> = BTreeMap::new();
        for (what, name) in &spans.names {
            match seen.get(&(*what, name.value.as_str())) {
                Some(first) => {
                    let (line, _) = diag::line_column(self.text, first.offset());
                    self.report(
                        name.span,
                        format!("{what} `{}` is declared twice", display_scoped(&name.value)),
                        "declared again",
                        Some(format!("the first is on line {line}: rename or remove one of them")),
                    );
                }
                None => {
                    seen.insert((what, name.value.as_str()), name.span);
                }
            }
        }
    }

    fn check_references(
        &mut self,
        spans: &Spans,
        containers: &[Container],
        blueprints: &[Blueprint],
        images: &[Image],
    ) {
        for reference in &spans.references {
            if spans.unnamed.contains(&reference.target) {
                continue;
            }
            let (noun, declared): (&str, Vec<&str>) = match &reference.target {
                Target::Image => ("image", images.iter().map(|it| it.name.as_str()).collect()),
                Target::Blueprint => ("blueprint", blueprints.iter().map(|it| it.name.as_str()).collect()),
                Target::Build { container } => (
                    "build",
                    containers
                        .iter()
                        .filter(|it| &it.name == container)
                        .flat_map(|it| it.builds.iter().map(|build| build.name.as_str()))
                        .collect(),
                ),
            };
            if declared.contains(&reference.name.as_str()) {
                continue;
            }
            let help = match did_you_mean(&reference.name, &declared) {
                Some(close) => format!("did you mean `{close}`?"),
                None if declared.is_empty() => format!("declare the {noun} first"),
                None => format!("declared {noun}s: {}", declared.join(", ")),
            };
            self.report(
                reference.span,
                format!("{} `{}`, which is not declared", reference.what, reference.name),
                &format!("no {noun} `{}`", reference.name),
                Some(help),
            );
        }
    }

    fn check_image_cycles(&mut self, spans: &Spans) {
        let edges: Vec<(String, Option<Spanned<String>>)> = spans.image_parents.clone();
        self.check_cycles(&edges, "image parents", "remove one `parent=` so the chain starts at an image without one");
    }

    fn check_build_cycles(&mut self, spans: &Spans) {
        let containers: BTreeSet<&String> = spans.build_froms.iter().map(|(container, _, _)| container).collect();
        for container in containers {
            let edges: Vec<(String, Option<Spanned<String>>)> = spans
                .build_froms
                .iter()
                .filter(|(it, _, _)| it == container)
                .map(|(_, build, from)| (build.clone(), from.clone()))
                .collect();
            let what = format!("builds of `{container}`");
            self.check_cycles(&edges, &what, "remove one `from=` so the chain starts at a build without one");
        }
    }

    /// Reports each cycle in `edges` (node -> the node it is built on) once,
    /// at the edge of its first member.
    fn check_cycles(&mut self, edges: &[(String, Option<Spanned<String>>)], what: &str, help: &str) {
        let next = |name: &str| {
            edges.iter().find(|(it, _)| it == name).and_then(|(_, to)| to.as_ref()).map(|to| to.value.clone())
        };
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for (start, edge) in edges {
            let Some(edge) = edge else { continue };
            if reported.contains(start) {
                continue;
            }
            let mut chain = vec![start.clone()];
            let mut current = edge.value.clone();
            // A cycle through `start` closes within `edges.len()` steps.
            for _ in 0..edges.len() {
                if current == *start {
                    chain.push(current.clone());
                    reported.extend(chain.iter().cloned());
                    self.report(
                        edge.span,
                        format!("{what} form a cycle: {}", chain.join(" -> ")),
                        "closes a cycle",
                        Some(help.to_string()),
                    );
                    break;
                }
                if chain.contains(&current) {
                    break;
                }
                chain.push(current.clone());
                match next(&current) {
                    Some(to) => current = to,
                    None => break,
                }
            }
        }
    }

    fn check_guests(&mut self, spans: &Spans) {
        let mut seen = BTreeSet::new();
        for priority in &spans.guest_priorities {
            if !seen.insert(priority.value) {
                self.report(
                    priority.span,
                    format!("two guests have VRRP priority {}", priority.value),
                    "same priority as another guest",
                    Some("give every guest its own priority: the highest becomes MASTER after a failover".into()),
                );
            }
        }
        for master in spans.guest_masters.iter().skip(1) {
            self.report(
                *master,
                "more than one guest starts as VRRP MASTER".into(),
                "second MASTER",
                Some("one guest is MASTER, the others vrrp-state=\"BACKUP\"".into()),
            );
        }
        let mut seen = BTreeSet::new();
        for address in &spans.guest_addresses {
            if !seen.insert(address.value) {
                self.report(
                    address.span,
                    format!("two guests have the address {}", address.value),
                    "already taken",
                    Some("give every guest its own address, or \"auto\"".into()),
                );
            }
        }
    }

    fn check_ports(&mut self, spans: &Spans) {
        if let (Some(registry), Some(file_server)) = (&spans.registry_port, &spans.file_server_port)
            && registry.value == file_server.value
        {
            self.report(
                file_server.span,
                format!("the file server and the registry both use port {}", registry.value),
                "port taken by the registry",
                Some("both listen on the lab host: pick another port, like port=8000".into()),
            );
        }
    }

    // ---- the cursor layer: reading values with their spans ----

    /// Reports what `node` holds beyond its shape: unknown or repeated
    /// properties, extra arguments, an unexpected block, unknown children.
    fn check_shape(&mut self, node: &KdlNode, shape: &Shape) {
        let kind = node.name().value();
        let mut seen_props = BTreeSet::new();
        let mut n_args = 0;
        for entry in node.entries() {
            match entry.name() {
                Some(key) => {
                    let key_text = key.value();
                    if !shape.props.contains(&key_text) {
                        let help = match (did_you_mean(key_text, shape.props), shape.props.is_empty()) {
                            (Some(close), _) => format!("did you mean `{close}`?"),
                            (None, true) => format!("`{kind}` takes no properties"),
                            (None, false) => format!("`{kind}` takes: {}", quoted_list(shape.props)),
                        };
                        self.report(
                            entry.span(),
                            format!("unknown property `{key_text}` on `{kind}`"),
                            "unknown property",
                            Some(help),
                        );
                    } else if !seen_props.insert(key_text) {
                        self.report(
                            entry.span(),
                            format!("property `{key_text}` is given twice on `{kind}`"),
                            "repeated",
                            Some("keep one of them".into()),
                        );
                    }
                }
                None => {
                    n_args += 1;
                    if n_args > shape.max_args {
                        let help = match shape.max_args {
                            0 => format!("`{kind}` takes no arguments; values go in properties or its block"),
                            1 => format!("`{kind}` takes one argument"),
                            n => format!("`{kind}` takes {n} arguments"),
                        };
                        self.report(
                            entry.span(),
                            format!("unexpected argument on `{kind}`"),
                            "extra argument",
                            Some(help),
                        );
                    }
                }
            }
        }
        match (node.children(), shape.children) {
            (Some(block), Some(allowed)) => self.check_block(block, allowed, shape.repeated, &format!("in `{kind}`")),
            (Some(block), None) => self.report(
                block.span(),
                format!("`{kind}` takes no block"),
                "unexpected block",
                Some("remove the { ... }; its values go in properties".into()),
            ),
            (None, _) => {}
        }
    }

    /// Reports unknown and repeated nodes in a block.
    fn check_block(&mut self, block: &KdlDocument, allowed: &[&str], repeated: &[&str], place: &str) {
        let mut seen = BTreeSet::new();
        for node in block.nodes() {
            let name = node.name().value();
            if !allowed.contains(&name) {
                let help = match did_you_mean(name, allowed) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("expected one of: {}", quoted_list(allowed)),
                };
                self.report(node.name().span(), format!("unknown node `{name}` {place}"), "unknown node", Some(help));
            } else if !repeated.contains(&name) && !seen.insert(name) {
                self.report(
                    node.name().span(),
                    format!("`{name}` is given twice {place}"),
                    "repeated",
                    Some(format!("merge the two `{name}` nodes into one")),
                );
            }
        }
    }

    /// The node's first argument: the name of what it declares.
    fn name_arg(&mut self, node: &KdlNode, what: &str, example: &str) -> Option<Spanned<String>> {
        let name = self.positional(node, 0, "a name", example)?;
        if name.value.trim().is_empty() {
            self.report(name.span, format!("the {what} name is empty"), "empty name", Some(format!("write {example}")));
            return None;
        }
        Some(name)
    }

    /// The string argument at `index` (counting arguments only), required.
    fn positional(&mut self, node: &KdlNode, index: usize, what: &str, example: &str) -> Option<Spanned<String>> {
        let kind = node.name().value();
        let Some(entry) = node.entries().iter().filter(|entry| entry.name().is_none()).nth(index) else {
            self.report(
                node.name().span(),
                format!("`{kind}` needs {what}"),
                &format!("{} missing", what.trim_start_matches("a ").trim_start_matches("the ")),
                Some(format!("write {example}")),
            );
            return None;
        };
        self.as_string(entry, &format!("{what} of `{kind}`"), example)
    }

    /// Every string argument from `start` on.
    fn string_args(&mut self, node: &KdlNode, start: usize, example: &str) -> Vec<Spanned<String>> {
        let kind = node.name().value().to_string();
        let entries: Vec<&KdlEntry> =
            node.entries().iter().filter(|entry| entry.name().is_none()).skip(start).collect();
        entries
            .into_iter()
            .filter_map(|entry| self.as_string(entry, &format!("an argument of `{kind}`"), example))
            .collect()
    }

    /// The entry in `slot`, reporting it missing when required. A child slot's
    /// node is checked to hold exactly one value.
    fn find<'n>(&mut self, node: &'n KdlNode, slot: Slot<'_>, need: Need, example: &str) -> Option<&'n KdlEntry> {
        let kind = node.name().value();
        let found = match slot {
            Slot::Prop(key) => node.entry(key),
            Slot::Child(name) => match child(node, name) {
                Some(value_node) => {
                    self.check_shape(value_node, &VALUE);
                    let value = value_node.entry(0);
                    if value.is_none() {
                        self.report(
                            value_node.name().span(),
                            format!("`{name}` needs a value"),
                            "value missing",
                            Some(format!("write {example}")),
                        );
                        return None;
                    }
                    value
                }
                None => None,
            },
        };
        if found.is_none() && need == Need::Required {
            let (message, label) = match slot {
                Slot::Prop(key) => (format!("`{kind}` needs the property `{key}`"), format!("{key}= missing")),
                Slot::Child(name) => (format!("`{kind}` needs a `{name}` child"), format!("{name} missing")),
            };
            self.report(node.name().span(), message, &label, Some(format!("add {example}")));
        }
        found
    }

    fn string(&mut self, node: &KdlNode, slot: Slot<'_>, need: Need, example: &str) -> Option<Spanned<String>> {
        let entry = self.find(node, slot, need, example)?;
        self.as_string(entry, &slot_name(slot), example)
    }

    fn integer(
        &mut self,
        node: &KdlNode,
        slot: Slot<'_>,
        need: Need,
        example: &str,
        range: RangeInclusive<i128>,
    ) -> Option<Spanned<i128>> {
        let entry = self.find(node, slot, need, example)?;
        let name = slot_name(slot);
        let KdlValue::Integer(value) = entry.value() else {
            self.wrong_type(entry, &name, "an integer", example);
            return None;
        };
        if !range.contains(value) {
            self.report(
                entry.span(),
                format!("{name} {value} is out of range"),
                "out of range",
                Some(format!("{name} must be between {} and {}", range.start(), range.end())),
            );
            return None;
        }
        Some(Spanned { value: *value, span: entry.span() })
    }

    fn boolean(&mut self, node: &KdlNode, slot: Slot<'_>, need: Need, example: &str) -> Option<Spanned<bool>> {
        let entry = self.find(node, slot, need, example)?;
        let KdlValue::Bool(value) = entry.value() else {
            self.wrong_type(entry, &slot_name(slot), "a boolean", example);
            return None;
        };
        Some(Spanned { value: *value, span: entry.span() })
    }

    fn port(&mut self, node: &KdlNode, example: &str) -> Option<Spanned<u16>> {
        let port = self.integer(node, Slot::Prop("port"), Need::Optional, example, 1..=65535)?;
        Some(Spanned { value: port.value as u16, span: port.span })
    }

    fn as_string(&mut self, entry: &KdlEntry, what: &str, example: &str) -> Option<Spanned<String>> {
        match entry.value() {
            KdlValue::String(text) => Some(Spanned { value: text.clone(), span: entry.span() }),
            _ => {
                self.wrong_type(entry, what, "a string", example);
                None
            }
        }
    }

    fn wrong_type(&mut self, entry: &KdlEntry, what: &str, expected: &str, example: &str) {
        let found = value_kind(entry.value());
        self.report(
            entry.span(),
            format!("{what} must be {expected}, not {found}"),
            &found,
            Some(format!("write it like {example}")),
        );
    }

    /// The index of `value` among `choices`, or a report with a suggestion.
    fn choice(&mut self, value: &Spanned<String>, what: &str, choices: &[&str]) -> Option<usize> {
        if let Some(index) = choices.iter().position(|choice| *choice == value.value) {
            return Some(index);
        }
        let help = match did_you_mean(&value.value, choices) {
            Some(close) => format!("did you mean \"{close}\"?"),
            None => format!(
                "expected one of: {}",
                choices.iter().map(|it| format!("\"{it}\"")).collect::<Vec<_>>().join(", ")
            ),
        };
        self.report(value.span, format!("unknown {what} \"{}\"", value.value), &format!("unknown {what}"), Some(help));
        None
    }

    /// `auto`, or a value `parse` accepts.
    fn auto_or<T>(
        &mut self,
        value: &Spanned<String>,
        parse: impl Fn(&str) -> Result<T, String>,
        what: &str,
    ) -> Auto<T> {
        if value.value == "auto" {
            return Auto::Auto;
        }
        match self.parsed(value, parse, what) {
            Some(parsed) => Auto::Given(parsed),
            None => Auto::Auto,
        }
    }

    fn parsed<T>(
        &mut self,
        value: &Spanned<String>,
        parse: impl Fn(&str) -> Result<T, String>,
        what: &str,
    ) -> Option<T> {
        match parse(&value.value) {
            Ok(parsed) => Some(parsed),
            Err(help) => {
                self.report(value.span, format!("invalid {what} \"{}\"", value.value), "not valid here", Some(help));
                None
            }
        }
    }

    /// A size in bytes, a whole multiple of `unit`.
    fn size(&mut self, value: &Spanned<String>, what: &str, unit: u64, unit_name: &str) -> Option<u64> {
        let bytes = self.parsed(value, parse_size, &format!("{what} size"))?;
        if bytes == 0 || bytes % unit != 0 {
            self.report(
                value.span,
                format!("{what} size \"{}\" is not a positive whole number of {unit_name}", value.value),
                "not a whole size",
                Some(format!(
                    "write a whole number of {unit_name}, like \"{}\"",
                    if unit == GIB { "10GiB" } else { "2048MiB" }
                )),
            );
            return None;
        }
        Some(bytes)
    }

    /// `written` resolved against the lab's folder; reports it when it does not exist as `kind`.
    fn existing_path(&mut self, written: &Spanned<String>, kind: PathKind, what: &str) -> PathBuf {
        let path = self.resolve(&written.value);
        let (is_kind, noun) = match kind {
            PathKind::File => (path.is_file(), "file"),
            PathKind::Folder => (path.is_dir(), "folder"),
        };
        if written.value.is_empty() {
            self.report(written.span, format!("{what} path is empty"), "empty path", Some(format!("name the {noun}")));
        } else if !path.exists() {
            let help = match close_sibling(&path) {
                Some(close) => format!("did you mean `{close}`? (paths are relative to the lab file's folder)"),
                None => "paths are relative to the lab file's folder; create it or fix the path".into(),
            };
            self.report(
                written.span,
                format!("{what} `{}` does not exist", written.value),
                &format!("no such {noun}"),
                Some(help),
            );
        } else if !is_kind {
            self.report(
                written.span,
                format!("{what} `{}` is not a {noun}", written.value),
                &format!("not a {noun}"),
                Some(format!("point it at a {noun}")),
            );
        }
        path
    }

    fn resolve(&self, written: &str) -> PathBuf {
        normalize(&self.root.join(written))
    }

    // ---- name checks ----

    fn check_simple_name(&mut self, name: &Spanned<String>, what: &str) {
        let ok = name.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.value.starts_with(['-', '.']);
        if !ok {
            self.report(
                name.span,
                format!("{what} \"{}\" has characters edgelab cannot use in file names", name.value),
                "invalid name",
                Some("use letters, digits, '-', '_' and '.', not starting with '-' or '.'".into()),
            );
        }
    }

    fn check_repository_name(&mut self, name: &Spanned<String>) {
        let ok = !name.value.is_empty()
            && name.value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
            && name.value.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            self.report(
                name.span,
                format!("container name \"{}\" is not a valid registry repository name", name.value),
                "invalid repository name",
                Some("use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit".into()),
            );
        }
    }

    fn check_tag_name(&mut self, name: &Spanned<String>, what: &str) {
        let ok = name.value.len() <= 128
            && name.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.report(
                name.span,
                format!("{what} name \"{}\" is not a valid registry tag", name.value),
                "invalid tag",
                Some("use letters, digits, '-', '_' and '.' (at most 128), not starting with '-' or '.'".into()),
            );
        }
    }

    fn check_host_name(&mut self, name: &Spanned<String>) {
        let ok = name.value.len() <= 63
            && name.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !name.value.starts_with('-')
            && !name.value.ends_with('-');
        if !ok {
            self.report(
                name.span,
                format!("guest name \"{}\" is not a valid host name", name.value),
                "invalid host name",
                Some("use letters, digits and '-' (at most 63), like \"edge-device-1\"".into()),
            );
        }
    }

    fn check_interface_name(&mut self, name: &Spanned<String>, what: &str) {
        let ok = !name.value.is_empty()
            && name.value.len() <= 15
            && name.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.report(
                name.span,
                format!("{what} name \"{}\" is not a valid network interface name", name.value),
                "invalid interface name",
                Some("use at most 15 letters, digits, '-', '_' or '.', like \"edgelab0\"".into()),
            );
        }
    }

    fn check_ostree_ref(&mut self, ostree_ref: &Spanned<String>) {
        let text = &ostree_ref.value;
        let ok = !text.is_empty()
            && !text.starts_with('/')
            && !text.ends_with('/')
            && !text.contains("//")
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !ok {
            self.report(
                ostree_ref.span,
                format!("\"{text}\" is not a valid OSTree ref"),
                "invalid ref",
                Some("write it like \"rhel/8/x86_64/edge\"".into()),
            );
        }
    }

    fn check_package_name(&mut self, package: &Spanned<String>) {
        let ok = !package.value.is_empty()
            && package.value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
        if !ok {
            self.report(
                package.span,
                format!("\"{}\" is not a package name", package.value),
                "invalid package name",
                Some("one package per string: packages \"strace\" \"htop\"".into()),
            );
        }
    }

    fn check_user_name(&mut self, user: &Spanned<String>) {
        let ok = !user.value.is_empty()
            && user.value.len() <= 32
            && user.value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
            && user.value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
        if !ok {
            self.report(
                user.span,
                format!("\"{}\" is not a valid user name", user.value),
                "invalid user name",
                Some("use lowercase letters, digits, '-' and '_', starting with a letter, like \"core\"".into()),
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
