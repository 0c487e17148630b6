//! `[customizations]`: every key of osbuild's blueprint reference (the
//! `Customizations` struct of osbuild/images `pkg/blueprint`, plus composer's
//! `sshkey`), typed; `blueprint/checks` reads them from TOML with the
//! checks composer makes before a compose.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customizations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Kernel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sshkey: Vec<SshKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<UserGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Timezone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<Locale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Firewall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Services>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<Filesystem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_device: Option<String>,
    /// `raw`, `lvm` or `auto-lvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fdo: Option<Fdo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openscap: Option<OpenScap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignition: Option<Ignition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<Directory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<Repository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fips: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer: Option<Installer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<Rpm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rhsm: Option<Rhsm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacerts: Option<CaCerts>,
    #[serde(rename = "containers-storage", default, skip_serializing_if = "Option::is_none")]
    pub containers_storage: Option<ContainersStorage>,
    /// The disk layout (partitions, LVM, btrfs): kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<String>,
}

/// composer's older form of a user's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKey {
    pub user: String,
    pub key: String,
}

/// A user the image creates. `password` is a crypt(3) hash, never plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Days since 1970-01-01 on which the account expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiredate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_password_reset: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timezone {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntpservers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locale {
    /// The first is the system's language (`en_US.UTF-8`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyboard: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// `PORT:PROTOCOL` or `FROM-TO:PROTOCOL`, e.g. `8080:tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<FirewallServices>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<FirewallZone>,
}

/// firewalld services to allow and to refuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallServices {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallZone {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

/// systemd units to enable, disable and mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub mountpoint: String,
    /// Bytes, or a size with a unit (`"2 GiB"`).
    #[serde(alias = "size")]
    pub minsize: Size,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

/// A file's or folder's owner: a name, or a numeric id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Owner {
    Id(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Owner>,
    /// Octal, `"0755"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensure_parents: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseurls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpgkeys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metalink: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrorlist: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpgcheck: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_gpgcheck: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslverify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_hotfixes: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fdo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturing_server_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diun_pub_key_insecure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diun_pub_key_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diun_pub_key_root_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub di_mfg_string_type_mac_iface: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenScap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailoring: Option<OpenScapTailoring>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_tailoring: Option<OpenScapJsonTailoring>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenScapTailoring {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unselected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenScapJsonTailoring {
    pub profile_id: String,
    pub filepath: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<IgnitionEmbedded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstboot: Option<IgnitionFirstBoot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnitionEmbedded {
    pub config: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnitionFirstBoot {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattended: Option<bool>,
    #[serde(rename = "sudo-nopasswd", default, skip_serializing_if = "Vec::is_empty")]
    pub sudo_nopasswd: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kickstart: Option<InstallerKickstart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<InstallerModules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<InstallerKernel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallerKickstart {
    pub contents: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallerModules {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enable: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallerKernel {
    pub append: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rpm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_keys: Option<RpmImportKeys>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpmImportKeys {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// subscription-manager's and its dnf plugins' settings, kept as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rhsm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaCerts {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pem_certs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainersStorage {
    #[serde(rename = "destination-path", default, skip_serializing_if = "Option::is_none")]
    pub destination_path: Option<String>,
}

impl Customizations {
    pub(super) fn is_empty(&self) -> bool {
        self == &Customizations::default()
    }
}

impl Size {
    /// The size in bytes; `None` for text that is not `NUMBER [UNIT]`.
    pub fn bytes(&self) -> Option<u64> {
        let text = match self {
            Size::Bytes(bytes) => return Some(*bytes),
            Size::Text(text) => text.trim(),
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1000 * 1000,
            "MiB" => 1 << 20,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1 << 30,
            "TB" => 1000 * 1000 * 1000 * 1000,
            "TiB" => 1 << 40,
            _ => return None,
        };
        number.checked_mul(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Size::Text("2 GiB".into()).bytes(), Some(2 << 30));
        assert_eq!(Size::Text("500MiB".into()).bytes(), Some(500 << 20));
        assert_eq!(Size::Bytes(1024).bytes(), Some(1024));
        assert_eq!(Size::Text("1 GB".into()).bytes(), Some(1_000_000_000));
        for bad in ["", "GiB", "2 parsecs", "-1 GiB", "99999999999999 TiB"] {
            assert_eq!(Size::Text(bad.into()).bytes(), None, "{bad}");
        }
    }
}
