//! The lab, node by node: each top-level node kind read into its typed value.

use super::*;
use crate::lab::IMPLICIT_CHANNEL;

impl Parser<'_> {
    pub(super) fn lab(&mut self, doc: &KdlDocument, file: &Path) -> Lab {
        let mut spans = Spans::default();
        self.check_block(doc, TOP_LEVEL, TOP_LEVEL_REPEATED, "at the top level");

        let (name, backends, accel) = self.lab_node(doc, &mut spans);
        let network = self.network(first(doc, "network"));
        let registry = self.registry(first(doc, "registry"), &mut spans);
        let containers: Vec<Container> = nodes(doc, "container").map(|node| self.container(node, &mut spans)).collect();
        let blueprints: Vec<Blueprint> = nodes(doc, "blueprint").map(|node| self.blueprint(node, &mut spans)).collect();
        let images: Vec<Image> = nodes(doc, "image").map(|node| self.image(node, &mut spans)).collect();
        let mut channels: Vec<Channel> = nodes(doc, "channel").map(|node| self.channel(node, &mut spans)).collect();
        let file_server = self.file_server(first(doc, "file-server"), &mut spans);
        let boot_iso = first(doc, "boot-iso").and_then(|node| self.boot_iso(node));
        let guests: Vec<Guest> = nodes(doc, "guest").map(|node| self.guest(node, &mut spans)).collect();
        let kickstart = self.kickstart(first(doc, "kickstart"), &images, &mut channels, !guests.is_empty(), &mut spans);
        let package_map = first(doc, "package-map").map(|node| self.package_map(node, &mut spans)).unwrap_or_default();
        let store = self.store(first(doc, "store"));
        let libvirt_uri = self.libvirt_uri(first(doc, "libvirt"));

        self.check_duplicates(&spans);
        self.check_references(&spans, &containers, &blueprints, &images, &channels);
        self.check_channel_refs(&spans);
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
            channels,
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
    pub(super) fn check_subnet(&mut self, doc: &KdlDocument, network: &Network, guests: &[Guest]) {
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

    pub(super) fn lab_node(&mut self, doc: &KdlDocument, spans: &mut Spans) -> (String, Backends, AccelSetting) {
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

    pub(super) fn backend(&mut self, value: &Spanned<String>) -> Backend {
        let index = self.choice(value, "backend", &Backend::WORDS);
        index.map(|index| Backend::ALL[index]).unwrap_or(Backend::Auto)
    }

    pub(super) fn network(&mut self, node: Option<&KdlNode>) -> Network {
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

    pub(super) fn registry(&mut self, node: Option<&KdlNode>, spans: &mut Spans) -> Registry {
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

    pub(super) fn container(&mut self, node: &KdlNode, spans: &mut Spans) -> Container {
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

    /// The name of a node named by a simple name (blueprint, image,
    /// channel), checked and recorded for the duplicate and reference
    /// checks; a node without one is recorded as unnamed.
    fn simple_name(
        &mut self,
        node: &KdlNode,
        spans: &mut Spans,
        kind: &'static str,
        target: Target,
        example: &str,
    ) -> Option<Spanned<String>> {
        let name = self.name_arg(node, kind, example);
        match &name {
            Some(name) => {
                self.check_simple_name(name, &format!("{kind} name"));
                spans.names.push((kind, name.clone()));
            }
            None => spans.unnamed.push(target),
        }
        name
    }

    pub(super) fn blueprint(&mut self, node: &KdlNode, spans: &mut Spans) -> Blueprint {
        self.check_shape(node, &BLUEPRINT);
        let name = self.simple_name(
            node,
            spans,
            "blueprint",
            Target::Blueprint,
            "blueprint \"RFE\" file=\"guest/blueprints/RFE.toml\"",
        );
        let file = self
            .string(node, Slot::Prop("file"), Need::Required, "file=\"guest/blueprints/RFE.toml\"")
            .map(|path| self.existing_path(&path, PathKind::File, "blueprint file"));
        Blueprint { name: name.map(|it| it.value).unwrap_or_default(), file: file.unwrap_or_default() }
    }

    pub(super) fn image(&mut self, node: &KdlNode, spans: &mut Spans) -> Image {
        self.check_shape(node, &IMAGE);
        let example = "image \"v1\" type=\"edge-commit\" blueprint=\"RFE\" ref=\"rhel/8/x86_64/edge\"";
        let name = self.simple_name(node, spans, "image", Target::Image, example);
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

    pub(super) fn channel(&mut self, node: &KdlNode, spans: &mut Spans) -> Channel {
        self.check_shape(node, &CHANNEL);
        let example = "channel \"edge\" ref=\"rhel/8/x86_64/edge\" image=\"v1\"";
        let name = self.simple_name(node, spans, "channel", Target::Channel, example);
        let channel_name = name.as_ref().map(|it| it.value.clone()).unwrap_or_default();
        let ostree_ref = self.string(node, Slot::Prop("ref"), Need::Required, "ref=\"rhel/8/x86_64/edge\"");
        if let Some(ostree_ref) = &ostree_ref {
            self.check_ostree_ref(ostree_ref);
            spans.channel_refs.push(ostree_ref.clone());
        }
        let image = self.string(node, Slot::Prop("image"), Need::Required, "image=\"v1\"");
        if let Some(image) = &image {
            spans.references.push(Reference {
                what: format!("channel `{channel_name}` starts at image"),
                target: Target::Image,
                name: image.value.clone(),
                span: image.span,
            });
        }
        Channel {
            name: channel_name,
            ostree_ref: ostree_ref.map(|it| it.value).unwrap_or_default(),
            image: image.map(|it| it.value).unwrap_or_default(),
        }
    }

    pub(super) fn file_server(&mut self, node: Option<&KdlNode>, spans: &mut Spans) -> FileServer {
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

    pub(super) fn boot_iso(&mut self, node: &KdlNode) -> Option<BootIso> {
        self.check_shape(node, &BOOT_ISO);
        let example = "file=\"/var/lib/libvirt/images/rhel-8-x86_64-boot.iso\"";
        // Only the RHEL world reads the ISO, so it need not exist here.
        let file = self.string(node, Slot::Prop("file"), Need::Required, example)?;
        Some(BootIso { file: self.resolve(&file.value) })
    }

    pub(super) fn kickstart(
        &mut self,
        node: Option<&KdlNode>,
        images: &[Image],
        channels: &mut Vec<Channel>,
        needed: bool,
        spans: &mut Spans,
    ) -> Kickstart {
        let default_image = images.iter().find(|image| image.parent.is_none()).map(|image| image.name.clone());
        let mut kickstart = Kickstart {
            template: self.root.join("guest/kickstart/edge.ks.in"),
            channel: String::new(),
            user: "core".into(),
            password_hash_file: None,
        };
        let Some(node) = node else {
            if needed {
                self.report(
                    spans.lab_span.unwrap_or_else(|| (0, 0).into()),
                    "the lab has guests but no `kickstart`".into(),
                    "in this lab",
                    Some(
                        "add: kickstart template=\"guest/kickstart/edge.ks.in\" channel=\"edge\" user=\"core\"".into(),
                    ),
                );
            }
            kickstart.channel = self.install_channel(None, None, None, default_image, images, channels);
            return kickstart;
        };
        self.check_shape(node, &KICKSTART);
        let example = "template=\"guest/kickstart/edge.ks.in\"";
        if let Some(template) = self.string(node, Slot::Prop("template"), Need::Required, example) {
            kickstart.template = self.existing_path(&template, PathKind::File, "kickstart template");
        }
        let channel = self.string(node, Slot::Prop("channel"), Need::Optional, "channel=\"edge\"");
        let image = self.string(node, Slot::Prop("image"), Need::Optional, "image=\"v1\"");
        if let Some(channel) = &channel {
            spans.references.push(Reference {
                what: "the kickstart installs from channel".into(),
                target: Target::Channel,
                name: channel.value.clone(),
                span: channel.span,
            });
        }
        if let Some(image) = &image {
            spans.references.push(Reference {
                what: "the kickstart installs image".into(),
                target: Target::Image,
                name: image.value.clone(),
                span: image.span,
            });
        }
        if image.is_none() && channel.is_none() && default_image.is_none() && channels.is_empty() && needed {
            self.report(
                node.name().span(),
                "the kickstart has no image to install".into(),
                "no image",
                Some(
                    "declare a channel (channel \"edge\" ref=\"rhel/8/x86_64/edge\" image=\"v1\") and name it \
                     with channel=\"edge\""
                        .into(),
                ),
            );
        }
        kickstart.channel =
            self.install_channel(Some(node.name().span()), channel, image, default_image, images, channels);
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

    /// The kickstart's channel: the one it names, the lab's only channel,
    /// or (in a lab without channels) the implicit channel of its image,
    /// which is added to `channels`: the image of `image=`, or else the
    /// first image without a parent (`default_image`).
    fn install_channel(
        &mut self,
        node_span: Option<SourceSpan>,
        channel: Option<Spanned<String>>,
        image: Option<Spanned<String>>,
        default_image: Option<String>,
        images: &[Image],
        channels: &mut Vec<Channel>,
    ) -> String {
        let names: Vec<String> = channels.iter().map(|it| it.name.clone()).collect();
        let written_image = image.as_ref();
        match (channel, channels.is_empty()) {
            (Some(channel), _) => {
                if let Some(image) = written_image {
                    self.report(
                        image.span,
                        "the kickstart names both a channel and an image".into(),
                        "installs come from the channel",
                        Some(format!("remove image=\"{}\": the channel says which image installs get", image.value)),
                    );
                }
                channel.value
            }
            (None, false) => {
                let starting_here = written_image.and_then(|image| channels.iter().find(|it| it.image == image.value));
                if let Some(image) = written_image {
                    let help = match starting_here {
                        Some(channel) => {
                            format!("write channel=\"{}\" (it starts at image `{}`)", channel.name, image.value)
                        }
                        None => format!("write channel=\"NAME\" with one of the channels: {}", names.join(", ")),
                    };
                    self.report(
                        image.span,
                        "the lab declares channels: the kickstart installs from one, not from an image".into(),
                        "an image",
                        Some(help),
                    );
                }
                match (channels.len(), node_span) {
                    (1, _) => channels[0].name.clone(),
                    (_, Some(span)) if written_image.is_none() => {
                        self.report(
                            span,
                            format!("the lab declares {} channels: which one do guests install from?", channels.len()),
                            "no channel named",
                            Some(format!("add channel=\"NAME\", one of: {}", names.join(", "))),
                        );
                        String::new()
                    }
                    _ => starting_here.map(|it| it.name.clone()).unwrap_or_default(),
                }
            }
            (None, true) => {
                let Some(image) = image.map(|it| it.value).or(default_image) else { return String::new() };
                let ostree_ref = images.iter().find(|it| it.name == image).map(|it| it.ostree_ref.clone());
                channels.push(Channel {
                    name: IMPLICIT_CHANNEL.to_string(),
                    ostree_ref: ostree_ref.unwrap_or_default(),
                    image,
                });
                IMPLICIT_CHANNEL.to_string()
            }
        }
    }

    pub(super) fn guest(&mut self, node: &KdlNode, spans: &mut Spans) -> Guest {
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

    pub(super) fn package_map(&mut self, node: &KdlNode, spans: &mut Spans) -> Vec<PackageMapping> {
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

    pub(super) fn store(&mut self, node: Option<&KdlNode>) -> StoreSettings {
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
    pub(super) fn libvirt_uri(&mut self, node: Option<&KdlNode>) -> String {
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
}
