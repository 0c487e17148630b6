//! The artifact graph: the Lab turned into Stages and the edges between them.
//!
//! A Stage says WHAT to build: its kind, its resolved parameters, the files it
//! reads, the tools it runs and the stages whose outputs it consumes. HOW is
//! the business of `stages/` and the backend. Building the graph is pure: it
//! reads nothing and starts nothing, so it is tested with strings.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    lab::{Auto, Backend, Ipv4Cidr, Lab},
    world::{self, ComposeWorld, GuestWorld},
};

pub use crate::world::{LOCAL_LAB_SEGMENT, resolve_backends};

/// What kind of thing a stage builds. The order is the order `plan` lists them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// Host programs each backend needs, installed when missing.
    Prereqs,
    /// A container image built into an OCI archive.
    Container,
    /// A container image pushed to the lab registry.
    Push,
    /// A registry tag pointing at a pushed build.
    Tag,
    /// A validated, normalised osbuild blueprint.
    Blueprint,
    /// An edge-commit tarball (`compose.json` + `repo/`).
    Compose,
    /// The served OSTree repo: every image merged, with static deltas.
    Repo,
    /// What the file server serves: the repo with each channel's ref at the
    /// image it points at now.
    Publish,
    /// A guest's rendered, validated kickstart.
    Kickstart,
    /// A guest's remastered boot ISO (RHEL world).
    Iso,
    /// A guest's installed pristine disk (local world).
    Install,
}

/// Names a stage: its kind and the lab name it is about (`compose v2`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StageId {
    pub kind: StageKind,
    pub name: String,
}

/// One node of the graph: everything that goes into its key except digests,
/// which are facts about the host gathered separately.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub id: StageId,
    /// Bump when the stage's implementation changes what it produces.
    pub schema: u32,
    /// The backend this stage runs with, as the lab asks (`auto` resolved later).
    pub backend: Backend,
    /// Resolved parameters, canonical JSON.
    pub params: BTreeMap<String, Value>,
    /// Files and folders the stage reads, by a label shown in explanations
    /// (`blueprint RFE.toml`, `context guest/app/v1`).
    pub files: BTreeMap<String, PathBuf>,
    /// External programs the stage runs (their identity goes into the key).
    pub tools: Vec<&'static str>,
    /// Stages whose outputs this one consumes, by role (`parent`, `base`, `image v1`).
    pub deps: BTreeMap<String, StageId>,
    /// Run state the stage's result depends on, by name (`channel edge`:
    /// where a promotion points the channel). The host reads it into the
    /// facts, so a promotion changes the key and never rewrites an artifact.
    pub state: Vec<String>,
}

/// The stages of a lab in dependency order: every stage comes after its deps.
#[derive(Debug, Clone)]
pub struct Graph {
    pub stages: Vec<Stage>,
}

impl StageKind {
    pub const ALL: [StageKind; 11] = [
        StageKind::Prereqs,
        StageKind::Container,
        StageKind::Push,
        StageKind::Tag,
        StageKind::Blueprint,
        StageKind::Compose,
        StageKind::Repo,
        StageKind::Publish,
        StageKind::Kickstart,
        StageKind::Iso,
        StageKind::Install,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Prereqs => "prereqs",
            StageKind::Container => "container",
            StageKind::Push => "push",
            StageKind::Tag => "tag",
            StageKind::Blueprint => "blueprint",
            StageKind::Compose => "compose",
            StageKind::Repo => "repo",
            StageKind::Publish => "publish",
            StageKind::Kickstart => "kickstart",
            StageKind::Iso => "iso",
            StageKind::Install => "install",
        }
    }

    pub fn from_name(text: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl StageId {
    pub fn new(kind: StageKind, name: impl Into<String>) -> StageId {
        StageId { kind, name: name.into() }
    }

    /// Parses `compose v2` or `compose:v2`.
    pub fn parse(text: &str) -> Option<StageId> {
        let (kind, name) = text.split_once([' ', ':'])?;
        Some(StageId::new(StageKind::from_name(kind)?, name.trim()))
    }

    /// A name safe to use as a file name (`compose-v2`).
    pub fn file_name(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' { c } else { '_' })
            .collect();
        format!("{}-{}", self.kind.as_str(), name)
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Graph {
    pub fn stage(&self, id: &StageId) -> Option<&Stage> {
        self.stages.iter().find(|stage| &stage.id == id)
    }

    /// The graph with a served repo and a publish that make no from-scratch
    /// delta: what an upgrade needs, built first by `lab watch` (minutes of
    /// LZMA per new commit are the installs' alone). Its repo and publish are
    /// other artifacts, keyed by their params as every other; the lab's own
    /// graph keeps the deltas.
    pub fn without_install_deltas(mut self) -> Graph {
        for stage in &mut self.stages {
            let (name, value) = match stage.id.kind {
                StageKind::Repo => ("installed", Value::Array(Vec::new())),
                StageKind::Publish => ("install-deltas", Value::Bool(false)),
                _ => continue,
            };
            stage.params.insert(name.into(), value);
        }
        self
    }

    /// `id` and every stage that depends on it, directly or not.
    pub fn downstream_of(&self, id: &StageId) -> Vec<StageId> {
        let mut reached = vec![id.clone()];
        // Stages are in dependency order, so one forward sweep finds them all.
        for stage in &self.stages {
            if stage.deps.values().any(|dep| reached.contains(dep)) && !reached.contains(&stage.id) {
                reached.push(stage.id.clone());
            }
        }
        reached
    }

    /// `ids` and everything they depend on, in dependency order.
    pub fn upstream_closure(&self, ids: &[StageId]) -> Vec<StageId> {
        let mut wanted: Vec<StageId> = ids.to_vec();
        for stage in self.stages.iter().rev() {
            if wanted.contains(&stage.id) {
                for dep in stage.deps.values() {
                    if !wanted.contains(dep) {
                        wanted.push(dep.clone());
                    }
                }
            }
        }
        self.stages.iter().filter(|stage| wanted.contains(&stage.id)).map(|stage| stage.id.clone()).collect()
    }

    /// The graph in graphviz dot, for `cargo xtask graph`.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph edgelab {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
        for stage in &self.stages {
            out.push_str(&format!("  \"{}\";\n", stage.id));
        }
        for stage in &self.stages {
            for (role, dep) in &stage.deps {
                out.push_str(&format!("  \"{dep}\" -> \"{}\" [label=\"{role}\"];\n", stage.id));
            }
        }
        out.push_str("}\n");
        out
    }
}

/// Builds the graph of a validated lab. The lab parser already rejected
/// dangling references and cycles, so this cannot fail. Backends left `auto`
/// should be resolved first (`resolve_backends`).
pub fn build(lab: &Lab) -> Graph {
    let mut stages = Vec::new();
    let registry_backend = lab.backends.for_registry();
    let compose_backend = lab.backends.for_compose();
    let guests_backend = lab.backends.for_guests();
    let guest_world = GuestWorld::of(lab);
    let media_backend = lab.backends.for_boot_media();

    stages.push(Stage {
        id: StageId::new(StageKind::Prereqs, "host"),
        schema: 1,
        backend: lab.backends.default,
        params: params([("backends", json!(backend_names(lab)))]),
        files: BTreeMap::new(),
        tools: vec![],
        deps: BTreeMap::new(),
        state: vec![],
    });

    for container in &lab.containers {
        // Builds may name a later build as their base; emit bases first.
        for build in ordered_builds(container) {
            let id = StageId::new(StageKind::Container, format!("{}-{}", container.name, build.name));
            let mut deps = BTreeMap::new();
            if let Some(from) = &build.from {
                deps.insert("base".into(), StageId::new(StageKind::Container, format!("{}-{from}", container.name)));
            }
            stages.push(Stage {
                id: id.clone(),
                schema: 1,
                backend: Backend::Auto,
                params: params([
                    ("app", json!(container.name)),
                    ("build", json!(build.name)),
                    ("from", json!(build.from)),
                ]),
                files: BTreeMap::from([
                    (format!("context {}", lab.display_path(&build.context)), build.context.clone()),
                    ("app server guest/app/httpd".to_string(), httpd_crate(lab)),
                ]),
                tools: vec!["podman", "figlet", "cowsay", "cargo"],
                deps,
                state: vec![],
            });
            stages.push(Stage {
                id: StageId::new(StageKind::Push, format!("{}-{}", container.name, build.name)),
                schema: 1,
                backend: registry_backend,
                params: params([
                    ("repository", json!(container.name)),
                    ("tag", json!(build.name)),
                    ("registry", json!(registry_param(lab))),
                ]),
                files: BTreeMap::new(),
                tools: vec!["podman"],
                deps: BTreeMap::from([("image".into(), id)]),
                state: vec![],
            });
        }
        for tag in &container.tags {
            stages.push(Stage {
                id: StageId::new(StageKind::Tag, format!("{}-{}", container.name, tag.name)),
                schema: 1,
                backend: registry_backend,
                params: params([
                    ("repository", json!(container.name)),
                    ("tag", json!(tag.name)),
                    ("build", json!(tag.build)),
                    ("registry", json!(registry_param(lab))),
                ]),
                files: BTreeMap::new(),
                tools: vec![],
                deps: BTreeMap::from([(
                    "pushed".into(),
                    StageId::new(StageKind::Push, format!("{}-{}", container.name, tag.build)),
                )]),
                state: vec![],
            });
        }
    }

    for blueprint in &lab.blueprints {
        stages.push(Stage {
            id: StageId::new(StageKind::Blueprint, blueprint.name.clone()),
            schema: 1,
            backend: Backend::Auto,
            params: params([("name", json!(blueprint.name))]),
            files: BTreeMap::from([(format!("blueprint {}", file_label(&blueprint.file)), blueprint.file.clone())]),
            tools: vec![],
            deps: BTreeMap::new(),
            state: vec![],
        });
    }

    for image in ordered_images(lab) {
        let mut deps =
            BTreeMap::from([("blueprint".to_string(), StageId::new(StageKind::Blueprint, image.blueprint.clone()))]);
        if let Some(parent) = &image.parent {
            deps.insert("parent".into(), StageId::new(StageKind::Compose, parent.clone()));
        }
        let package_map: Vec<Value> = lab
            .package_map
            .iter()
            .map(|mapping| match &mapping.action {
                crate::lab::PackageAction::Debian(debs) => {
                    json!({"rpm": mapping.rpm, "debian": debs})
                }
                crate::lab::PackageAction::Drop { reason } => {
                    json!({"rpm": mapping.rpm, "drop": reason})
                }
            })
            .collect();
        stages.push(Stage {
            id: StageId::new(StageKind::Compose, image.name.clone()),
            // 2: the local composer's own initramfs (guest/local/initramfs);
            // 3: one Ed25519 SSH host key made at first boot.
            schema: 3,
            backend: compose_backend,
            params: params([
                ("image", json!(image.name)),
                ("type", json!("edge-commit")),
                ("ref", json!(image.ostree_ref)),
                ("extra-packages", json!(image.extra_packages)),
                ("parent-url", json!(image.parent.as_ref().map(|_| served_repo_url(lab)))),
                ("package-map", json!(package_map)),
            ]),
            // The local composer builds the guest's initramfs with this script
            // (compiled into edgelab, hashed here so an edit recomposes).
            files: BTreeMap::from([(
                "initramfs script local/initramfs/build.sh".to_string(),
                lab.root.join("guest/local/initramfs/build.sh"),
            )]),
            tools: ComposeWorld::of_stage(compose_backend).tools(),
            deps,
            state: vec![],
        });
    }

    if !lab.images.is_empty() {
        let deps = lab
            .images
            .iter()
            .map(|image| (format!("image {}", image.name), StageId::new(StageKind::Compose, image.name.clone())))
            .collect();
        let parents: BTreeMap<String, Value> =
            lab.images.iter().map(|image| (image.name.clone(), json!(image.parent))).collect();
        stages.push(Stage {
            id: StageId::new(StageKind::Repo, "served"),
            // 3: a from-scratch delta only for the images the channels
            // start at (no install pulls the others from nothing).
            schema: 3,
            backend: Backend::Auto,
            params: params([("parents", json!(parents)), ("installed", json!(channel_images(lab)))]),
            files: BTreeMap::new(),
            tools: vec!["ostree"],
            deps,
            state: vec![],
        });
        let channels: BTreeMap<String, Value> = lab
            .channels
            .iter()
            .map(|channel| (channel.name.clone(), json!({"ref": channel.ostree_ref, "image": channel.image})))
            .collect();
        stages.push(Stage {
            id: StageId::new(StageKind::Publish, "served"),
            schema: 1,
            backend: Backend::Auto,
            params: params([("channels", json!(channels))]),
            files: BTreeMap::new(),
            tools: vec!["ostree"],
            deps: BTreeMap::from([("repo".into(), StageId::new(StageKind::Repo, "served"))]),
            // Where `image promote` pointed each channel (absent: lab.kdl's image).
            state: lab.channels.iter().map(|channel| channel_state(&channel.name)).collect(),
        });
    }

    for guest in &lab.guests {
        let kickstart = StageId::new(StageKind::Kickstart, guest.name.clone());
        stages.push(Stage {
            id: kickstart.clone(),
            schema: 1,
            backend: Backend::Auto,
            params: params([
                ("guest", json!(guest.name)),
                ("vrrp-state", json!(format!("{:?}", guest.vrrp_state).to_uppercase())),
                ("priority", json!(guest.priority)),
                ("role", json!(format!("{:?}", guest.role).to_lowercase())),
                (
                    "address",
                    json!(match guest.address {
                        crate::lab::Auto::Auto => "auto".to_string(),
                        crate::lab::Auto::Given(a) => a.to_string(),
                    }),
                ),
                ("host-address", json!(auto_text(&lab.network.host_address))),
                ("vip", json!(auto_text(&lab.network.vip))),
                ("vrrp-router-id", json!(lab.network.vrrp_router_id)),
                ("registry", json!(registry_param(lab))),
                ("repo-url", json!(served_repo_url(lab))),
                ("user", json!(lab.kickstart.user)),
                // The channel's ref, not a commit: Anaconda's `ostreesetup`
                // takes what the channel points at when the guest installs.
                ("channel", json!(lab.kickstart.channel)),
                ("ref", json!(lab.install_channel().map(|channel| channel.ostree_ref.clone()))),
            ]),
            files: kickstart_files(lab),
            // Rendered files are validated with the real tools; `systemd-analyze
            // verify` needs the podman the units start, keepalived's check a
            // private network namespace with the guest's interface.
            // In the RHEL world it also makes the lab's check key (ssh-keygen),
            // which it installs as root's authorized key.
            tools: ["ksvalidator", "keepalived", "unshare", "ip", "systemd-analyze", "podman", "bash", "shellcheck"]
                .into_iter()
                .chain(guest_world.uses_lab_key().then_some("ssh-keygen"))
                .collect(),
            deps: BTreeMap::new(),
            state: vec![],
        });
        // The RHEL world boots guests from remastered ISOs; the local world
        // installs disks itself. `auto` was resolved before the graph was built
        // (see `resolve_backends`); an unresolved `auto` is taken as local.
        if !guest_world.installs_disks()
            && let Some(boot_iso) = &lab.boot_iso
        {
            stages.push(Stage {
                id: StageId::new(StageKind::Iso, guest.name.clone()),
                schema: 1,
                backend: media_backend,
                params: params([("guest", json!(guest.name)), ("kernel-args", json!(guest_kernel_args(guest)))]),
                files: BTreeMap::from([(format!("boot ISO {}", file_label(&boot_iso.file)), boot_iso.file.clone())]),
                tools: vec!["xorriso", "mcopy", "mtype", "implantisomd5"],
                deps: BTreeMap::from([("kickstart".into(), kickstart.clone())]),
                state: vec![],
            });
        }
        if guest_world.installs_disks() && !lab.images.is_empty() {
            stages.push(Stage {
                id: StageId::new(StageKind::Install, guest.name.clone()),
                // 2: unused systemd generators masked.
                schema: 2,
                backend: guests_backend,
                params: params([
                    ("guest", json!(guest.name)),
                    ("channel", json!(lab.kickstart.channel)),
                    ("disk-gib", json!(guest.disk_gib)),
                ]),
                // The local guest's greenboot runner and update units (what
                // the installer lays over the root; not its README).
                files: BTreeMap::from([
                    ("guest files local/bin/".to_string(), lab.root.join("guest/local/bin")),
                    ("guest files local/units/".to_string(), lab.root.join("guest/local/units")),
                ]),
                tools: vec!["ostree", "mkfs.ext4", "systemctl", "chroot", "unshare"],
                // The install pulls the channel's commit from what the file
                // server publishes, so a promotion makes a new install.
                deps: BTreeMap::from([
                    ("kickstart".into(), kickstart),
                    ("published".into(), StageId::new(StageKind::Publish, "served")),
                ]),
                state: vec![],
            });
        }
    }
    Graph { stages }
}

/// The demo app's web server crate, built into every container image.
pub fn httpd_crate(lab: &Lab) -> PathBuf {
    lab.root.join("guest/app/httpd")
}

/// Replaces every `auto` address with a concrete one (`world::addresses`),
/// so the addresses are part of the stages' keys (a changed host address
/// rebuilds kickstarts). `default_route` is the host's default-route
/// address, which the caller looks up because the pure core cannot.
pub fn resolve_network(lab: &Lab, default_route: Option<Ipv4Cidr>) -> Result<Lab, String> {
    let addresses = world::addresses(lab, default_route)?;
    let mut lab = lab.clone();
    lab.network.host_address = Auto::Given(addresses.host);
    lab.network.vip = Auto::Given(addresses.vip);
    lab.registry.address = Auto::Given(addresses.registry);
    for (guest, address) in lab.guests.iter_mut().zip(addresses.guests) {
        guest.address = Auto::Given(address);
    }
    Ok(lab)
}

/// The name of the run state saying where `image promote` pointed a
/// channel (`channel edge`); its fact is the image's name.
pub fn channel_state(channel: &str) -> String {
    format!("channel {channel}")
}

/// The images the channels start at, each once: installs start from them,
/// so the repo stage makes their from-scratch deltas (the publish stage
/// makes one for a promoted image).
fn channel_images(lab: &Lab) -> Vec<String> {
    let mut images: Vec<String> = lab.channels.iter().map(|channel| channel.image.clone()).collect();
    images.sort();
    images.dedup();
    images
}

/// The URL guests and composes use for the served repo.
pub fn served_repo_url(lab: &Lab) -> String {
    let host = match lab.network.host_address {
        crate::lab::Auto::Auto => "${HOST}".to_string(),
        crate::lab::Auto::Given(cidr) => cidr.addr.to_string(),
    };
    format!("http://{host}:{}/repo/", lab.file_server.port)
}

/// The kernel arguments the original demo appends for a guest.
pub fn guest_kernel_args(guest: &crate::lab::Guest) -> String {
    let state = match guest.vrrp_state {
        crate::lab::VrrpState::Master => "MASTER",
        crate::lab::VrrpState::Backup => "BACKUP",
    };
    format!("inst.text console=ttyS0 vip_state={state} vip_priority={}", guest.priority)
}

fn kickstart_files(lab: &Lab) -> BTreeMap<String, PathBuf> {
    let mut files = BTreeMap::from([(
        format!("kickstart template {}", file_label(&lab.kickstart.template)),
        lab.kickstart.template.clone(),
    )]);
    if let Some(hash_file) = &lab.kickstart.password_hash_file {
        files.insert(format!("password hash {}", file_label(hash_file)), hash_file.clone());
    }
    if let Some(check_key) = &lab.check_key {
        files.insert("check key".to_string(), check_key.clone());
    }
    // Everything the kickstart writes lives as real files beside the template.
    if let Some(folder) = lab.kickstart.template.parent().and_then(|it| it.parent()) {
        for sub in ["units", "keepalived", "greenboot", "scripts"] {
            let path = folder.join(sub);
            files.insert(format!("guest files {sub}/"), path);
        }
    }
    files
}

fn auto_text<T: fmt::Display>(value: &crate::lab::Auto<T>) -> String {
    match value {
        crate::lab::Auto::Auto => "auto".into(),
        crate::lab::Auto::Given(value) => value.to_string(),
    }
}

fn registry_param(lab: &Lab) -> String {
    let address = match lab.registry.address {
        crate::lab::Auto::Auto => "auto".to_string(),
        crate::lab::Auto::Given(address) => address.to_string(),
    };
    format!("{address}:{}", lab.registry.port)
}

fn backend_names(lab: &Lab) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("registry", lab.backends.for_registry().to_string()),
        ("compose", lab.backends.for_compose().to_string()),
        ("boot-media", lab.backends.for_boot_media().to_string()),
        ("guests", lab.backends.for_guests().to_string()),
    ])
}

fn file_label(path: &std::path::Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

fn params<const N: usize>(entries: [(&str, Value); N]) -> BTreeMap<String, Value> {
    entries.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
}

fn ordered_builds(container: &crate::lab::Container) -> Vec<&crate::lab::ContainerBuild> {
    dependency_order(&container.builds, |build| &build.name, |build| build.from.as_deref())
}

fn ordered_images(lab: &Lab) -> Vec<&crate::lab::Image> {
    dependency_order(&lab.images, |image| &image.name, |image| image.parent.as_deref())
}

/// `items` with each one after the item it names as its base (a build's
/// `from`, an image's `parent`). The parser rejected cycles and dangling
/// names, so each pass places at least one item; a pass that places none
/// stops the loop rather than spin.
fn dependency_order<T>(items: &[T], name: impl Fn(&T) -> &str, base: impl Fn(&T) -> Option<&str>) -> Vec<&T> {
    let mut ordered: Vec<&T> = Vec::new();
    while ordered.len() < items.len() {
        let before = ordered.len();
        for item in items {
            let placed = ordered.iter().any(|it| name(it) == name(item));
            let base_ready = base(item).is_none_or(|base| ordered.iter().any(|it| name(it) == base));
            if !placed && base_ready {
                ordered.push(item);
            }
        }
        if ordered.len() == before {
            break;
        }
    }
    ordered
}
