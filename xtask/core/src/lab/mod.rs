//! The Lab: `lab.kdl` parsed and validated into typed values.
//!
//! Parsing happens in two steps: `parse` turns KDL nodes into these types and
//! collects every user mistake as a diagnostic; nothing downstream ever sees a
//! raw KDL node or an unchecked string. Values the lab leaves as `auto` (host
//! address, VIP) stay `Auto` here: resolving them needs the host, which the
//! pure core does not touch.

mod parse;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

pub use parse::{parse_lab, parse_lab_file};

/// The whole lab, as declared in `lab.kdl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lab {
    /// The lab's name (`lab "rfe-demo"`), used in names of run state.
    pub name: String,
    /// The `lab.kdl` file this came from.
    pub file: PathBuf,
    /// Folder relative paths in the lab resolve against (the file's folder).
    pub root: PathBuf,
    pub backends: Backends,
    /// How the local world's guests run their code (`accel` in the `lab`
    /// node); `EDGELAB_ACCEL` overrides it at run time.
    pub accel: AccelSetting,
    pub network: Network,
    pub registry: Registry,
    pub containers: Vec<Container>,
    pub blueprints: Vec<Blueprint>,
    pub images: Vec<Image>,
    /// The refs guests install from and follow, each pointing at an image;
    /// one implicit channel (`IMPLICIT_CHANNEL`) when lab.kdl declares none.
    pub channels: Vec<Channel>,
    pub file_server: FileServer,
    pub boot_iso: Option<BootIso>,
    pub kickstart: Kickstart,
    pub guests: Vec<Guest>,
    /// Blueprint package names (RPM) mapped to Debian packages for the local
    /// composer; a package with no entry is used under its own name.
    pub package_map: Vec<PackageMapping>,
    pub store: StoreSettings,
    /// The libvirt connection of the RHEL world's guests
    /// (`qemu:///system`, or `qemu+ssh://host/system` for a remote host).
    pub libvirt_uri: String,
    /// The public half of the lab's check key (RHEL world: the scenarios'
    /// ssh key, root's authorized key in the kickstart). Not written in
    /// lab.kdl: the CLI makes the key in the store and sets this; it is an
    /// input file of the kickstarts, so a new key rebuilds them.
    pub check_key: Option<PathBuf>,
}

/// Which world a stage runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// Pick what the host has: RHEL tools when present, local ones otherwise.
    Auto,
    /// The original demo's programs: osbuild-composer, podman `registry:2`, libvirt.
    Rhel,
    /// Programs from any Linux distribution: mmdebstrap + ostree, the
    /// distribution registry binary, qemu.
    Local,
}

/// The backend choice per stage kind; `default` applies where none is pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct Backends {
    pub default: Backend,
    pub registry: Option<Backend>,
    pub compose: Option<Backend>,
    pub boot_media: Option<Backend>,
    pub guests: Option<Backend>,
}

/// The accelerator the lab asks for its local guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelSetting {
    /// KVM when a probe says it runs guest code, TCG otherwise; the first
    /// KVM fault of a real boot switches the host to TCG until asked again.
    #[default]
    Auto,
    /// KVM, asked for: probed never, still left for TCG on a fault (a
    /// hypervisor fault is no reason to lose the boot).
    Kvm,
    /// TCG always: slower, never faults.
    Tcg,
}

impl AccelSetting {
    /// The words `accel` takes, in the lab file and in `EDGELAB_ACCEL`.
    pub const WORDS: [&'static str; 3] = ["auto", "kvm", "tcg"];

    pub fn from_word(word: &str) -> Option<AccelSetting> {
        match word {
            "auto" => Some(AccelSetting::Auto),
            "kvm" => Some(AccelSetting::Kvm),
            "tcg" => Some(AccelSetting::Tcg),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccelSetting::Auto => "auto",
            AccelSetting::Kvm => "kvm",
            AccelSetting::Tcg => "tcg",
        }
    }
}

/// A value the lab may leave to be discovered from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto<T> {
    Auto,
    Given(T),
}

/// An IPv4 address with its prefix length, as in `192.168.122.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The lab host's address on the guests' segment; `auto` takes the address
    /// of the default route's interface (the original `ip route get`).
    pub host_address: Auto<Ipv4Cidr>,
    /// The VRRP virtual IP; `auto` is `.100` on the host's subnet, host's mask.
    pub vip: Auto<Ipv4Cidr>,
    /// The bridge the guests attach to.
    pub bridge: String,
    /// Local world: the network namespace the lab creates and owns.
    pub namespace: String,
    /// VRRP virtual router id shared by the guests.
    pub vrrp_router_id: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    /// Where the registry listens; `auto` is the host address.
    pub address: Auto<IpAddr>,
    pub port: u16,
    /// Clients reach it over plain HTTP (a registries.conf.d drop-in says so).
    pub insecure: bool,
}

/// A container app with its builds and tags (`container "httpd" { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub builds: Vec<ContainerBuild>,
    pub tags: Vec<ContainerTag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerBuild {
    pub name: String,
    /// Build context folder (holds a Containerfile), absolute.
    pub context: PathBuf,
    /// The build this one is built on (`from="v1"`), if any.
    pub from: Option<String>,
}

/// A tag in the registry pointing at one of the app's builds (`tag "prod" "v1"`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerTag {
    pub name: String,
    pub build: String,
}

/// An osbuild blueprint (TOML) the images are composed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Blueprint {
    pub name: String,
    /// The blueprint TOML file, absolute.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    EdgeCommit,
}

/// An OSTree image composed from a blueprint (`image "v2" ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub name: String,
    pub image_type: ImageType,
    pub blueprint: String,
    /// The OSTree ref, e.g. `rhel/8/x86_64/edge`.
    pub ostree_ref: String,
    /// The image whose commit is this one's parent.
    pub parent: Option<String>,
    /// Packages this image adds to its blueprint's.
    pub extra_packages: Vec<String>,
}

/// A channel (`channel "edge" ref="rhel/8/x86_64/edge" image="v1"`): the
/// OS twin of a container tag. Its ref in the served repo is what guests
/// install from and what their automatic staging follows; it starts at
/// `image` and `cargo xtask image promote` moves it (run state, not this
/// value, says where it points now).
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    /// The ref the served repo publishes for it, e.g. `rhel/8/x86_64/edge`.
    pub ostree_ref: String,
    /// The image it starts at, as lab.kdl declares.
    pub image: String,
}

/// The channel of a lab that declares none: the kickstart's image on its
/// own ref, as labs before channels installed it.
pub const IMPLICIT_CHANNEL: &str = "default";

#[derive(Debug, Clone, PartialEq)]
pub struct FileServer {
    pub address: IpAddr,
    pub port: u16,
}

/// The RHEL boot ISO that is remastered with the kickstart (RHEL world).
#[derive(Debug, Clone, PartialEq)]
pub struct BootIso {
    pub file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kickstart {
    /// The kickstart template, absolute.
    pub template: PathBuf,
    /// The channel the guests install from (`channel="edge"`; the lab's only
    /// channel when not named, or the implicit one of `image="v1"`).
    pub channel: String,
    /// The installed user.
    pub user: String,
    /// File holding the user's password hash (crypt(3) format); never plaintext.
    pub password_hash_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestRole {
    Primary,
    Backup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpState {
    Master,
    Backup,
}

/// An edge device (`guest "edge-device-1" ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct Guest {
    pub name: String,
    pub role: GuestRole,
    pub vrrp_state: VrrpState,
    pub priority: u8,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub disk_gib: u64,
    pub os_variant: String,
    /// The guest's address on the lab segment; `auto` is host address + index.
    pub address: Auto<Ipv4Addr>,
}

/// How the local composer treats one blueprint package.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageMapping {
    pub rpm: String,
    pub action: PackageAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PackageAction {
    /// Install these Debian packages instead.
    Debian(Vec<String>),
    /// Leave it out, for the stated reason.
    Drop { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// Generations of each stage `artifacts gc` keeps beyond the current one.
    pub keep_generations: u32,
}

impl Lab {
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|it| it.name == name)
    }
    pub fn blueprint(&self, name: &str) -> Option<&Blueprint> {
        self.blueprints.iter().find(|it| it.name == name)
    }
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|it| it.name == name)
    }
    pub fn guest(&self, name: &str) -> Option<&Guest> {
        self.guests.iter().find(|it| it.name == name)
    }
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|it| it.name == name)
    }
    /// The channel the kickstart installs from.
    pub fn install_channel(&self) -> Option<&Channel> {
        self.channel(&self.kickstart.channel)
    }
    /// Shows a path relative to the lab's folder when it is inside it.
    pub fn display_path<'a>(&self, path: &'a Path) -> std::borrow::Cow<'a, str> {
        match path.strip_prefix(&self.root) {
            Ok(rel) => rel.to_string_lossy().into_owned().into(),
            Err(_) => path.to_string_lossy(),
        }
    }
}

impl Backends {
    pub fn for_registry(&self) -> Backend {
        self.registry.unwrap_or(self.default)
    }
    pub fn for_compose(&self) -> Backend {
        self.compose.unwrap_or(self.default)
    }
    pub fn for_boot_media(&self) -> Backend {
        self.boot_media.unwrap_or(self.default)
    }
    pub fn for_guests(&self) -> Backend {
        self.guests.unwrap_or(self.default)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
